"""Unit tests for the terraform CLI wrapper: CLI config generation, mirror discovery, parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmpyramid.errors import ConfigError, ExitCode
from llmpyramid.iac import terraform as tfmod
from llmpyramid.iac.terraform import Terraform, mirrored_providers, parse_test_runs, required_providers


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    binary = tmp_path / "terraform"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    monkeypatch.setenv("TERRAFORM_BIN", str(binary))
    return binary


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    plat = root / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0" / "linux_amd64"
    plat.mkdir(parents=True)
    (plat / "terraform-provider-aws_v5.100.0_x5").write_text("")
    return root


def test_missing_terraform_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERRAFORM_BIN", "/nonexistent/terraform")
    with pytest.raises(ConfigError) as err:
        tfmod.terraform_bin()
    assert err.value.exit_code == ExitCode.CONFIGURATION
    assert "\n" not in str(err.value) and "TERRAFORM_BIN" in str(err.value)


def test_mirror_env_override_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_PLUGIN_MIRROR", "/nonexistent/mirror")
    with pytest.raises(ConfigError, match="TF_PLUGIN_MIRROR"):
        tfmod.find_mirror()


def test_mirror_env_override_wins(monkeypatch: pytest.MonkeyPatch, mirror: Path) -> None:
    monkeypatch.setenv("TF_PLUGIN_MIRROR", str(mirror))
    assert tfmod.find_mirror() == mirror


def test_mirrored_providers_lists_sources(mirror: Path) -> None:
    assert mirrored_providers(mirror) == {"registry.terraform.io/hashicorp/aws"}
    assert mirrored_providers(None) == set()


def test_cli_config_points_at_the_mirror_and_excludes_it_from_direct(
    fake_bin: Path, mirror: Path, tmp_path: Path
) -> None:
    tf = Terraform(run_dir=tmp_path / "run", mirror=mirror)
    text = tf.cli_config.read_text()
    assert "filesystem_mirror" in text and str(mirror) in text
    assert 'include = ["registry.terraform.io/hashicorp/aws"]' in text
    assert 'exclude = ["registry.terraform.io/hashicorp/aws"]' in text
    env = tf.env(tmp_path / "data")
    assert env["TF_CLI_CONFIG_FILE"] == str(tf.cli_config)
    assert env["TF_DATA_DIR"] == str(tmp_path / "data")


def test_cli_config_without_mirror_uses_registry(fake_bin: Path, tmp_path: Path) -> None:
    tf = Terraform(run_dir=tmp_path / "run", mirror=None)
    text = tf.cli_config.read_text()
    assert "filesystem_mirror" not in text and "direct {}" in text


def test_required_providers_and_offline_skip(fake_bin: Path, mirror: Path, tmp_path: Path) -> None:
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "versions.tf").write_text(
        'terraform {\n  required_providers {\n    hcloud = { source = "hetznercloud/hcloud" }\n'
        '    aws = { source = "hashicorp/aws" }\n  }\n}\n'
    )
    assert required_providers(mod) == {
        "hcloud": "registry.terraform.io/hetznercloud/hcloud",
        "aws": "registry.terraform.io/hashicorp/aws",
    }
    tf = Terraform(run_dir=tmp_path / "run", mirror=mirror)
    tf.__dict__["online"] = False  # cached_property: pretend the registry is unreachable
    assert tf.missing_providers(mod) == ["hcloud"]
    outcome = tf.test(mod)
    assert outcome.status == "skipped"
    assert outcome.reason == "skipped: provider hcloud not available offline"
    tf.__dict__["online"] = True
    assert tf.missing_providers(mod) == []


def test_parse_test_runs() -> None:
    out = (
        'tests/a.tftest.hcl... in progress\n  run "one"... pass\n  run "two"... fail\n'
        "tests/a.tftest.hcl... tearing down\ntests/a.tftest.hcl... fail\n"
        'tests/b.tftest.hcl... in progress\n  run "three"... skip\n'
    )
    assert parse_test_runs(out) == [
        {"file": "tests/a.tftest.hcl", "run": "one", "status": "pass"},
        {"file": "tests/a.tftest.hcl", "run": "two", "status": "fail"},
        {"file": "tests/b.tftest.hcl", "run": "three", "status": "skip"},
    ]
