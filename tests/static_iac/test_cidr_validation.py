"""The "never world-open" CIDR validations of every module, evaluated by real terraform offline.

A module's variables.tf needs no provider, so each module's variables are copied alone into a
scratch root and `terraform test` plans it with generated run blocks: every bypass form of
0.0.0.0/0 must be rejected on every CIDR variable, ordinary admin networks must be accepted.
The documented minimum prefix is /8 for IPv4 and /32 for IPv6 (terraform/*/variables.tf).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmpyramid.iac.paths import MODULES, module_dir
from llmpyramid.iac.terraform import Terraform, parse_test_runs
from tests.support.terraform_cli import terraform_or_exit

pytestmark = [pytest.mark.terraform]

# Each value covers (nearly) the whole internet and compared unequal to "0.0.0.0/0" / "::/0".
WORLD_OPEN = {
    "literal_ipv4": ["0.0.0.0/0"],
    "literal_ipv6": ["::/0"],
    "split_halves": ["0.0.0.0/1", "128.0.0.0/1"],
    "ipv6_zero_spelled_out": ["::0/0"],
    "ipv6_leading_zero": ["0::/0"],
    "host_bits_prefix_zero": ["1.2.3.4/0"],
    "ipv4_below_minimum": ["10.0.0.0/7"],
    "ipv6_below_minimum": ["2000::/3"],
    "hidden_among_narrow": ["203.0.113.0/24", "0.0.0.0/1"],
}
ACCEPTED = ["203.0.113.0/24", "10.0.0.0/8", "198.51.100.7/32", "2001:db8::/32"]

# Valid values for the variables each module requires, so only the CIDR under test can fail.
REQUIRED = {
    "aws": {"environment": "test"},
    "gcp": {"environment": "test", "gcp_project_id": "llmpyramid-test"},
    "hetzner": {
        "environment": "test",
        "admin_cidrs": ["203.0.113.0/24"],
        "ssh_public_keys": {"ci": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0dGVzdGtleQ ci@llmpyramid"},
    },
}
CIDR_VARIABLES = ("admin_cidrs", "inference_allowed_cidrs")


def hcl(value: object) -> str:
    return json.dumps(value)  # JSON lists, maps and strings are valid HCL expressions


def tftest_files(module: str) -> dict[str, str]:
    """One file per run: terraform skips the rest of a file after its first failing run."""
    common = ["variables {", *(f"  {k} = {hcl(v)}" for k, v in REQUIRED[module].items()), "}", ""]
    files = {}
    for var in CIDR_VARIABLES:
        cases = [(f"{var}_rejects_{form}", cidrs, True) for form, cidrs in WORLD_OPEN.items()]
        cases.append((f"{var}_accepts_admin_networks", ACCEPTED, False))
        for name, cidrs, rejected in cases:
            run = [f'run "{name}" {{', "  command = plan", f"  variables {{ {var} = {hcl(cidrs)} }}"]
            run += [f"  expect_failures = [var.{var}]"] if rejected else []
            files[name] = "\n".join([*common, *run, "}"]) + "\n"
    return files


@pytest.fixture(scope="module")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    return terraform_or_exit(tmp_path_factory.mktemp("tf-cidr"))


@pytest.mark.parametrize("module", MODULES)
def test_world_open_cidrs_rejected_by_variable_validation(terraform: Terraform, tmp_path: Path, module: str) -> None:
    work = tmp_path / module
    (work / "tests").mkdir(parents=True)
    shutil.copy(module_dir(module) / "variables.tf", work / "variables.tf")
    for name, text in tftest_files(module).items():
        (work / "tests" / f"{name}.tftest.hcl").write_text(text)
    init = terraform.run("init", "-backend=false", "-input=false", "-no-color", cwd=work, data_dir=tmp_path / "d")
    assert init.ok, init.output
    result = terraform.run("test", "-no-color", cwd=work, data_dir=tmp_path / "d")
    runs = parse_test_runs(result.stdout)
    expected = len(CIDR_VARIABLES) * (len(WORLD_OPEN) + 1)
    assert len(runs) == expected, result.output[-2000:]
    failed = [r["run"] for r in runs if r["status"] != "pass"]
    assert not failed, f"terraform/{module} validations let these through: {failed}"
    assert result.ok, result.output[-2000:]


def test_hetzner_tls_domain_names_validated(terraform: Terraform, tmp_path: Path) -> None:
    """tls_domain_names turns the load balancer public (HTTPS); only DNS names are accepted."""
    work = tmp_path / "hetzner"
    (work / "tests").mkdir(parents=True)
    shutil.copy(module_dir("hetzner") / "variables.tf", work / "variables.tf")
    common = ["variables {", *(f"  {k} = {hcl(v)}" for k, v in REQUIRED["hetzner"].items()), "}", ""]
    cases = {"accepts_dns_names": (["inference.example.com", "llm.eu.example.org"], False)}
    cases |= {f"rejects_{i}": ([bad], True) for i, bad in enumerate(["Not A Domain", "http://x.example.com", "x"])}
    for name, (domains, rejected) in cases.items():
        run = [f'run "{name}" {{', "  command = plan", f"  variables {{ tls_domain_names = {hcl(domains)} }}"]
        run += ["  expect_failures = [var.tls_domain_names]"] if rejected else []
        (work / "tests" / f"{name}.tftest.hcl").write_text("\n".join([*common, *run, "}"]) + "\n")
    data = tmp_path / "d"
    assert terraform.run("init", "-backend=false", "-input=false", "-no-color", cwd=work, data_dir=data).ok
    result = terraform.run("test", "-no-color", cwd=work, data_dir=data)
    runs = parse_test_runs(result.stdout)
    assert len(runs) == len(cases) and all(r["status"] == "pass" for r in runs), result.output[-2000:]
