"""The seed's "Test Results Schema": build it, validate it, and map outcomes to exit codes.

    document = from_pytest_report(json.loads(Path("report.json").read_text()))
    validate(document)                      # against schemas/results.schema.json
    code = exit_code_for(pytest_exitcode)   # 0 / 1 / 2 / 3
    write_results(Path("results/results.json"), document)  # atomic; ResultsFileError on failure

Every front door emits documents built here, and every document is validated before it leaves.
Tests attach measurements with pytest's `record_property("metrics", {...})` (the `metrics`
fixture in tests/conftest.py does it for you) and a one-line `record_property("error", ...)`;
both travel through pytest-json-report's `user_properties`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from llmpyramid.errors import ConfigError, ExitCode

SCHEMA_VERSION = 1
STATUSES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")

# pytest's own exit codes (pytest.ExitCode), spelled out so this module needs no pytest import.
PYTEST_OK, PYTEST_FAILED, PYTEST_INTERRUPTED, PYTEST_INTERNAL, PYTEST_USAGE, PYTEST_NO_TESTS = range(6)


@cache
def schema() -> dict[str, Any]:
    """The published JSON Schema (src/llmpyramid/schemas/results.schema.json)."""
    text = resources.files("llmpyramid.schemas").joinpath("results.schema.json").read_text()
    return dict(json.loads(text))


def validate(document: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError when the document does not match the published schema."""
    jsonschema.Draft202012Validator(schema()).validate(document)


def one_line(text: object, limit: int = 500) -> str:
    """Collapse whitespace so an error is a single line a person can read; cap its length."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _number(value: Any) -> Any:
    """Metrics values must be JSON scalars; round floats, turn NaN/inf into null."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 3)
    return str(value)


