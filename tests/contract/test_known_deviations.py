"""The contract suite itself (tests/test_contract.py) run as pytest runs it, against the fake server
(tests/support/fake_openai.py): a declared deviation is xfailed with the reason, an undeclared one
fails, an unknown deviation name is exit 3 with one line. The probes behind it are unit-tested."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmpyramid import checks
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.errors import ExitCode
from tests.support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.contract


def _contract_suite(fake: FakeOpenAI, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = tmp_path / "report.json"
    cmd = [
        sys.executable, "-m", "pytest", "tests/test_contract.py", "-k", "error_object", "--base-url", fake.url,
        "-p", "no:cacheprovider", "-q", "--json-report", f"--json-report-file={report}",
    ]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "MODEL", checks.DEVIATIONS_ENV)}
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120)
    return proc, (json.loads(report.read_text()) if report.exists() else {})


def test_suite_reports_a_declared_deviation_as_xfailed_with_the_reason(tmp_path: Path) -> None:
    with FakeOpenAI("error_code_int") as fake:
        proc, report = _contract_suite(fake, tmp_path, CONTRACT_KNOWN_DEVIATIONS="error_code_int")
    assert proc.returncode == 0, proc.stdout
    [test] = report["tests"]
    assert test["outcome"] == "xfailed"
    assert "known deviation error_code_int" in test["call"]["longrepr"]


def test_suite_fails_an_undeclared_deviation(tmp_path: Path) -> None:
    with FakeOpenAI("error_code_int") as fake:
        proc, report = _contract_suite(fake, tmp_path)
    assert proc.returncode == 1 and report["tests"][0]["outcome"] == "failed"


def test_suite_exits_3_on_an_unknown_deviation_name(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        proc, _ = _contract_suite(fake, tmp_path, CONTRACT_KNOWN_DEVIATIONS="bogus")
    assert proc.returncode == ExitCode.CONFIGURATION
    assert "error: CONTRACT_KNOWN_DEVIATIONS: unknown deviation(s) bogus" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
