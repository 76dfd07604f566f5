"""Infrastructure-as-code testing: terraform fmt/test/plan, TFLint, Checkov and Rego policies.

Entry points: `run_iac(results_dir) -> Report` (report.exit_code, report.to_dict()) and
`python -m llmpyramid.iac run --output json`.
"""

from llmpyramid.iac.report import Report
from llmpyramid.iac.runner import run_iac

__all__ = ["Report", "run_iac"]
