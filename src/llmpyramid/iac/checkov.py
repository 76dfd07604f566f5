"""Checkov, run as a separate executable (its own venv: it conflicts with python-hcl2).

The executable is IAC_CHECKOV_BIN, else `checkov` on PATH. Results come back as SARIF (written
to the results directory for GitHub code scanning) and are parsed into findings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.iac.report import Finding

CONFIG = ".checkov.yaml"


def checkov_bin() -> str | None:
    env = os.environ.get("IAC_CHECKOV_BIN")
    if env:
        if not Path(env).exists():
            raise ConfigError(f"IAC_CHECKOV_BIN={env} does not exist")
        return env
    return shutil.which("checkov")


def run_checkov(
    binary: str,
    directories: list[Path],
    sarif_path: Path,
    *,
    root: Path,
    use_config: bool = True,
    timeout: float = 300.0,
) -> list[Finding]:
    """Scan directories; write SARIF to sarif_path; return failed checks as findings.

    use_config=False still applies the config's skip-check list but not its skip-path (so the
    broken fixtures, which the config excludes, can be scanned on purpose).
    """
    config = root / CONFIG
    if not config.is_file():
        raise ConfigError(f"{CONFIG} missing at {root}")
    out_dir = sarif_path.parent / f".{sarif_path.stem}"
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "--config-file", str(config), "--output", "sarif", "--output-file-path", str(out_dir)]
    if not use_config:
        # An explicit CLI value replaces the config file's list (configargparse precedence).
        cmd += ["--skip-path", "^$"]
    for d in directories:
        cmd += ["--directory", str(d)]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise InfrastructureError(f"checkov timed out after {timeout:.0f}s") from None
    produced = out_dir / "results_sarif.sarif"
    if proc.returncode not in (0, 1) or not produced.is_file():
        tail = " ".join((proc.stderr or proc.stdout).split())[-300:]
        raise InfrastructureError(f"checkov failed (exit {proc.returncode}): {tail}")
    sarif_path.write_text(produced.read_text())
    shutil.rmtree(out_dir, ignore_errors=True)
    return parse_sarif(json.loads(sarif_path.read_text()), root)


def parse_sarif(sarif: dict[str, Any], root: Path) -> list[Finding]:
    findings: list[Finding] = []
    for run in sarif.get("runs", []):
        for res in run.get("results", []):
            if res.get("kind") not in (None, "fail") or res.get("suppressions"):
                continue
            loc = (res.get("locations") or [{}])[0].get("physicalLocation", {})
            uri = loc.get("artifactLocation", {}).get("uri", "")
            findings.append(
                Finding(
                    layer="checkov",
                    rule=res.get("ruleId", "?"),
                    target=str(Path(uri).parent) if uri else "",
                    resource=uri,
                    message=res.get("message", {}).get("text", ""),
                )
            )
    return findings
