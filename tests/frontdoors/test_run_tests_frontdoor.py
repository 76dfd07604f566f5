"""Bad input through `python scripts/run_tests.py` (llmpyramid.run_tests): one line, exit 3 (2 when
well-formed but unreachable), never a traceback, and the results file is always this run's.

Cases call `llmpyramid.run_tests.main(argv)` in-process (frontdoor_harness explains why that is
safe); SUBPROCESS_SAMPLE and the cases marked SUBPROCESS run the script itself, in the namespace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.frontdoor_harness import (
    BAD_NUMBERS,
    BAD_URLS,
    CRED_HOST_URL,
    PROJECT_ROOT,
    PYTHON,
    SECRET,
    SUBPROCESS,
    Sandbox,
    assert_rejected,
    mode_marks,
    subprocess_sample,
)

RUN_TESTS = [PYTHON, str(PROJECT_ROOT / "scripts" / "run_tests.py")]
UNREACHABLE = "http://127.0.0.1:1"  # well-formed; nothing listens on port 1

# (id, extra argv, extra env, expected exit). Every case also gets --results-file <a stale file>.
CASES: list[tuple[str, list[str], dict[str, str], int]] = [
    *[(f"base-url {u}", ["--suite", "smoke", "--base-url", u], {}, 3) for u in BAD_URLS],
    *[(f"BASE_URL {u}", ["--suite", "smoke"], {"BASE_URL": u}, 3) for u in BAD_URLS[:4]],
    ("base-url credentials unreachable", ["--suite", "smoke", "--base-url", CRED_HOST_URL], {}, 2),
    ("BASE_URL credentials unreachable", ["--suite", "smoke"], {"BASE_URL": CRED_HOST_URL}, 2),
    ("base-url unreachable", ["--suite", "smoke", "--base-url", UNREACHABLE], {}, 2),
    *[(f"duration {n}", ["--suite", "load", "--duration", n, "--base-url", UNREACHABLE], {}, 3) for n in BAD_NUMBERS],
    ("duration 0", ["--suite", "load", "--duration", "0", "--base-url", UNREACHABLE], {}, 3),
    ("duration empty", ["--suite", "load", "--duration", "", "--base-url", UNREACHABLE], {}, 3),
    ("duration on smoke", ["--suite", "smoke", "--duration", "60", "--base-url", UNREACHABLE], {}, 3),
    ("suite unknown", ["--suite", "bogus"], {}, 3),
    ("suite shell", ["--suite", "smoke;touch PWNED"], {}, 3),
    ("output unknown", ["--suite", "smoke", "--output", "xml", "--base-url", UNREACHABLE], {}, 3),
    ("cloud unknown", ["--suite", "cloud", "--cloud", "mars"], {}, 3),
    ("cloud on smoke", ["--suite", "smoke", "--cloud", "aws", "--base-url", UNREACHABLE], {}, 3),
    ("unknown flag", ["--suite", "smoke", "--bogus"], {}, 3),
    ("missing flag value", ["--suite", "smoke", "--base-url"], {}, 3),
    *[
        (f"{var} {v}", ["--suite", "smoke", "--base-url", UNREACHABLE], {var: v}, 3)
        for var, values in {
            "SMOKE_LATENCY_MS": ["nan", "-5", "abc"],
            "SMOKE_LATENCY_SAMPLES": ["-5", "1e999", "99999999999999999999999999"],
            "INTEGRATION_CONCURRENCY": ["abc", "inf"],
            "MEMORY_REQUESTS": ["nan", "-5"],
            "MEMORY_GROWTH_MB": ["inf", "abc"],
            "REQUEST_TIMEOUT_S": ["nan", "-5", "1e999"],
        }.items()
        for v in values
    ],
]


# Also run as the real script: a bad flag (3), and an unreachable target given with credentials (2).
SUBPROCESS_SAMPLE = subprocess_sample({"unknown flag", "base-url credentials unreachable"}, [c[0] for c in CASES])


@pytest.mark.parametrize(
    ("extra", "env", "code"), [pytest.param(*c[1:], id=c[0], marks=mode_marks(c[0], SUBPROCESS_SAMPLE)) for c in CASES]
)
def test_bad_input_is_one_line_and_this_runs_results(
    sandbox: Sandbox, extra: list[str], env: dict[str, str], code: int
) -> None:
    results = sandbox.root / "results dir" / "results.json"
    marker = sandbox.stale(results)
    out = sandbox.run([*RUN_TESTS, "--results-file", str(results), *extra], env)
    assert_rejected(out, code, results=results, stale_marker=marker)
    doc = json.loads(results.read_text())  # written for this run, and says why it failed
    assert doc["exit_code"] == code and doc.get("error"), doc
    assert SECRET not in json.dumps(doc)


UNWRITABLE = {"under /proc": "/proc/x/y", "under a file": "/etc/hostname/results.json", "a directory": "/"}


@pytest.mark.parametrize(
    ("suite", "results_file"),
    [
        *[pytest.param("bogus", path, id=f"with another error, {name}") for name, path in UNWRITABLE.items()],
        *[
            pytest.param(
                "smoke",
                path,
                id=f"before the stack starts, {name}",
            )
            for name, path in UNWRITABLE.items()
        ],
    ],
)
def test_unwritable_results_file_is_a_configuration_error(sandbox: Sandbox, suite: str, results_file: str) -> None:
    out = sandbox.run([*RUN_TESTS, "--suite", suite, "--results-file", results_file])
    assert_rejected(out, 3)
    assert results_file in out.stderr


@SUBPROCESS  # the sample's results-file case: written by the real script, --output json on its stdout
def test_results_file_path_with_spaces_and_metacharacters_is_written(sandbox: Sandbox) -> None:
    results = sandbox.path_with_spaces("results.json")
    out = sandbox.run([*RUN_TESTS, "--suite", "bogus", "--output", "json", "--results-file", str(results)])
    assert_rejected(out, 3)
    assert json.loads(results.read_text())["exit_code"] == 3
    assert json.loads(out.stdout)["exit_code"] == 3  # --output json honoured although the suite is bad


def test_keyword_with_shell_metacharacters_never_reaches_a_shell(sandbox: Sandbox) -> None:
    results: Path = sandbox.root / "results.json"
    out = sandbox.run(
        [*RUN_TESTS, "--suite", "smoke", "--base-url", UNREACHABLE, "-k", sandbox.injection(), "--results-file",
         str(results)]
    )  # fmt: skip
    assert_rejected(out, 2, results=results)
