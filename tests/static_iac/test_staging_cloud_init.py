"""The staging VM's cloud-init, rendered by terraform's own templatefile() offline and parsed as YAML:
it installs this repository at the tested commit and starts the llama.cpp server as a service, with
the per-run API key only in a 0600 environment file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "terraform" / "hetzner" / "templates" / "staging-cloud-init.yaml.tftpl"
pytestmark = [pytest.mark.terraform]


def render(tmp_path: Path, **values: object) -> str:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed: templatefile() cannot be rendered")
    expr = f"templatefile({json.dumps(str(TEMPLATE))}, {json.dumps(values)})"
    env = {**os.environ, "CHECKPOINT_DISABLE": "1"}  # no version check calling home
    out = subprocess.run(["terraform", "console"], input=expr, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    text = out.stdout.strip()
    assert text.startswith("<<EOT") and text.endswith("EOT"), text[:200]
    return text.split("\n", 1)[1].rsplit("\n", 1)[0]


def test_cloud_init_serves_the_tested_commit_with_the_key_in_a_private_file(tmp_path):
    key = "k" * 24
    rendered = render(tmp_path, api_key=key, port=8080, repo_url="https://example.invalid/repo.git", repo_ref="abc123")
    assert rendered.startswith("#cloud-config")
    doc = yaml.safe_load(rendered)
    files = {f["path"]: f for f in doc["write_files"]}
    env = files["/etc/llmpyramid/server.env"]
    assert env["permissions"] == "0600" and f"API_KEY={key}" in env["content"] and "SERVE_PORT=8080" in env["content"]
    unit = files["/etc/systemd/system/llmpyramid.service"]["content"]
    assert "llmpyramid.cloud.node serve" in unit and "EnvironmentFile=/etc/llmpyramid/server.env" in unit
    commands = [" ".join(map(str, c)) for c in doc["runcmd"]]
    assert "git -C /opt/llmpyramid checkout --quiet abc123" in commands
    assert any("enable --now llmpyramid.service" in c for c in commands)
    assert sum(key in c for c in commands) == 0 and key not in unit  # the key never reaches a command line
