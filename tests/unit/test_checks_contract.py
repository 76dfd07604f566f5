"""Known deviations in the contract suite: identified from the body (not the Server header),
declared with CONTRACT_KNOWN_DEVIATIONS, reported as xfailed with the reason, never masking more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmpyramid import checks
from llmpyramid.client import Client
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.errors import ConfigError, ExitCode
from tests.support.fake_openai import FakeOpenAI

DECLARED = checks.ServerProfile(declared=frozenset({"error_code_int"}))


def _profile(*faults: str, declared: frozenset[str] = frozenset()) -> checks.ServerProfile:
    with FakeOpenAI(*faults) as fake, Client(fake.target, timeout=10) as c:
        return checks.server_profile(c, declared)


def _error_probe(profile: checks.ServerProfile, *faults: str) -> None:
    with FakeOpenAI(*faults) as fake, Client(fake.target, timeout=10) as c:
        checks.probe_contract_error(c, profile)


def test_llamacpp_is_identified_by_its_props_body() -> None:
    assert _profile("llamacpp").implementation == "llama.cpp"


def test_a_server_header_alone_identifies_nothing() -> None:
    """Proxies replace the header (and anyone can send it): only what passes through counts."""
    assert _profile("server_header").implementation is None


def test_healthy_server_meets_the_contract_without_deviations() -> None:
    _error_probe(checks.ServerProfile())


def test_llamacpp_error_code_is_a_known_deviation() -> None:
    with pytest.raises(checks.KnownDeviation, match=r"known deviation error_code_int: .*identified by GET /props"):
        _error_probe(_profile("llamacpp"), "llamacpp")


def test_declared_deviation_is_known() -> None:
    with pytest.raises(checks.KnownDeviation, match=r"known deviation error_code_int: .*CONTRACT_KNOWN_DEVIATIONS"):
        _error_probe(DECLARED, "error_code_int")


def test_undeclared_deviation_fails() -> None:
    with pytest.raises(checks.CheckFailed, match="violates OpenAI error_response schema at error/code"):
        _error_probe(checks.ServerProfile(), "error_code_int")


def test_declared_deviation_that_the_server_lacks_fails() -> None:
    with pytest.raises(checks.CheckFailed, match=r"deviation error_code_int .* was expected but error.code is None"):
        _error_probe(DECLARED)


@pytest.mark.parametrize("fault", ["error_no_object", "error_plain_text", "invalid_200", "error_param_int"])
def test_a_declared_deviation_never_masks_another_break(fault: str) -> None:
    with pytest.raises(checks.CheckFailed):
        _error_probe(DECLARED, "error_code_int", fault)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, set()), ("", set()), ("error_code_int", {"error_code_int"}), (" error_code_int, ,", {"error_code_int"})],
)
def test_parse_deviations(raw: str | None, expected: set[str]) -> None:
    assert checks.parse_deviations(checks.DEVIATIONS_ENV, raw) == expected


def test_unknown_deviation_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"KNOWN_DEVIATIONS: unknown deviation.*bogus.*known: error_code_int"):
        checks.parse_deviations(checks.DEVIATIONS_ENV, "error_code_int,bogus")


# --- the contract suite itself, against the fake server -------------------------------------------


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
