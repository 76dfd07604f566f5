"""TFLint, when installed (IAC_TFLINT_BIN or `tflint` on PATH); otherwise the layer is skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.iac.report import Finding

CONFIG = "terraform/.tflint.hcl"


def tflint_bin() -> str | None:
    env = os.environ.get("IAC_TFLINT_BIN")
    if env:
        if not Path(env).exists():
            raise ConfigError(f"IAC_TFLINT_BIN={env} does not exist")
        return env
    return shutil.which("tflint")


class TFLint:
    def __init__(self, binary: str, root: Path, timeout: float = 300.0):
        self.binary = binary
        self.config = root / CONFIG
        self.timeout = timeout
        self._initialised = False

    def _run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.binary, *args], cwd=cwd, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise InfrastructureError(f"tflint {args[0]} timed out after {self.timeout:.0f}s") from None

    def init(self) -> None:
        """Install the pinned rulesets (needs GitHub access, as in CI)."""
        if self._initialised:
            return
        proc = self._run("--init", f"--config={self.config}")
        if proc.returncode != 0:
            tail = " ".join((proc.stderr or proc.stdout).split())[-300:]
            raise InfrastructureError(f"tflint --init failed: {tail}")
        self._initialised = True

    def lint(self, module: Path, target: str) -> list[Finding]:
        self.init()
        proc = self._run(f"--chdir={module}", f"--config={self.config}", "--format=json", "--force")
        try:
            doc = json.loads(proc.stdout or "{}")
        except json.JSONDecodeError:
            raise InfrastructureError(f"tflint gave no JSON for {target}: {proc.stderr.strip()[:300]}") from None
        if doc.get("errors"):
            raise InfrastructureError(f"tflint errors in {target}: {doc['errors'][0].get('message', '')[:300]}")
        return [
            Finding(
                layer="tflint",
                rule=issue["rule"]["name"],
                target=target,
                resource=issue.get("range", {}).get("filename", ""),
                message=issue.get("message", ""),
                severity="warn" if issue["rule"].get("severity") == "notice" else "deny",
            )
            for issue in doc.get("issues", [])
        ]
