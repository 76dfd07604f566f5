"""Static analysis of the shipped modules: every layer clean, or skipped with a stated reason."""

from __future__ import annotations

import pytest

from llmpyramid.iac.paths import MODULES
from llmpyramid.iac.report import Check, Report

pytestmark = [pytest.mark.terraform]


def check_for(report: Report, layer: str, target: str) -> Check:
    matches = [c for c in report.checks if c.layer == layer and target in c.target.split(", ")]
    assert matches, f"no {layer} check ran for {target}"
    return matches[0]


def assert_clean(check: Check) -> None:
    if check.status == "skipped":
        pytest.skip(check.reason)
    listed = "; ".join(f"{f.rule} {f.resource}: {f.message}" for f in check.findings)
    assert check.status == "passed", f"{check.layer} {check.status} on {check.target}: {check.reason}{listed}"
    assert not [f for f in check.findings if f.severity == "deny"]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("layer", ["fmt", "tflint", "checkov", "rego"])
def test_shipped_module_has_zero_findings(static_report: Report, layer: str, module: str) -> None:
    assert_clean(check_for(static_report, layer, f"terraform/{module}"))


def test_rego_unit_tests_pass(static_report: Report) -> None:
    check = check_for(static_report, "rego-unit", "terraform/policies")
    assert_clean(check)
    assert check.details["tests"] >= 30


def test_aws_policies_evaluated_against_a_real_plan(static_report: Report) -> None:
    """The aws provider is installable offline, so its Rego input is plan JSON, not HCL."""
    check = check_for(static_report, "rego", "terraform/aws")
    assert check.details["source"] == "plan"
    assert check.details["resources"] >= 12, "plan should include the optional network too"


def test_checkov_wrote_sarif(static_report: Report, results_dir) -> None:
    import json

    sarif = json.loads((results_dir / "checkov.sarif").read_text())
    assert sarif["runs"][0]["tool"]["driver"]["name"].lower().startswith("checkov")


def test_rego_wrote_sarif_for_code_scanning(static_report: Report, results_dir) -> None:
    """The shipped modules are clean, so the SARIF run exists with zero results (clears old alerts)."""
    import json

    sarif = json.loads((results_dir / "rego.sarif").read_text())
    (run,) = sarif["runs"]
    assert run["tool"]["driver"]["name"] == "llmpyramid-rego"
    assert run["results"] == []
