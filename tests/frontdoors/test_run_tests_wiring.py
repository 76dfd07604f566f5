"""scripts/run_tests.py wired end to end: its pytest child against the fake OpenAI server
(tests/support/fake_openai.py) or a closed loopback port, the script as a process, and `nox -l`:
JSON-only stdout, one-line errors with metrics, exit codes 0/1/2, no credential shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmpyramid import layers, results
from llmpyramid import run_tests as runner
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.errors import ExitCode
from llmpyramid.ports import free_port
from llmpyramid.runs import RunRequest
from llmpyramid.suites import run_pytest, suite_names
from tests.support.fake_openai import FakeOpenAI
from tests.support.run_tests_cli import closed_port_url, run

SCRIPT = PROJECT_ROOT / "scripts" / "run_tests.py"


@pytest.fixture
def results_file(tmp_path: Path) -> str:
    return str(tmp_path / "out" / "results.json")


def test_credentials_in_the_url_are_never_shown(results_file):
    url = f"http://alice:s3cretpw@127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--suite", "smoke", "--base-url", url, "--output", "json",
         "--results-file", results_file],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == ExitCode.INFRASTRUCTURE
    for text in (proc.stdout, proc.stderr, Path(results_file).read_text()):
        assert "s3cretpw" not in text
    assert "***@127.0.0.1" in json.loads(proc.stdout)["error"]


def test_suite_names_are_the_nox_sessions():
    """One table: `run_tests.py --help`, `nox -l` and the CI matrix (built from `nox --json -l`) agree."""
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--json", "-l"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    matrix = [s["session"] for s in json.loads(listed.stdout)]  # what CI runs: the default sessions
    assert matrix == layers.default_names()
    every = subprocess.run(
        [sys.executable, "-m", "nox", "-l"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    ).stdout
    sessions = [line.split()[1] for line in every.splitlines() if line[:2] in ("* ", "- ")]
    assert sessions == layers.names()
    assert suite_names() == [*sessions, "all"]
    help_text = runner.build_parser().format_help()
    assert all(name in help_text for name in sessions)


def test_abort_inside_the_suite_maps_to_exit_2(monkeypatch):
    """A suite whose target was not probed by a front door probes it itself: conftest aborts with exit 2
    and says why, and the runner reports that reason."""
    url = closed_port_url()
    monkeypatch.setenv("BASE_URL", url)
    outcome = run_pytest(RunRequest("smoke", None, log=lambda _m: None), ("tests/test_smoke.py", "-m", "smoke"))
    results.validate(outcome.document)
    assert outcome.exit_code == ExitCode.INFRASTRUCTURE
    assert url in outcome.document["error"]


def test_json_output_is_only_the_document_and_passes_against_a_healthy_server(results_file):
    with FakeOpenAI() as fake:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--suite", "smoke", "--base-url", fake.url, "--output", "json",
             "--results-file", results_file],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    doc = json.loads(proc.stdout)  # stdout is exactly one JSON document
    results.validate(doc)
    assert proc.returncode == 0, proc.stderr
    assert doc["exit_code"] == 0 and doc["suite"] == "smoke" and doc["target"] == fake.url
    assert doc["summary"]["passed"] == doc["summary"]["total"] == 6
    assert json.loads(Path(results_file).read_text()) == doc
    assert "running smoke" in proc.stderr  # logs go to stderr


def test_failures_exit_1_with_one_line_errors_and_metrics(results_file, monkeypatch):
    monkeypatch.setenv("SMOKE_LATENCY_MS", "100")
    with FakeOpenAI("slow", "models_empty") as fake:
        doc, code = run("--suite", "smoke", "--base-url", fake.url, "--results-file", results_file)
    assert code == ExitCode.FAILURES
    failed = {t["name"]: t for t in doc["tests"] if t["status"] == "failed"}
    assert set(failed) == {"test_completion_latency", "test_models_lists_served_model"}
    latency = failed["test_completion_latency"]
    assert (
        latency["error"].startswith("AssertionError: median completion latency")
        and "> threshold 100ms" in latency["error"]
    )
    assert latency["metrics"]["threshold_ms"] == 100 and latency["metrics"]["p95_ms"] > 100
    assert "'data' must be a non-empty list" in failed["test_models_lists_served_model"]["error"]
    passed = [t for t in doc["tests"] if t["status"] == "passed"]
    assert all("metrics" in t for t in passed)


def test_a_results_file_that_fails_at_the_end_is_reported_on_stderr_and_in_the_exit_code():
    """Writable when checked, gone when written (e.g. a disk filling up): never a silent drop."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from llmpyramid import results, run_tests; "
         "results.check_writable = lambda p: None; sys.exit(run_tests.main(sys.argv[1:]))",
         "--suite", "smoke", "--base-url", closed_port_url(), "--results-file", "/proc/x/results.json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == ExitCode.INFRASTRUCTURE  # the worse verdict stays: infrastructure beats configuration
    assert "cannot write results file /proc/x/results.json" in proc.stderr.strip().splitlines()[-1]
