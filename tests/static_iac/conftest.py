"""Shared fixtures for the IaC suites: one static-analysis run per session, a results directory.

RESULTS_DIR (default results/) receives iac-static.json, checkov.sarif, rego.sarif and checkov-fixtures.sarif.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmpyramid.errors import PyramidError
from llmpyramid.iac.paths import repo_root
from llmpyramid.iac.report import Report
from llmpyramid.iac.runner import run_iac

ROOT = repo_root()


@pytest.fixture(scope="session")
def results_dir() -> Path:
    path = Path(os.environ.get("RESULTS_DIR", ROOT / "results"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def static_report(results_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    """fmt, tflint, checkov and Rego over the shipped modules, plus the broken-fixture proofs."""
    try:
        report = run_iac(results_dir, parts=("static", "fixtures"), run_dir=tmp_path_factory.mktemp("tf"))
    except PyramidError as exc:
        pytest.exit(f"error: {exc}", returncode=int(exc.exit_code))
    report.write(results_dir / "iac-static.json")
    return report
