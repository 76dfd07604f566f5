"""Config checks on the terraform sources themselves (no terraform, no providers): `-k Config`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmpyramid.iac.inputs import load_module
from llmpyramid.iac.paths import MODULES, repo_root
from llmpyramid.iac.runner import load_fixtures

ROOT = repo_root()
TF = ROOT / "terraform"
REQUIRED_FILES = ("versions.tf", "variables.tf", "main.tf", "outputs.tf", "README.md")
LAYERS = {"fmt", "tflint", "checkov", "rego", "terraform-test"}
# Minimum prefix /8 (IPv4) and /32 (IPv6), whatever the spelling of the address.
WORLD_OPEN_CHECK = 'can(cidrhost(c, 0)) && try(tonumber(split("/", c)[1]) >= (strcontains(c, ":") ? 32 : 8), false)'


def variables(module: str) -> dict[str, dict]:
    return {k: v for block in load_module(TF / module).get("variable", []) for k, v in block.items()}


def outputs(module: str) -> dict[str, dict]:
    return {k: v for block in load_module(TF / module).get("output", []) for k, v in block.items()}


def validations(spec: dict) -> list[str]:
    return [v["condition"] for v in spec.get("validation", [])]


@pytest.mark.parametrize("module", MODULES)
class TestModuleConfig:
    def test_has_standard_files(self, module: str) -> None:
        missing = [f for f in REQUIRED_FILES if not (TF / module / f).is_file()]
        assert not missing, f"terraform/{module} lacks {missing}"

    def test_every_variable_typed_and_documented(self, module: str) -> None:
        bad = [n for n, v in variables(module).items() if not v.get("description") or "type" not in v]
        assert not bad, f"variables without description/type: {bad}"

    def test_naming_and_label_inputs_are_validated(self, module: str) -> None:
        vars_ = variables(module)
        for name in ("project", "environment", "name_suffix", "cost_center"):
            assert validations(vars_[name]), f"{name} has no validation block"
        extra = "extra_tags" if module == "aws" else "extra_labels"
        assert any("managed-by" in c or "managed-by" in json.dumps(vars_[extra]) for c in validations(vars_[extra]))

    @pytest.mark.parametrize("variable", ["admin_cidrs", "inference_allowed_cidrs"])
    def test_cidrs_reject_the_world_by_prefix_length(self, module: str, variable: str) -> None:
        """One contract in every module (behaviour: tests/static_iac/test_cidr_validation.py)."""
        conditions = " ".join(validations(variables(module)[variable]))
        assert WORLD_OPEN_CHECK in conditions, f"{variable} does not check the prefix length"

    def test_one_naming_convention_and_label_set(self, module: str) -> None:
        text = (TF / module / "main.tf").read_text()
        assert 'join("-", compact([var.project, var.environment, local.layer, var.name_suffix]))' in text
        for key in ("project", "environment", "layer", '"managed-by"', '"cost-center"'):
            assert re.search(rf"^\s+{re.escape(key)}\s+=", text, re.M), f"required label {key} not set"

    def test_outputs_documented(self, module: str) -> None:
        bad = [n for n, o in outputs(module).items() if not o.get("description")]
        assert outputs(module) and not bad, f"outputs without description: {bad}"

    def test_no_provider_blocks_in_module(self, module: str) -> None:
        assert "provider" not in load_module(TF / module), "modules must let the caller configure providers"

    def test_versions_pinned(self, module: str) -> None:
        (tf,) = load_module(TF / module)["terraform"]
        assert tf.get("required_version")
        for spec in tf["required_providers"][0].values():
            assert spec.get("source") and spec.get("version"), spec

    def test_native_tests_are_plan_only_and_mocked(self, module: str) -> None:
        files = sorted((TF / module / "tests").glob("*.tftest.hcl"))
        assert files, f"terraform/{module}/tests has no .tftest.hcl"
        text = "\n".join(f.read_text() for f in files)
        assert "mock_provider" in text
        assert "command = plan" in text and "command = apply" not in text
        assert text.count("expect_failures") >= 4, "variable validation needs expect_failures runs"


class TestAwsModuleConfig:
    """The emulator suite (issue 6) applies terraform/aws and reads these outputs."""

    def test_outputs_for_emulator_suite(self) -> None:
        needed = {"bucket_name", "bucket_arn", "role_name", "policy_arn", "security_group_id", "vpc_id"}
        assert needed <= set(outputs("aws"))

    def test_network_behind_a_boolean(self) -> None:
        assert variables("aws")["create_network"]["type"] == "bool"
        assert variables("aws")["create_network"]["default"] is False

    def test_unique_names_for_parallel_runs(self) -> None:
        assert "name_suffix" in variables("aws")


class TestHetznerSetupFixtureConfig:
    def test_seed_setup_module_exists_and_needs_no_provider(self) -> None:
        setup = load_module(TF / "hetzner" / "tests" / "setup")
        assert "resource" not in setup and "provider" not in setup
        assert {"ssh_public_keys", "admin_cidrs", "dedicated_nodes"} <= {k for block in setup["output"] for k in block}


class TestStaticToolConfig:
    def test_checkov_skips_are_justified(self) -> None:
        lines = (ROOT / ".checkov.yaml").read_text().splitlines()
        start = lines.index("skip-check:")
        for i, line in enumerate(lines[start + 1 :], start + 1):
            if re.match(r"^\s+- CKV", line):
                assert lines[i - 1].strip().startswith("#"), f"unjustified skip: {line.strip()}"
            elif line and not line.startswith((" ", "#")):
                break

    def test_checkov_frameworks(self) -> None:
        text = (ROOT / ".checkov.yaml").read_text()
        assert "- terraform" in text and "- secrets" in text

    def test_tflint_presets_and_pinned_rulesets(self) -> None:
        text = (TF / ".tflint.hcl").read_text()
        assert 'preset  = "recommended"' in text
        for ruleset in ("aws", "google"):
            block = re.search(rf'plugin "{ruleset}" \{{(.*?)\}}', text, re.S)
            assert block and re.search(r'version = "\d+\.\d+\.\d+"', block.group(1)), ruleset

    def test_policies_have_unit_tests(self) -> None:
        for name in ("security", "cost"):
            assert (TF / "policies" / f"{name}.rego").is_file()
            assert (TF / "policies" / f"{name}_test.rego").is_file()


class TestFixtureConfig:
    def test_fixtures_cover_the_issue(self) -> None:
        rules = {e["rule"] for _, spec in load_fixtures(ROOT) for e in spec["expect"]}
        for rule in (
            "terraform.security.ssh_world_open",
            "terraform.security.s3_bucket_unencrypted",
            "terraform.security.s3_public_access",
            "terraform.cost.burst_not_spot",
            "terraform.security.required_labels_missing",
            "terraform.security.invalid_name",
            "terraform.cost.autoscaler_ceiling",
            "terraform.security.lb_plaintext_public",
        ):
            assert rule in rules, f"no broken fixture proves {rule}"

    @pytest.mark.parametrize("fixture", sorted(p.name for p in (TF / "fixtures" / "broken").iterdir() if p.is_dir()))
    def test_fixture_declares_known_layers(self, fixture: str) -> None:
        spec = json.loads((TF / "fixtures" / "broken" / fixture / "expected.json").read_text())
        assert spec["description"] and spec["expect"]
        assert {e["layer"] for e in spec["expect"]} <= LAYERS


def test_config_paths_are_not_machine_specific() -> None:
    """No committed file points at a local provider mirror or CLI config (generated at run time)."""
    for path in [*TF.rglob("*.tf"), *TF.rglob("*.hcl"), ROOT / ".checkov.yaml"]:
        text = Path(path).read_text()
        assert "/opt/tf-plugins" not in text and "filesystem_mirror" not in text, path
