"""Rego findings as SARIF for GitHub code scanning: rules, levels and resource locations."""

from __future__ import annotations

import json
from pathlib import Path

from llmpyramid.iac.report import Finding
from llmpyramid.iac.sarif import locate, rego_sarif, write_rego_sarif

MAIN_TF = """\
locals {
  name = "x"
}

resource "hcloud_firewall" "base" {
  name = local.name
}

resource "hcloud_load_balancer_service" "inference" {
  protocol = "tcp"
}
"""


def module(tmp_path: Path) -> Path:
    mod = tmp_path / "terraform" / "hetzner"
    mod.mkdir(parents=True)
    (mod / "main.tf").write_text(MAIN_TF)
    return mod


def test_locate_finds_the_resource_block_line(tmp_path: Path) -> None:
    module(tmp_path)
    assert locate(tmp_path, "terraform/hetzner", "hcloud_load_balancer_service.inference") == (
        "terraform/hetzner/main.tf",
        9,
    )
    assert locate(tmp_path, "terraform/hetzner", "hcloud_firewall.base[0]") == ("terraform/hetzner/main.tf", 5)


def test_locate_falls_back_to_the_first_file(tmp_path: Path) -> None:
    module(tmp_path)
    assert locate(tmp_path, "terraform/hetzner", "hcloud_server.absent") == ("terraform/hetzner/main.tf", 1)
    assert locate(tmp_path, "terraform/nowhere", "x.y") == ("terraform/nowhere", 1)


def test_sarif_has_one_rule_per_id_and_levels_by_severity(tmp_path: Path) -> None:
    module(tmp_path)
    findings = [
        Finding(
            "rego",
            "terraform.security.lb_plaintext_public",
            "terraform/hetzner",
            "hcloud_load_balancer_service.inference",
            "plain TCP",
        ),
        Finding(
            "rego",
            "terraform.cost.pricey_instance_type",
            "terraform/hetzner",
            "hcloud_firewall.base",
            "costly",
            severity="warn",
        ),
        Finding("checkov", "CKV_AWS_24", "terraform/aws", "aws_security_group.x", "ignored: not rego"),
    ]
    doc = rego_sarif(findings, tmp_path)
    assert doc["version"] == "2.1.0"
    (run,) = doc["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules == ["terraform.cost.pricey_instance_type", "terraform.security.lb_plaintext_public"]
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {
        "terraform.security.lb_plaintext_public": "error",
        "terraform.cost.pricey_instance_type": "warning",
    }
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]
    lb = next(r for r in run["results"] if r["ruleId"].endswith("lb_plaintext_public"))
    loc = lb["locations"][0]["physicalLocation"]
    assert loc == {"artifactLocation": {"uri": "terraform/hetzner/main.tf"}, "region": {"startLine": 9}}


def test_no_findings_is_an_empty_but_valid_run(tmp_path: Path) -> None:
    path = write_rego_sarif([], tmp_path, tmp_path / "results" / "rego.sarif")
    doc = json.loads(path.read_text())
    assert doc["runs"][0]["results"] == [] and doc["runs"][0]["tool"]["driver"]["name"] == "llmpyramid-rego"
