"""Bad input through `python -m llmpyramid.iac` (llmpyramid.iac.__main__): rejected before any tool
runs, one line, exit 3, and no previous run's iac.json left standing as this run's verdict."""

from __future__ import annotations

import pytest
from frontdoor_harness import PYTHON, Marks, Sandbox, assert_rejected, bug

IAC = [PYTHON, "-m", "llmpyramid.iac"]
STALE_IAC_BUG = bug("iac: a flag argparse rejects leaves the previous run's <results-dir>/iac.json in place")
UNWRITABLE_BUG = bug("iac: an unwritable --results-dir is an OSError traceback (iac.runner.run_iac: results.mkdir)")

# (id, argv after the results dir, marks)
CASES: list[tuple[str, list[str], Marks]] = [
    ("no command", [], STALE_IAC_BUG),
    ("unknown command", ["bogus"], STALE_IAC_BUG),
    ("shell command", ["static;touch PWNED"], STALE_IAC_BUG),
    ("unknown module", ["static", "--module", "bogus"], STALE_IAC_BUG),
    ("module with metacharacters", ["static", "--module", "aws;touch PWNED"], STALE_IAC_BUG),
    ("unknown layer", ["static", "--layer", "bogus"], STALE_IAC_BUG),
    ("unknown output", ["static", "--output", "xml"], STALE_IAC_BUG),
    ("unknown flag", ["static", "--bogus"], STALE_IAC_BUG),
    ("missing flag value", ["static", "--module"], STALE_IAC_BUG),
]


@pytest.mark.parametrize("argv", [pytest.param(c[1], id=c[0], marks=c[2]) for c in CASES])
def test_bad_input_is_one_line_and_no_stale_report(sandbox: Sandbox, argv: list[str]) -> None:
    results_dir = sandbox.path_with_spaces("iac")
    marker = sandbox.stale(results_dir / "iac.json")
    out = sandbox.run([*IAC, "--results-dir", str(results_dir), *argv])
    assert_rejected(out, 3, results=results_dir / "iac.json", stale_marker=marker)


@pytest.mark.parametrize(
    "results_dir",
    [
        pytest.param("/proc/x/y", id="under /proc", marks=UNWRITABLE_BUG),
        pytest.param("/etc/hostname/iac", id="under a file", marks=UNWRITABLE_BUG),
    ],
)
def test_unwritable_results_dir_is_a_configuration_error(sandbox: Sandbox, results_dir: str) -> None:
    out = sandbox.run([*IAC, "fixtures", "--results-dir", results_dir])
    assert_rejected(out, 3)
