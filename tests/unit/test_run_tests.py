"""scripts/run_tests.py: exit codes 0/1/2/3, JSON-only stdout, schema-valid documents, preflight.

Runs against the fake OpenAI server (tests/support/fake_openai.py) and closed loopback ports only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llmpyramid import layers, results, runs
from llmpyramid import run_tests as runner
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.errors import ConfigError, ExitCode
from llmpyramid.ports import free_port
from llmpyramid.suites import RunRequest, run_pytest, suite_names
from tests.support.fake_openai import FakeOpenAI

SCRIPT = PROJECT_ROOT / "scripts" / "run_tests.py"


@pytest.fixture
def results_file(tmp_path: Path) -> str:
    return str(tmp_path / "out" / "results.json")


def run(*args: str) -> tuple[dict, ExitCode]:
    document, code, _ = runner.execute(list(args))
    results.validate(document)
    assert document["exit_code"] == int(code)
    return document, code


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--suite", "nope"], "unknown suite 'nope'"),
        (["--suite", "smoke", "--base-url", "ftp://example.com"], "--base-url is not a valid URL"),
        (["--suite", "smoke", "--base-url", "http://host:notaport"], "--base-url is not a valid URL"),
        (["--suite", "smoke", "--base-url", "http://[::1"], "--base-url is not a valid URL"),
        (["--suite", "smoke", "--output", "xml"], "--output"),
        (["--suite", "load", "--duration", "-5"], "--duration must be a duration"),
        (["--suite", "load", "--duration", "soon"], "--duration must be a duration"),
        (["--suite", "load", "--duration", "nan"], "--duration must be a duration"),
        (["--suite", "load", "--duration", "0s"], "--duration must be between 1"),
        (["--suite", "smoke", "--duration", "10"], "--duration does not apply"),
        (["--suite", "cloud", "--cloud", "ibm"], "--cloud"),
        (["--suite", "smoke", "--cloud", "aws"], "--cloud does not apply"),
        (["--suite", "smoke", "--bogus-flag"], "unrecognized arguments"),
    ],
)
def test_configuration_errors_exit_3(args, needle, results_file):
    doc, code = run(*args, "--results-file", results_file)
    assert code == ExitCode.CONFIGURATION
    assert needle in doc["error"]
    assert json.loads(Path(results_file).read_text()) == doc


def test_a_layer_whose_dependencies_are_missing_says_so_with_exit_3(results_file, monkeypatch):
    monkeypatch.delenv("BASE_URL", raising=False)
    broken = layers.Layer("cloud", "x", ("cloud",), run="llmpyramid_no_such_module:run_suite")
    monkeypatch.setitem(layers.BY_NAME, "cloud", broken)
    doc, code = run("--suite", "cloud", "--results-file", results_file)
    assert code == ExitCode.CONFIGURATION and "needs its dependency group" in doc["error"]
    assert doc["summary"]["passed"] == 0


def test_a_malformed_url_still_writes_this_runs_results_file(results_file):
    Path(results_file).parent.mkdir(parents=True)
    Path(results_file).write_text('{"stale": true}')
    doc, code = run("--suite", "smoke", "--base-url", "http://[::1", "--results-file", results_file)
    assert code == ExitCode.CONFIGURATION
    assert json.loads(Path(results_file).read_text()) == doc


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


@pytest.mark.parametrize(("env", "value"), [("SMOKE_LATENCY_MS", "fast"), ("INTEGRATION_CONCURRENCY", "1")])
def test_bad_threshold_is_a_configuration_error(env, value, monkeypatch, results_file):
    monkeypatch.setenv(env, value)
    doc, code = run("--suite", "smoke", "--base-url", closed_port_url(), "--results-file", results_file)
    assert code == ExitCode.CONFIGURATION and env in doc["error"]


def test_results_file_that_is_a_directory_is_a_configuration_error(tmp_path):
    _doc, code = run("--suite", "nope", "--results-file", str(tmp_path))
    assert code == ExitCode.CONFIGURATION


@pytest.mark.parametrize(
    ("url", "needle"),
    [(None, "Connection refused"), ("http://no-such-host.invalid:8080", "not reachable")],
    ids=["refused", "dns"],
)
def test_unreachable_target_exits_2_before_the_suite_runs(url, needle, results_file, monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def no_such_host(host, *args, **kwargs):  # the name never leaves the machine: resolution fails here
        if host == "no-such-host.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    url = url or closed_port_url()
    doc, code = run("--suite", "smoke", "--base-url", url, "--results-file", results_file)
    assert code == ExitCode.INFRASTRUCTURE
    assert url in doc["error"] and needle in doc["error"]
    assert doc["tests"] == []
    assert doc["target"] == url


def test_base_url_env_is_the_target(monkeypatch, results_file):
    url = closed_port_url()
    monkeypatch.setenv("BASE_URL", url)
    doc, code = run("--suite", "contract", "--results-file", results_file)
    assert code == ExitCode.INFRASTRUCTURE and doc["target"] == url


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


def test_an_unwritable_results_file_is_found_before_anything_runs():
    doc, code = run("--suite", "smoke", "--base-url", closed_port_url(), "--results-file", "/proc/x/results.json")
    assert code == ExitCode.CONFIGURATION  # found before the (unreachable) target is probed
    assert "cannot write results file /proc/x/results.json" in doc["error"]


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


def test_only_the_executors_pytest_may_write_the_abort_file(monkeypatch, tmp_path):
    """The abort file leaves the environment at start-up: a child a test starts cannot report exit 2/3 for it."""

    abort = tmp_path / "abort.json"
    monkeypatch.setattr(runs, "_abort_file", None)
    monkeypatch.setenv(runs.ABORT_FILE_ENV, str(abort))
    runs.claim_abort_file()
    assert runs.ABORT_FILE_ENV not in os.environ
    runs.write_abort(ConfigError("bad knob"))
    assert json.loads(abort.read_text()) == {"exit_code": 3, "message": "bad knob"}
