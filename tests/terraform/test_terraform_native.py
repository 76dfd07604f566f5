"""terraform test per module (plan-only, mocked providers). Providers not installable here are
skipped with "skipped: provider X not available offline"; CI runs them with registry access."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmpyramid.iac.paths import MODULES, module_dir
from llmpyramid.iac.terraform import Terraform
from tests.support.terraform_cli import terraform_or_exit

pytestmark = [pytest.mark.terraform]


@pytest.fixture(scope="module")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    return terraform_or_exit(tmp_path_factory.mktemp("tf"))


@pytest.mark.parametrize("module", MODULES)
def test_terraform_test_passes(terraform: Terraform, module: str) -> None:
    outcome = terraform.test(module_dir(module))
    if outcome.status == "skipped":
        pytest.skip(outcome.reason)
    failed = [f"{r['run']}={r['status']}" for r in outcome.failed_runs]
    assert outcome.status == "passed", f"{outcome.reason}; failed runs: {failed}\n{outcome.output[-2000:]}"
    assert len(outcome.runs) >= 8, "expected the module's full set of run blocks"


def test_terraform_test_catches_a_regression(terraform: Terraform, tmp_path: Path) -> None:
    """Mutation check: suspend versioning in a copy of terraform/aws and its tests must fail."""
    src = module_dir("aws")
    if terraform.missing_providers(src):
        pytest.skip("skipped: provider aws not available offline")
    broken = tmp_path / "aws"
    shutil.copytree(src, broken, ignore=shutil.ignore_patterns(".terraform*"))
    main = broken / "main.tf"
    text = main.read_text()
    assert 'status = "Enabled"' in text
    main.write_text(text.replace('status = "Enabled"\n  }\n}', 'status = "Suspended"\n  }\n}', 1))
    outcome = terraform.test(broken)
    assert outcome.status == "failed"
    assert {r["run"] for r in outcome.failed_runs} == {"bucket_is_private_versioned_encrypted"}
