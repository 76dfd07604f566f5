"""Bad input through `python -m llmpyramid.load` (llmpyramid.load.cli) and its LOAD_*/SLO_* variables.

Every case targets an unreachable loopback URL (BASE_URL) unless it tests the URL itself, so input
that slipped through validation ends as exit 2 (a failed case), never as a load run.

Cases call `llmpyramid.load.cli.main(argv)` in-process (frontdoor_harness explains why that is safe;
one that got as far as importing locust would fail there); SUBPROCESS_SAMPLE and the cases marked
SUBPROCESS run `python -m llmpyramid.load` for real, in the namespace.
"""

from __future__ import annotations

import json

import pytest

from tests.support.frontdoor_harness import (
    BAD_NUMBERS,
    BAD_URLS,
    CRED_HOST_URL,
    PYTHON,
    SUBPROCESS,
    Sandbox,
    assert_rejected,
    mode_marks,
    subprocess_sample,
)

LOAD = [PYTHON, "-m", "llmpyramid.load"]
UNREACHABLE = {"BASE_URL": "http://127.0.0.1:1"}
RESULTS_FILE = "load_results.json"

NUMERIC_FLAGS = {
    "--users": [*BAD_NUMBERS, "0"],
    "--spawn-rate": ["nan", "-5", "inf", "abc", "0"],
    "--duration": ["nan", "-5", "1e999", "abc", "0"],
    "--min-requests": ["-5", "abc", "1e999", "0"],
    "--max-duration": ["nan", "-5", "abc"],
    "--rate": ["nan", "-5", "inf", "abc", "0"],
    "--max-inflight": ["-5", "abc", "nan"],
    "--sweep-max-users": ["-5", "abc", "1e999"],
    "--sweep-step": ["nan", "-5", "abc"],
    "--workers": [*BAD_NUMBERS, "1.5"],
    "--tolerance": ["nan", "-5", "inf", "abc"],
}
ENV_VALUES = {
    "LOAD_USERS": ["abc", "-5", "nan"],
    "LOAD_SPAWN_RATE": ["nan", "-5"],
    "LOAD_DURATION": ["nan", "abc"],
    "LOAD_MIN_REQUESTS": ["abc", "-5"],
    "LOAD_MAX_DURATION": ["nan", "abc"],
    "LOAD_RATE": ["inf", "abc"],
    "LOAD_MAX_INFLIGHT": ["abc", "-5"],
    "LOAD_SWEEP_MAX_USERS": ["abc", "-5"],
    "LOAD_SWEEP_STEP": ["nan", "abc"],
    "LOAD_SWEEP_MIN_GAIN": ["nan", "abc", "-5"],
    "LOAD_SEED": ["abc", "nan"],
    "LOAD_REQUEST_TIMEOUT": ["nan", "-5", "abc"],
    "LOAD_IGNORE_EOS": ["maybe"],
    "LOAD_PLOTS": ["maybe"],
    "LOAD_SHAPE": ["bogus"],
    "LOAD_MIX": ["bogus=1", "chat=abc", "chat=0"],
    "LOAD_MAX_TOKENS": ["a,b", "-1", ","],
    "SLO_P95_LATENCY_MS": ["nan", "abc", "-5"],
    "SLO_TTFT_P95_MS": ["inf"],
    "SLO_ITL_P95_MS": ["abc"],
    "SLO_ERROR_RATE": ["-1", "nan", "2"],
    "SLO_MIN_RPS": ["abc"],
    "SLO_MIN_OUTPUT_TOKENS_PER_SECOND": ["nan"],
}

KNOWN_BUGS: dict[str, pytest.MarkDecorator] = {}

