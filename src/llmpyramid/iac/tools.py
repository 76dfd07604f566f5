"""Checkov's private virtualenv, built from the pinned requirements/checkov.txt when needed.

checkov ships its own `hcl2` module (bc-python-hcl2) which clashes with python-hcl2, so it never
shares a venv with this library: nox builds one per session, and plain `uv run` callers get a
cached one keyed by the lock file's hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.iac.checkov import checkov_bin

REQUIREMENTS = "requirements/checkov.txt"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmpyramid"


def ensure_checkov(root: Path, *, install: bool = True) -> str:
    """IAC_CHECKOV_BIN, `checkov` on PATH, or a cached venv installed from the pinned requirements."""
    if found := checkov_bin():
        return found
    req = root / REQUIREMENTS
    if not req.is_file():
        raise ConfigError(f"{REQUIREMENTS} missing: cannot install checkov")
    digest = hashlib.sha256(req.read_bytes()).hexdigest()[:12]
    venv = cache_dir() / f"checkov-{digest}"
    binary = venv / "bin" / "checkov"
    marker = venv / ".installed"  # written last, so a half-finished install is redone
    if binary.exists() and marker.exists():
        return str(binary)
    uv = shutil.which("uv")
    if not install or uv is None:
        raise ConfigError(
            "checkov not installed: run `nox -s static_iac`, install requirements/checkov.txt in a "
            "separate venv and set IAC_CHECKOV_BIN, or install uv"
        )
    shutil.rmtree(venv, ignore_errors=True)
    for cmd in (
        [uv, "venv", "--quiet", "--python", "3.11", str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-r", str(req)],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise InfrastructureError(f"installing checkov failed: {' '.join(proc.stderr.split())[-300:]}")
    marker.write_text(digest + "\n")
    return str(binary)
