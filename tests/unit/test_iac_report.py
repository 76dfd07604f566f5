"""Unit tests for the IaC report: exit codes, JSON shape, policy engine and SARIF parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmpyramid.errors import ConfigError, ExitCode
from llmpyramid.iac import __main__ as cli
from llmpyramid.iac.checkov import parse_sarif
from llmpyramid.iac.policy import PolicySet
from llmpyramid.iac.report import Check, Finding, FixtureVerdict, Report
from llmpyramid.iac.runner import fixtures_check


def report_with(*checks: Check, fixtures: tuple[FixtureVerdict, ...] = ()) -> Report:
    r = Report()
    for c in checks:
        r.add(c)
    r.fixtures.extend(fixtures)
    return r.finish()


def test_exit_codes() -> None:
    assert report_with(Check("fmt", "a", "passed"), Check("tflint", "a", "skipped")).exit_code == ExitCode.OK
    deny = Check("rego", "a", "failed", findings=[Finding("rego", "r", "a")])
    assert report_with(deny).exit_code == ExitCode.FAILURES
    warn_only = Check("rego", "a", "passed", findings=[Finding("rego", "r", "a", severity="warn")])
    assert report_with(warn_only).exit_code == ExitCode.OK
    missed = FixtureVerdict("f", "rego", "r", "missed")
    assert report_with(Check("fixtures", "x", "passed"), fixtures=(missed,)).exit_code == ExitCode.FAILURES
    assert report_with(deny, Check("checkov", "a", "error")).exit_code == ExitCode.INFRASTRUCTURE


def test_skips_are_counted_as_skips_not_passes() -> None:
    s = report_with(
        Check("terraform-test", "gcp", "skipped", reason="skipped: provider google not available offline")
    ).to_dict()["summary"]
    assert (s["passed"], s["skipped"]) == (0, 1)


def test_report_json_round_trip(tmp_path: Path) -> None:
    r = report_with(Check("rego", "a", "failed", findings=[Finding("rego", "terraform.security.x", "a", "res", "msg")]))
    data = json.loads(r.write(tmp_path / "iac.json").read_text())
    assert data["summary"]["findings"] == 1
    assert data["checks"][0]["findings"][0]["rule"] == "terraform.security.x"


def test_policy_set_rejects_invalid_rego(tmp_path: Path) -> None:
    (tmp_path / "bad.rego").write_text("package terraform.security\ndeny contains x if {\n")
    with pytest.raises(ConfigError, match="invalid Rego"):
        PolicySet(tmp_path)


def test_policy_set_reports_deny_and_warn(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text(
        "package terraform.cost\n"
        'deny contains {"rule": "r1", "resource": r.address, "msg": "m"} if { some r in input.resources }\n'
        'warn contains {"rule": "w1", "resource": "x", "msg": "m"} if { true }\n'
    )
    findings = PolicySet(tmp_path).evaluate({"target": "t", "resources": [{"address": "a.b"}]})
    assert [(f.rule, f.severity) for f in findings] == [("terraform.cost.r1", "deny"), ("terraform.cost.w1", "warn")]


def test_failing_rego_unit_test_is_reported(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text("package terraform.security\nallow if input.ok\n")
    (tmp_path / "p_test.rego").write_text(
        "package terraform.security_test\nimport data.terraform.security\n"
        'test_ok if security.allow with input as {"ok": true}\n'
        'test_wrong if security.allow with input as {"ok": false}\n'
    )
    results = {t.name: t.passed for t in PolicySet(tmp_path).run_tests()}
    assert results == {"test_ok": True, "test_wrong": False}


def test_parse_sarif_keeps_failures_only(tmp_path: Path) -> None:
    sarif = {
        "runs": [
            {
                "results": [
                    {
                        "ruleId": "CKV_AWS_24",
                        "message": {"text": "SSH"},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": "fx/main.tf"}}}],
                    },
                    {"ruleId": "CKV_AWS_1", "suppressions": [{"kind": "external"}]},
                ]
            }
        ]
    }
    findings = parse_sarif(sarif, tmp_path)
    assert [(f.rule, f.target) for f in findings] == [("CKV_AWS_24", "fx")]


def test_cli_maps_report_to_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    failing = report_with(Check("rego", "a", "failed", findings=[Finding("rego", "r", "a")]))
    monkeypatch.setattr(cli, "run_iac", lambda *a, **k: failing)
    assert cli.main(["run", "--output", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["summary"]["exit_code"] == 1


def test_cli_config_error_is_one_line_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*a: object, **k: object) -> Report:
        raise ConfigError("terraform not found: install it")

    monkeypatch.setattr(cli, "run_iac", boom)
    with pytest.raises(SystemExit) as exc:
        cli.main(["run"])
    assert exc.value.code == 3
    assert capsys.readouterr().err.strip() == "error: terraform not found: install it"


def test_cli_bad_flag_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--module", "azure"])
    assert exc.value.code == 3


@pytest.mark.parametrize(
    ("statuses", "status", "reason"),
    [
        (("caught", "caught"), "passed", ""),
        (("caught", "skipped", "skipped"), "passed", "passed with 2 skipped: f1 by tflint: no tflint"),
        (("skipped", "skipped"), "skipped", "f1 by tflint: no tflint"),
        (("caught", "missed", "skipped"), "failed", ""),
    ],
)
def test_skipped_fixture_expectations_are_never_counted_as_a_plain_pass(statuses, status, reason):
    verdicts = [
        FixtureVerdict(f"f{i}", "tflint", "r", s, "no tflint" if s == "skipped" else "") for i, s in enumerate(statuses)
    ]
    for v in verdicts:
        if v.status == "skipped":
            v.fixture = "f1"
    check = fixtures_check(verdicts, 1.0, len(verdicts))
    assert (check.status, check.reason) == (status, reason)
    report = Report(checks=[check])
    assert report.to_dict()["summary"]["passed_with_skips"] == (status == "passed" and bool(reason))
