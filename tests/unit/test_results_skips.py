"""A skip is never silent: its reason reaches the results document."""

from __future__ import annotations

from llmpyramid import results


def _report(stage: str, longrepr: str) -> dict:
    test = {"nodeid": "tests/iac/test_x.py::test_tflint", "outcome": "skipped", "setup": {"outcome": "passed"}}
    test[stage] = {"outcome": "skipped", "duration": 0.0, "longrepr": longrepr}
    return {"duration": 0.1, "tests": [test]}


def test_skip_reason_from_call_stage_is_reported():
    doc = results.from_pytest_report(
        _report("call", "('/w/tests/iac/test_x.py', 21, 'Skipped: skipped: tflint not installed')"), suite="iac"
    )
    results.validate(doc)
    (entry,) = doc["tests"]
    assert entry["status"] == "skipped" and entry["reason"] == "skipped: tflint not installed"
    assert "error" not in entry
    assert doc["summary"]["skipped"] == 1 and doc["summary"]["passed"] == 0


def test_skip_reason_from_setup_stage_is_reported():
    doc = results.from_pytest_report(
        _report("setup", "('/w/tests/x.py', 3, 'Skipped: provider google not available offline')"), suite="iac"
    )
    assert doc["tests"][0]["reason"] == "provider google not available offline"
