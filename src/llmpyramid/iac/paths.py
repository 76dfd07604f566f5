"""Where the terraform tree, policies, fixtures and results live."""

from __future__ import annotations

import os
from pathlib import Path

from llmpyramid.errors import ConfigError

MODULES = ("hetzner", "gcp", "aws")


def repo_root() -> Path:
    """IAC_ROOT, else the working directory if it holds terraform/, else the source checkout."""
    if env := os.environ.get("IAC_ROOT"):
        root = Path(env)
    elif (Path.cwd() / "terraform").is_dir():
        root = Path.cwd()
    else:
        root = Path(__file__).resolve().parents[3]
    if not (root / "terraform").is_dir():
        raise ConfigError(f"no terraform/ directory under {root}: run from the repository root or set IAC_ROOT")
    return root.resolve()


def terraform_dir() -> Path:
    return repo_root() / "terraform"


def module_dir(name: str) -> Path:
    path = terraform_dir() / name
    if name not in MODULES or not path.is_dir():
        raise ConfigError(f"unknown terraform module {name!r}: expected one of {', '.join(MODULES)}")
    return path


def policies_dir() -> Path:
    return terraform_dir() / "policies"


def fixtures_dir() -> Path:
    return terraform_dir() / "fixtures" / "broken"


def rel(path: Path) -> str:
    """Path relative to the repository root, for reports."""
    try:
        return str(path.resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)