def test_entry(
    name: str,
    status: str,
    duration: float,
    *,
    error: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    nodeid: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """One element of `tests`. Use this from non-pytest suites (load SLOs, cloud steps) too."""
    if status not in STATUSES:
        raise ValueError(f"unknown test status {status!r}")
    entry: dict[str, Any] = {
        "name": name,
        "status": status,
        "duration": round(max(duration, 0.0), 4),
    }
    if nodeid:
        entry["nodeid"] = nodeid
    if error:
        entry["error"] = one_line(error)
    if reason:
        entry["reason"] = one_line(reason)
    if metrics:
        entry["metrics"] = {str(k): _number(v) for k, v in metrics.items()}
    return entry


def summarize(tests: Iterable[Mapping[str, Any]], duration_seconds: float) -> dict[str, Any]:
    counts = dict.fromkeys(STATUSES, 0)
    for t in tests:
        counts[t["status"]] += 1
    return {
        "total": sum(counts.values()),
        "passed": counts["passed"],
        "failed": counts["failed"] + counts["error"] + counts["xpassed"],
        "skipped": counts["skipped"],
        "xfailed": counts["xfailed"],
        "duration_seconds": round(max(duration_seconds, 0.0), 3),
    }


def build_document(
    tests: list[dict[str, Any]],
    duration_seconds: float,
    *,
    suite: str | None = None,
    target: str | None = None,
    exit_code: ExitCode | int | None = None,
    error: str | None = None,
    load_test: Mapping[str, Any] | None = None,
    findings: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Assemble a results document (the seed schema plus run context)."""
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if suite is not None:
        doc["suite"] = suite
    doc["target"] = target
    if exit_code is not None:
        doc["exit_code"] = int(exit_code)
    if error:
        doc["error"] = one_line(error)
    doc["summary"] = summarize(tests, duration_seconds)
    doc["tests"] = tests
    if load_test is not None:
        doc["load_test"] = dict(load_test)
    if findings:
        doc["findings"] = [{**f, "message": one_line(f["message"])} for f in findings]
    if notes:
        doc["notes"] = [one_line(n) for n in notes]
    return doc


def error_document(suite: str | None, target: str | None, code: ExitCode, message: str) -> dict[str, Any]:
    """The document for a run that never produced a verdict (exit 2 or 3)."""
    return build_document([], 0.0, suite=suite, target=target, exit_code=code, error=message)


# --- pytest-json-report -> results ------------------------------------------------------------


def _user_properties(test: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    metrics: dict[str, Any] = {}
    error: str | None = None
    for prop in test.get("user_properties") or []:
        for key, value in prop.items():
            if key == "metrics" and isinstance(value, Mapping):
                metrics.update(value)
            elif key == "error" and value:
                error = str(value)
    return metrics, error


def _crash_message(test: Mapping[str, Any]) -> str | None:
    """First line of what went wrong, from the stage that failed (setup, call or teardown)."""
    for stage in ("setup", "call", "teardown"):
        info = test.get(stage) or {}
        if info.get("outcome") not in ("failed", "error"):
            continue
        crash = info.get("crash") or {}
        message = crash.get("message") or info.get("longrepr") or ""
        lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
        if lines:
            prefix = "" if stage == "call" else f"{stage} error: "
            return prefix + lines[0]
    return None


def _skip_reason(test: Mapping[str, Any]) -> str | None:
    """The reason pytest.skip / a skip marker gave; pytest-json-report keeps it in longrepr."""
    for stage in ("setup", "call"):
        info = test.get(stage) or {}
        if info.get("outcome") == "skipped":
            text = str(info.get("longrepr") or "")
            match = re.search(r"Skipped: (.*?)['\"]?\)?$", text)
            return match.group(1) if match else text or None
    return None


def _status(test: Mapping[str, Any]) -> str:
    outcome = str(test.get("outcome", "failed"))
    if outcome in STATUSES:
        return outcome
    return "failed"


def _test_name(nodeid: str) -> str:
    return nodeid.split("::")[-1] or nodeid


def from_pytest_report(report: Mapping[str, Any], **context: Any) -> dict[str, Any]:
    """Translate a pytest-json-report document into the results schema.

    `context` is passed to build_document (suite, target, exit_code, notes, ...).
    """
    tests: list[dict[str, Any]] = []
    for t in report.get("tests", []):
        nodeid = str(t.get("nodeid", ""))
        status = _status(t)
        metrics, recorded_error = _user_properties(t)
        duration = sum(float((t.get(s) or {}).get("duration") or 0.0) for s in ("setup", "call", "teardown"))
        error = None
        reason = _skip_reason(t) if status == "skipped" else None
        if status in ("failed", "error"):
            error = recorded_error or _crash_message(t) or f"{status} without a message (see the pytest log)"
        elif status == "xfailed":
            error = recorded_error or _crash_message(t)
        elif status == "xpassed":
            error = "passed unexpectedly: a documented deviation is fixed; remove its xfail marker"
        tests.append(
            test_entry(_test_name(nodeid), status, duration, error=error, metrics=metrics, nodeid=nodeid, reason=reason)
        )
    # Collection errors (an import error in a test module) never become tests; report them as such.
    for c in report.get("collectors", []):
        if c.get("outcome") == "failed":
            message = next(
                (ln for ln in str(c.get("longrepr", "")).splitlines() if ln.strip()),
                "collection failed",
            )
            tests.append(
                test_entry(
                    c.get("nodeid") or "collection",
                    "error",
                    0.0,
                    error=f"collection error: {message}",
                )
            )
    return build_document(tests, float(report.get("duration") or 0.0), **context)


# --- exit codes ------------------------------------------------------------------------------


def exit_code_for(pytest_exitcode: int, document: Mapping[str, Any] | None = None) -> ExitCode:
    """Map pytest's exit status (plus the document) onto the seed's exit codes.

    Infrastructure and configuration aborts raised inside the suites are reported through the
    abort file (see llmpyramid.suites) before this mapping is consulted; here, pytest's own
    codes mean: 0 passed, 1 failures, 2 interrupted/collection errors (a broken suite is a
    failure), 3 internal error (failure), 4 usage error (configuration), 5 nothing selected
    (configuration: the suite selects no tests).
    """
    if pytest_exitcode == PYTEST_OK:
        failed = (document or {}).get("summary", {}).get("failed", 0)
        return ExitCode.FAILURES if failed else ExitCode.OK
    if pytest_exitcode in (PYTEST_USAGE, PYTEST_NO_TESTS):
        return ExitCode.CONFIGURATION
    return ExitCode.FAILURES


# --- writing files ---------------------------------------------------------------------------


class ResultsFileError(ConfigError):
    """The results file could not be written (an unwritable path is a configuration error, exit 3)."""


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object written by another process (a report, a results document), or None when it is
    missing or unreadable: the caller says what that means."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temp file in the same directory and os.replace.

    Readers see the old file or the new one, never a torn write. The temp file is created with
    O_EXCL (mkstemp), and os.replace swaps the directory entry, so a symlink planted at `path` is
    replaced, never followed. Raises OSError; callers turn it into their one-line error.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_results(path: Path | str, document: Mapping[str, Any]) -> None:
    """Write a results document (indented JSON) atomically, creating missing parent directories.

    Raises ResultsFileError (one line, exit 3) naming the path when it cannot be written, so the
    caller can report it on stderr and in its exit code instead of leaving a stale file behind.
    """
    target = Path(path)
    data = (json.dumps(document, indent=2) + "\n").encode()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ResultsFileError(f"cannot write results file {target}: {reason}") from None


def check_writable(path: Path | str) -> None:
    """Fail before any work starts when the results file cannot be written (ResultsFileError, exit 3)."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(tmp)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ResultsFileError(f"cannot write results file {target}: {reason}") from None
    if target.is_dir():
        raise ResultsFileError(f"cannot write results file {target}: it is a directory")