# (id, argv, env, expected exit)
CASES: list[tuple[str, list[str], dict[str, str], int]] = [
    *[(f"{flag} {v}", [flag, v], UNREACHABLE, 3) for flag, values in NUMERIC_FLAGS.items() for v in values],
    *[(f"{var}={v}", [], {**UNREACHABLE, var: v}, 3) for var, values in ENV_VALUES.items() for v in values],
    ("--shape bogus", ["--shape", "bogus"], UNREACHABLE, 3),
    ("--output xml", ["--output", "xml"], UNREACHABLE, 3),
    ("--mix bogus", ["--mix", "bogus=1"], UNREACHABLE, 3),
    ("--max-tokens a,b", ["--max-tokens", "a,b"], UNREACHABLE, 3),
    ("--max-duration below --duration", ["--duration", "60", "--max-duration", "10"], UNREACHABLE, 3),
    ("unknown flag", ["--bogus"], UNREACHABLE, 3),
    ("--slo-file missing", ["--slo-file", "/nonexistent/slo.toml"], UNREACHABLE, 3),
    ("--slo-file a directory", ["--slo-file", "/"], UNREACHABLE, 3),
    ("--baseline missing", ["--baseline", "/nonexistent/base.json"], UNREACHABLE, 3),
    ("--baseline a directory", ["--baseline", "/"], UNREACHABLE, 3),
    *[(f"--base-url {u}", ["--base-url", u], {}, 3) for u in BAD_URLS],
    *[(f"BASE_URL={u}", [], {"BASE_URL": u}, 3) for u in BAD_URLS[:4]],
    ("--base-url credentials unreachable", ["--base-url", CRED_HOST_URL], {}, 2),
    ("BASE_URL credentials unreachable", [], {"BASE_URL": CRED_HOST_URL}, 2),
    ("unreachable", [], UNREACHABLE, 2),
]


# Also run as `python -m llmpyramid.load`: a bad flag (3), nothing listening (2), credentials in the URL (2).
SUBPROCESS_SAMPLE = subprocess_sample(
    {"unknown flag", "unreachable", "--base-url credentials unreachable"}, [c[0] for c in CASES]
)


@pytest.mark.parametrize(
    ("argv", "env", "code"),
    [pytest.param(*c[1:], id=c[0], marks=mode_marks(c[0], SUBPROCESS_SAMPLE, KNOWN_BUGS.get(c[0], ()))) for c in CASES],
)
def test_bad_input_is_one_line_and_this_runs_results(
    sandbox: Sandbox, argv: list[str], env: dict[str, str], code: int
) -> None:
    results_dir = sandbox.root / "load results"
    results = results_dir / RESULTS_FILE
    marker = sandbox.stale(results)
    out = sandbox.run([*LOAD, "--results-dir", str(results_dir), *argv], env)
    assert_rejected(out, code, results=results, stale_marker=marker)
    assert json.loads(results.read_text())["exit_code"] == code  # this run's verdict, not the stale one


def test_slo_file_with_bad_content_is_a_configuration_error(sandbox: Sandbox) -> None:
    slo = sandbox.root / "slo.toml"
    slo.write_text("[slo]\np95_latency_ms = 'nan'\nbogus_key = 1\n")
    out = sandbox.run([*LOAD, "--slo-file", str(slo)], UNREACHABLE)
    assert_rejected(out, 3)


def test_baseline_with_bad_content_is_a_configuration_error(sandbox: Sandbox) -> None:
    baseline = sandbox.root / "baseline.json"
    baseline.write_text("{not json")
    out = sandbox.run([*LOAD, "--baseline", str(baseline)], UNREACHABLE)
    assert_rejected(out, 3)


@pytest.mark.parametrize("results_dir", ["/proc/x/y", "/etc/hostname/load"])
def test_unwritable_results_dir_is_a_configuration_error(sandbox: Sandbox, results_dir: str) -> None:
    out = sandbox.run([*LOAD, "--results-dir", results_dir], UNREACHABLE)
    assert_rejected(out, 3)
    assert results_dir in out.stderr_lines[-1]


@SUBPROCESS  # the sample's results-file case
def test_results_dir_with_spaces_and_metacharacters(sandbox: Sandbox) -> None:
    results_dir = sandbox.path_with_spaces("load")
    out = sandbox.run([*LOAD, "--results-dir", str(results_dir)], UNREACHABLE)
    assert_rejected(out, 2, results=results_dir / RESULTS_FILE)
    assert json.loads((results_dir / RESULTS_FILE).read_text())["exit_code"] == 2
