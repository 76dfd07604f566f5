"""The checks behind the smoke, integration and contract suites, as small library functions.

One module per layer — `smoke`, `integration`, `contract` — plus `shared` (the verdict type,
response/body checks, request texts). What differs between completions and chat comes from one
table, `llmpyramid.client.KINDS`.

- `check_*` judge something already received and raise `CheckFailed` (one actionable line plus
  measured `metrics`) when it is wrong;
- `probe_*` send the requests a suite test needs and apply the checks; they return metrics.

The suites in tests/ are one-line wrappers around the probes, and tests/unit runs the very same
probes against a fake server that serves each broken form, proving every check can fail.
"""

from llmpyramid.checks.contract import *  # noqa: F403
from llmpyramid.checks.contract import __all__ as _contract
from llmpyramid.checks.integration import *  # noqa: F403
from llmpyramid.checks.integration import __all__ as _integration
from llmpyramid.checks.shared import CHAT, DETERMINISTIC, PROMPT, CheckFailed, Inconclusive, Metrics, require
from llmpyramid.checks.smoke import *  # noqa: F403
from llmpyramid.checks.smoke import __all__ as _smoke

__all__ = [
    "CHAT", "DETERMINISTIC", "PROMPT", "CheckFailed", "Inconclusive", "Metrics", "require",
    *_smoke, *_integration, *_contract,
]  # fmt: skip
