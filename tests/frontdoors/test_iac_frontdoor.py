"""Bad input through `python -m llmpyramid.iac` (llmpyramid.iac.__main__): rejected before any tool
runs, one line, exit 3, and no previous run's iac.json left standing as this run's verdict.

Cases call `llmpyramid.iac.__main__.main(argv)` in-process (frontdoor_harness explains why that is
safe; a tool started would fail the case there); SUBPROCESS_SAMPLE and the cases marked SUBPROCESS
run `python -m llmpyramid.iac` for real, in the namespace."""

from __future__ import annotations

import pytest

from tests.support.frontdoor_harness import (
    PYTHON,
    SUBPROCESS,
    Marks,
    Sandbox,
    assert_rejected,
    mode_marks,
    subprocess_sample,
)

IAC = [PYTHON, "-m", "llmpyramid.iac"]

# (id, argv after the results dir, marks)
CASES: list[tuple[str, list[str], Marks]] = [
    ("no command", [], ()),
    ("unknown command", ["bogus"], ()),
    ("shell command", ["static;touch PWNED"], ()),
    ("unknown module", ["static", "--module", "bogus"], ()),
    ("module with metacharacters", ["static", "--module", "aws;touch PWNED"], ()),
    ("unknown layer", ["static", "--layer", "bogus"], ()),
    ("unknown output", ["static", "--output", "xml"], ()),
    ("unknown flag", ["static", "--bogus"], ()),
    ("missing flag value", ["static", "--module"], ()),
]


# Also run as `python -m llmpyramid.iac`: a bad flag and a shell-looking command, each with a stale report.
SUBPROCESS_SAMPLE = subprocess_sample({"unknown flag", "shell command"}, [c[0] for c in CASES])


@pytest.mark.parametrize(
    "argv", [pytest.param(c[1], id=c[0], marks=mode_marks(c[0], SUBPROCESS_SAMPLE, c[2])) for c in CASES]
)
def test_bad_input_is_one_line_and_no_stale_report(sandbox: Sandbox, argv: list[str]) -> None:
    results_dir = sandbox.path_with_spaces("iac")
    marker = sandbox.stale(results_dir / "iac.json")
    out = sandbox.run([*IAC, "--results-dir", str(results_dir), *argv])
    assert_rejected(out, 3, results=results_dir / "iac.json", stale_marker=marker)


@pytest.mark.parametrize(
    "results_dir",
    [
        pytest.param("/proc/x/y", id="under /proc", marks=SUBPROCESS),
        pytest.param("/etc/hostname/iac", id="under a file"),
    ],
)
def test_unwritable_results_dir_is_a_configuration_error(sandbox: Sandbox, results_dir: str) -> None:
    out = sandbox.run([*IAC, "fixtures", "--results-dir", results_dir])
    assert_rejected(out, 3)
