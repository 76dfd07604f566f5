"""Unit tests for policy inputs: HCL resolution of var/local/merge/dynamic, and plan JSON shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmpyramid.errors import ConfigError
from llmpyramid.iac.inputs import from_hcl, from_plan

MODULE = """
variable "cidrs" {
  type    = list(string)
  default = ["0.0.0.0/0"]
}
variable "unset" {
  type = string
}
locals {
  layer = "burst"
  base  = { project = "p", layer = local.layer }
  tags  = merge(local.base, { extra = "x" })
}
resource "aws_security_group" "sg" {
  name = var.unset
  tags = local.tags
  dynamic "ingress" {
    for_each = [1]
    content {
      from_port   = 22
      to_port     = 22
      protocol    = "tcp"
      cidr_blocks = var.cidrs
    }
  }
}
resource "aws_s3_bucket_public_access_block" "pab" {
  bucket = aws_s3_bucket.b.id
}
"""


@pytest.fixture
def module(tmp_path: Path) -> Path:
    (tmp_path / "main.tf").write_text(MODULE)
    return tmp_path


def test_hcl_resolves_static_values(module: Path) -> None:
    data = from_hcl(module, "m")
    assert data["source"] == "hcl" and data["layer"] == "burst"
    sg = next(r for r in data["resources"] if r["type"] == "aws_security_group")
    assert sg["values"]["tags"] == {"project": "p", "layer": "burst", "extra": "x"}
    assert sg["values"]["ingress"][0]["cidr_blocks"] == ["0.0.0.0/0"]  # dynamic block flattened
    assert sg["values"]["name"] == "${var.unset}"  # no default: stays unknown


def test_hcl_records_references(module: Path) -> None:
    pab = next(r for r in from_hcl(module, "m")["resources"] if r["name"] == "pab")
    assert pab["refs"] == ["aws_s3_bucket.b"]


def test_unparseable_hcl_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text('resource "x" {\n  = broken\n')
    with pytest.raises(ConfigError, match="cannot parse"):
        from_hcl(tmp_path, "m")


def test_empty_module_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \*\.tf"):
        from_hcl(tmp_path, "m")


def test_plan_resources_and_config_references() -> None:
    plan = {
        "planned_values": {
            "root_module": {
                "resources": [
                    {
                        "address": "aws_s3_bucket.b",
                        "mode": "managed",
                        "type": "aws_s3_bucket",
                        "name": "b",
                        "values": {"bucket": "x"},
                    },
                    {"address": "aws_vpc.v[0]", "mode": "managed", "type": "aws_vpc", "name": "v", "values": {}},
                    {"address": "data.aws_region.r", "mode": "data", "type": "aws_region", "name": "r"},
                ]
            }
        },
        "configuration": {
            "root_module": {
                "resources": [
                    {
                        "address": "aws_vpc.v",
                        "expressions": {"x": {"references": ["aws_s3_bucket.b.id", "aws_s3_bucket.b", "var.y"]}},
                    }
                ]
            }
        },
    }
    data = from_plan(plan, "t", layer="burst")
    assert [r["address"] for r in data["resources"]] == ["aws_s3_bucket.b", "aws_vpc.v[0]"]
    assert data["resources"][1]["refs"] == ["aws_s3_bucket.b"]
    assert data["layer"] == "burst"
