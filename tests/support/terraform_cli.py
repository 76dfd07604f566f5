"""The terraform CLI for a test module: a private run dir, or the whole session stops with the seed's code."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmpyramid.errors import PyramidError
from llmpyramid.iac.terraform import Terraform


def terraform_or_exit(run_dir: Path) -> Terraform:
    """No terraform binary or a broken CLI configuration ends the session with exit 2/3 and one line."""
    try:
        return Terraform(run_dir=run_dir)
    except PyramidError as exc:
        pytest.exit(f"error: {exc}", returncode=int(exc.exit_code))
