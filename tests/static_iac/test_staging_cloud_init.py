"""The staging VM's cloud-init, rendered by terraform's own templatefile() offline and parsed as YAML:
it installs this repository at the tested commit exactly as locked (uv sync --frozen) and starts the
llama.cpp server as a service of an unprivileged user, with the per-run API key only in a 0600
environment file. The repository URL and ref it interpolates are refused by variable validation unless
plain, checked by real terraform offline (variables.tf alone needs no provider)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmpyramid import staging
from llmpyramid.iac.terraform import Terraform, parse_test_runs
from tests.support.terraform_cli import terraform_or_exit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "terraform" / "hetzner" / "templates" / "staging-cloud-init.yaml.tftpl"
SETUP_SH = ROOT / "src" / "llmpyramid" / "cloud" / "tasks" / "setup.sh"
pytestmark = [pytest.mark.terraform]
VALUES = {"port": 8080, "repo_url": "https://example.invalid/repo.git", "repo_ref": "abc123"}


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
    rendered = render(tmp_path, api_key=key, **VALUES)
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


def _doc(tmp_path: Path) -> tuple[dict, list[list[str]], str]:
    doc = yaml.safe_load(render(tmp_path, api_key="k" * 24, **VALUES))
    unit = {f["path"]: f for f in doc["write_files"]}["/etc/systemd/system/llmpyramid.service"]["content"]
    return doc, [[str(a) for a in c] for c in doc["runcmd"]], unit


def test_the_service_runs_as_an_unprivileged_system_user(tmp_path):
    _, commands, unit = _doc(tmp_path)
    users = re.findall(r"^User=(\S+)$", unit, re.M)
    assert users == ["llmpyramid"], unit
    useradd = [c for c in commands if c[0] == "useradd"]
    assert useradd and "--system" in useradd[0] and useradd[0][-1] == "llmpyramid"
    assert "/usr/sbin/nologin" in useradd[0]
    # the user is created before the service starts
    assert commands.index(useradd[0]) < next(i for i, c in enumerate(commands) if "enable" in c)


def test_installs_from_the_lock_file_with_the_pinned_uv(tmp_path):
    _, commands, unit = _doc(tmp_path)
    lines = [" ".join(c) for c in commands]
    sync = [c for c in commands if "sync" in c]
    assert len(sync) == 1 and "--frozen" in sync[0] and "--no-default-groups" in sync[0], lines
    # every pip install names exact versions; the uv pin is the cloud tasks' (setup.sh)
    pins = [c[c.index("install") + 1 :] for c in commands if "pip" in c[0] and "install" in c]
    packages = [a for pkgs in pins for a in pkgs if not a.startswith("-")]
    assert packages and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", p) for p in packages), packages
    setup_pin = re.search(r'"(uv==[^"]+)"', SETUP_SH.read_text())
    assert setup_pin and packages == [setup_pin.group(1)], (packages, setup_pin)
    assert not any(re.search(r"\bpip3? install\b", line) and "==" not in line for line in lines)
    # the service runs the synced environment, never syncing (or resolving) anything itself
    for key in ("ExecStartPre", "ExecStart"):
        (value,) = re.findall(rf"^{key}=(.+)$", unit, re.M)
        assert " run --no-sync " in value and "pip" not in value, value


def test_repo_url_and_ref_are_quoted_and_never_an_option(tmp_path):
    _, commands, _ = _doc(tmp_path)
    clone = next(c for c in commands if c[:2] == ["git", "clone"])
    assert clone[clone.index("--") + 1] == VALUES["repo_url"]


# (variable, value, accepted): terraform's validation and llmpyramid.staging's check must agree on each.
REPO_CASES = [
    ("staging_repo_url", "https://github.com/example/llmpyramid.git", True),
    ("staging_repo_url", "https://git.example.com:8443/team/repo", True),
    ("staging_repo_url", "", True),  # the module default: no server installed
    ("staging_repo_url", "http://github.com/example/repo.git", False),
    ("staging_repo_url", "git@github.com:example/repo.git", False),
    ("staging_repo_url", "https://user:token@github.com/example/repo.git", False),
    ("staging_repo_url", 'https://github.com/x/repo.git", "--upload-pack=touch /tmp/x', False),
    ("staging_repo_url", "https://github.com/x/repo.git\nruncmd: [reboot]", False),
    ("staging_repo_url", "https://github.com/x/$(id).git", False),
    ("staging_repo_url", "https://github.com/x/`id`.git", False),
    ("staging_repo_url", "https://github.com/x/a b.git", False),
    ("staging_repo_url", "-uhttps://github.com/x/repo.git", False),
    ("staging_repo_ref", "main", True),
    ("staging_repo_ref", "release/1.2_rc-3", True),
    ("staging_repo_ref", "0123456789abcdef0123456789abcdef01234567", True),
    ("staging_repo_ref", "--upload-pack=x", False),
    ("staging_repo_ref", "-b", False),
    ("staging_repo_ref", "main; reboot", False),
    ("staging_repo_ref", "main\nreboot", False),
    ("staging_repo_ref", "$(id)", False),
    ("staging_repo_ref", "`id`", False),
    ("staging_repo_ref", 'main"', False),
    ("staging_repo_ref", "", False),
]
REQUIRED = {
    "environment": "test",
    "admin_cidrs": ["203.0.113.0/24"],
    "ssh_public_keys": {"ci": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0dGVzdGtleQ ci@llmpyramid"},
}


def hcl(value: object) -> str:
    """A JSON value as HCL: also a literal `${`/`%{` must not start a template sequence."""
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


@pytest.fixture(scope="module")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    return terraform_or_exit(tmp_path_factory.mktemp("tf-staging-repo"))


def test_python_check_agrees_with_the_cases():
    patterns = {"staging_repo_url": staging.REPO_URL_PATTERN, "staging_repo_ref": staging.REPO_REF_PATTERN}
    for var, value, accepted in REPO_CASES:
        if value == "" and var == "staging_repo_url":
            continue  # staging.py never passes an empty URL (it is a ConfigError before)
        assert bool(re.fullmatch(patterns[var], value)) is accepted, (var, value)


def test_repo_url_and_ref_validated_by_terraform(terraform: Terraform, tmp_path: Path) -> None:
    """Real terraform, offline: each case is a plan-only run of variables.tf alone (one file per run:
    terraform skips the rest of a file after its first failing run)."""
    work = tmp_path / "hetzner"
    (work / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "terraform" / "hetzner" / "variables.tf", work / "variables.tf")
    common = ["variables {", *(f"  {k} = {hcl(v)}" for k, v in REQUIRED.items()), "}", ""]
    for i, (var, value, accepted) in enumerate(REPO_CASES):
        run = [f'run "{var}_{i}_{"accepted" if accepted else "rejected"}" {{', "  command = plan"]
        run += [f"  variables {{ {var} = {hcl(value)} }}"]
        run += [] if accepted else [f"  expect_failures = [var.{var}]"]
        (work / "tests" / f"case{i:02d}.tftest.hcl").write_text("\n".join([*common, *run, "}"]) + "\n")
    data = tmp_path / "d"
    init = terraform.run("init", "-backend=false", "-input=false", "-no-color", cwd=work, data_dir=data)
    assert init.ok, init.output
    result = terraform.run("test", "-no-color", cwd=work, data_dir=data)
    runs = parse_test_runs(result.stdout)
    assert len(runs) == len(REPO_CASES), result.output[-3000:]
    wrong = [r["run"] for r in runs if r["status"] != "pass"]
    assert not wrong, f"terraform/hetzner validation disagrees on: {wrong}\n{result.output[-3000:]}"
    assert result.ok, result.output[-2000:]
