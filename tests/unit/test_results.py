"""The results document: built from pytest-json-report output, valid against the published schema,
and mapped onto the seed's exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from llmpyramid import results
from llmpyramid.errors import ExitCode

SCHEMA_FILE = Path(results.__file__).parent / "schemas" / "results.schema.json"


def _stage(outcome: str = "passed", duration: float = 0.01, message: str | None = None) -> dict:
    stage = {"duration": duration, "outcome": outcome}
    if message:
        stage["crash"] = {"path": "x.py", "lineno": 1, "message": message}
        stage["longrepr"] = message
    return stage


REPORT = {
    "created": 0,
    "duration": 3.5,
    "exitcode": 1,
    "tests": [
        {
            "nodeid": "tests/test_smoke.py::test_health_endpoint",
            "outcome": "passed",
            "setup": _stage(),
            "call": _stage(duration=0.05),
            "teardown": _stage(),
        },
        {
            "nodeid": "tests/test_smoke.py::test_completion_latency",
            "outcome": "failed",
            "setup": _stage(),
            "call": _stage("failed", 2.1, "AssertionError: p95 latency 350ms > threshold 200ms\nassert False"),
            "teardown": _stage(),
            "user_properties": [{"metrics": {"p50_ms": 120, "p95_ms": 350.123456, "p99_ms": float("nan")}}],
        },
        {
            "nodeid": "tests/test_integration.py::test_api_key_enforced",
            "outcome": "skipped",
            "setup": _stage("skipped"),
            "teardown": _stage(),
        },
        {
            "nodeid": "tests/test_contract.py::test_error_object[x]",
            "outcome": "xfailed",
            "setup": _stage(),
            "call": _stage("skipped", message="CheckFailed: code is an integer"),
            "teardown": _stage(),
        },
        {
            "nodeid": "tests/test_integration.py::test_memory",
            "outcome": "error",
            "setup": _stage("failed", message="InfrastructureError: stack died\nmore"),
            "teardown": _stage(),
        },
        {
            "nodeid": "tests/test_integration.py::test_stream[chat]",
            "outcome": "failed",
            "setup": _stage(),
            "call": _stage("failed", message="multi\nline"),
            "teardown": _stage(),
            "user_properties": [{"error": "AssertionError: stream did not end with [DONE]"}],
        },
    ],
    "collectors": [
        {"nodeid": "tests/test_broken.py", "outcome": "failed", "longrepr": "ImportError: no module x\ntrace"}
    ],
}


def test_schema_file_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_from_pytest_report_builds_the_seed_schema():
    doc = results.from_pytest_report(REPORT, suite="smoke", target="http://x:1", exit_code=ExitCode.FAILURES)
    results.validate(doc)
    s = doc["summary"]
    assert (s["total"], s["passed"], s["failed"], s["skipped"], s["xfailed"]) == (7, 1, 4, 1, 1)
    assert s["duration_seconds"] == 3.5
    by_name = {t["name"]: t for t in doc["tests"]}
    latency = by_name["test_completion_latency"]
    assert latency["status"] == "failed"
    assert latency["error"] == "AssertionError: p95 latency 350ms > threshold 200ms"
    assert latency["metrics"] == {"p50_ms": 120, "p95_ms": 350.123, "p99_ms": None}
    assert latency["duration"] == pytest.approx(2.12)
    assert "error" not in by_name["test_health_endpoint"]
    assert by_name["test_memory"]["status"] == "error"
    assert by_name["test_memory"]["error"] == "setup error: InfrastructureError: stack died"
    assert by_name["test_stream[chat]"]["error"] == "AssertionError: stream did not end with [DONE]"
    assert by_name["tests/test_broken.py"]["error"] == "collection error: ImportError: no module x"


def test_every_error_is_one_line():
    doc = results.from_pytest_report(REPORT)
    assert all("\n" not in t.get("error", "") for t in doc["tests"])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("summary"),
        lambda d: d["summary"].pop("skipped"),
        lambda d: d["tests"][0].update(status="fine"),
        lambda d: d["tests"][1].update(error="two\nlines"),
        lambda d: d["tests"][1].update(metrics={"p95_ms": [1, 2]}),
        lambda d: d.update(exit_code=4),
        lambda d: d.update(load_test={"requests_per_second": 1.0}),
        lambda d: d.update(
            load_test={"requests_per_second": 1, "p50_latency_ms": 1, "p95_latency_ms": 2, "error_rate": 2}
        ),
    ],
    ids=[
        "no-summary",
        "no-skipped",
        "bad-status",
        "multiline-error",
        "non-scalar-metric",
        "bad-exit",
        "load-missing",
        "error-rate>1",
    ],
)
def test_schema_rejects_broken_documents(mutate):
    doc = results.from_pytest_report(REPORT)
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        results.validate(doc)


def test_load_test_section_is_accepted():
    load = {"requests_per_second": 12.5, "p50_latency_ms": 80, "p95_latency_ms": 150, "error_rate": 0.001}
    doc = results.build_document([], 60.0, suite="load", load_test=load, findings=[{"message": "p95 ok"}])
    results.validate(doc)
    assert doc["load_test"] == load


def test_error_document_is_valid():
    doc = results.error_document("smoke", "http://127.0.0.1:1", ExitCode.INFRASTRUCTURE, "target\nunreachable")
    results.validate(doc)
    assert doc["exit_code"] == 2 and doc["error"] == "target unreachable" and doc["summary"]["total"] == 0


@pytest.mark.parametrize(
    ("pytest_code", "failed", "expected"),
    [
        (0, 0, ExitCode.OK),
        (0, 1, ExitCode.FAILURES),  # a failure pytest did not count (e.g. strict xpass) is still a failure
        (1, 1, ExitCode.FAILURES),
        (2, 0, ExitCode.FAILURES),  # interrupted / collection errors: the suite is broken
        (3, 0, ExitCode.FAILURES),  # pytest internal error
        (4, 0, ExitCode.CONFIGURATION),  # usage error
        (5, 0, ExitCode.CONFIGURATION),  # the selection matched no tests
    ],
)
def test_exit_code_mapping(pytest_code, failed, expected):
    assert results.exit_code_for(pytest_code, {"summary": {"failed": failed}}) == expected


def test_test_entry_rejects_unknown_status():
    with pytest.raises(ValueError):
        results.test_entry("x", "great", 0.1)


# --- write_results: atomic, and a failure is a one-line error, never silence (issue 13, item 8) ----


def _document() -> dict:
    return results.error_document("smoke", None, ExitCode.INFRASTRUCTURE, "target is not reachable")


def test_write_results_writes_valid_json_and_creates_parent_directories(tmp_path):
    target = tmp_path / "new dir" / "results.json"
    results.write_results(target, _document())
    assert json.loads(target.read_text()) == _document()
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]  # no temp file left behind


def test_write_results_replaces_the_previous_file_in_one_step(tmp_path):
    target = tmp_path / "results.json"
    target.write_text('{"stale": true}')
    inode = target.stat().st_ino
    results.write_results(target, _document())
    assert json.loads(target.read_text())["exit_code"] == int(ExitCode.INFRASTRUCTURE)
    assert target.stat().st_ino != inode  # a new file renamed into place, not the old one rewritten


@pytest.mark.parametrize("where", ["/proc/x", "/proc/self/status/results.json", "directory", "nul\x00byte.json"])
def test_an_unwritable_results_file_is_a_one_line_config_error(tmp_path, where):
    """On main the runner's write failure was dropped when the run had already failed."""
    target = tmp_path if where == "directory" else Path(where)
    with pytest.raises(results.ResultsFileError, match="cannot write results file") as err:
        results.write_results(target, _document())
    assert err.value.exit_code == ExitCode.CONFIGURATION
    assert "\n" not in str(err.value)


def test_a_symlink_at_the_results_path_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "results.json"
    link.symlink_to(victim)
    results.write_results(link, _document())
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and json.loads(link.read_text())["suite"] == "smoke"


def test_a_failed_write_leaves_the_previous_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text('{"previous": true}')

    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.os, "replace", full_disk)
    with pytest.raises(results.ResultsFileError, match="No space left on device"):
        results.write_results(target, _document())
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    assert target.read_text() == '{"previous": true}'
