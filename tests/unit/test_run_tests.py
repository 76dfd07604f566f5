"""scripts/run_tests.py in-process: exit codes 2/3 decided by its preflight, schema-valid documents.

Closed loopback ports only; the runs that start a pytest child or the script itself are in
tests/frontdoors/test_run_tests_wiring.py.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from llmpyramid import layers, runs, suites
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.errors import ConfigError, ExitCode
from tests.support.run_tests_cli import closed_port_url, run

SCRIPT = PROJECT_ROOT / "scripts" / "run_tests.py"


@pytest.fixture
def results_file(tmp_path: Path) -> str:
    return str(tmp_path / "out" / "results.json")


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


def test_an_unwritable_results_file_is_found_before_anything_runs():
    doc, code = run("--suite", "smoke", "--base-url", closed_port_url(), "--results-file", "/proc/x/results.json")
    assert code == ExitCode.CONFIGURATION  # found before the (unreachable) target is probed
    assert "cannot write results file /proc/x/results.json" in doc["error"]


def test_only_the_executors_pytest_may_write_the_abort_file(monkeypatch, tmp_path):
    """The abort file leaves the environment at start-up: a child a test starts cannot report exit 2/3 for it."""

    abort = tmp_path / "abort.json"
    monkeypatch.setattr(runs, "_abort_file", None)
    monkeypatch.setenv(runs.ABORT_FILE_ENV, str(abort))
    runs.claim_abort_file()
    assert runs.ABORT_FILE_ENV not in os.environ
    runs.write_abort(ConfigError("bad knob"))
    assert json.loads(abort.read_text()) == {"exit_code": 3, "message": "bad knob"}


def test_a_missing_optional_group_is_one_line_naming_the_command_outside_uv(results_file, monkeypatch):
    monkeypatch.delenv("UV", raising=False)
    monkeypatch.setitem(suites.OPTIONAL_GROUPS, "hybrid", "llmpyramid_no_such_module")
    doc, code = run("--suite", "hybrid", "--results-file", results_file)
    assert code == ExitCode.CONFIGURATION
    assert doc["error"] == (
        "suite 'hybrid' needs the hybrid dependency group: "
        "uv run --group hybrid python scripts/run_tests.py --suite hybrid ..."
    )


def test_under_uv_a_missing_optional_group_runs_the_same_command_again_with_it(results_file, monkeypatch):
    class Reran(Exception):
        pass

    def execve(path, argv, env):
        raise Reran(path, argv, env)

    monkeypatch.setenv("UV", "/opt/uv")
    monkeypatch.delenv(suites.GROUPS_ADDED_ENV, raising=False)
    monkeypatch.setitem(suites.OPTIONAL_GROUPS, "hybrid", "llmpyramid_no_such_module")
    monkeypatch.setattr(suites.os, "execve", execve)
    monkeypatch.setattr(sys, "argv", ["scripts/run_tests.py", "--suite", "hybrid", "--output", "json"])
    with pytest.raises(Reran) as reran:
        suites.ensure_groups(layers.get("hybrid"))
    path, argv, env = reran.value.args
    assert path == "/opt/uv" and env[suites.GROUPS_ADDED_ENV] == "1"
    assert argv == ["/opt/uv", "run", "--group", "hybrid", "python", "-m", "llmpyramid.run_tests",
                    "--suite", "hybrid", "--output", "json"]  # fmt: skip
    monkeypatch.setenv(suites.GROUPS_ADDED_ENV, "1")  # the re-run still without it: one line, no loop
    with pytest.raises(ConfigError, match="needs the hybrid dependency group"):
        suites.ensure_groups(layers.get("hybrid"))
