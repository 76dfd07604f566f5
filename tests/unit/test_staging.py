"""The Hetzner staging path without a network: a fake `terraform` (TERRAFORM_BIN, a small script) records
every call, so the process and state rules of llmpyramid.staging are checked for real:

- Ctrl-C during apply reaches terraform's own process group as SIGINT (it saves state), then destroy runs;
- a failed destroy keeps the working directory with the state and logs the command that removes the VM,
  which works as printed; a successful one removes the directory;
- STAGING_REPO_URL / STAGING_REPO_REF must be plain before terraform runs (exit 3, one line), with the
  same patterns as terraform/hetzner/variables.tf.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from llmpyramid import staging
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.errors import ConfigError, ExitCode, InfrastructureError

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0dGVzdGtleQ ci@llmpyramid"
FAKE_TERRAFORM = """\
import json, os, signal, sys, time
from pathlib import Path

rec = Path(os.environ["FAKE_TF_DIR"])
cmd = sys.argv[1]
call = {"argv": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(), "pgid": os.getpgid(0),
        "api_key": os.environ.get("TF_VAR_staging_api_key")}
with (rec / "calls.jsonl").open("a") as fh:
    fh.write(json.dumps(call) + "\\n")
state = Path("terraform.tfstate")
if cmd == "apply":
    state.write_text('{"resources": ["creating"]}')
    mode = os.environ.get("FAKE_TF_APPLY", "ok")
    if mode == "hang":
        def graceful_stop(_signum, _frame):  # what terraform does on SIGINT: finish, save state, exit 1
            state.write_text('{"resources": ["hcloud_server.staging"]}')
            (rec / "sigint").write_text("state saved")
            sys.exit(1)
        signal.signal(signal.SIGINT, graceful_stop)
        (rec / "apply-started").write_text(str(os.getpid()))
        time.sleep(60)
        sys.exit(3)
    if mode == "fail":
        print("Error: creating server: boom", file=sys.stderr)
        sys.exit(1)
elif cmd == "output":
    print(json.dumps({"staging_ipv4": {"value": "127.0.0.1"}, "inference_port": {"value": 9}}))
elif cmd == "destroy":
    if (rec / "destroy-fails").exists():
        print("Error: deleting server: still locked", file=sys.stderr)
        sys.exit(1)
    state.write_text('{"resources": []}')
sys.exit(0)
"""


@pytest.fixture
def fake_tf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake terraform and its record directory; staging's temporary directories go under tmp_path."""
    rec = tmp_path / "rec"
    rec.mkdir()
    binary = tmp_path / "bin" / "terraform"
    binary.parent.mkdir()
    binary.write_text(f"#!{sys.executable}\n{FAKE_TERRAFORM}")
    binary.chmod(0o755)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    env = {
        "TERRAFORM_BIN": str(binary),
        "FAKE_TF_DIR": str(rec),
        "HCLOUD_TOKEN": "hcloud-token-never-printed",
        "STAGING_CLIENT_CIDR": "203.0.113.7/32",
        "STAGING_ADMIN_CIDR": "203.0.113.0/24",
        "STAGING_SSH_PUBLIC_KEY": SSH_KEY,
        "STAGING_REPO_URL": "https://github.com/example/llmpyramid.git",
        "STAGING_REPO_REF": "0123456789abcdef0123456789abcdef01234567",
        "STAGING_HEALTH_TIMEOUT": "10s",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_VAR_staging_api_key", raising=False)
    return rec


def calls(rec: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (rec / "calls.jsonl").read_text().splitlines()]


def staging_dirs(rec: Path) -> list[Path]:
    return sorted((rec.parent / "tmp").glob("llmpyramid-staging-*"))


def wait_for(path: Path, timeout: float = 30.0) -> bool:
    return bool(
        Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(0.05),
            retry=retry_if_result(lambda found: not found),
            retry_error_callback=lambda _: False,
        )(path.exists)
    )


@pytest.fixture
def plain_ctrl_c() -> Iterator[None]:
    """Python's own SIGINT handler for this test: the session's one-interrupt rule (tests/conftest.py) would
    take our Ctrl-C as the session's, swallow later ones and arm its exit timer."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def interrupt_when_apply_starts(fake_tf: Path, monkeypatch: pytest.MonkeyPatch, plain_ctrl_c: None) -> Iterator[None]:
    """Ctrl-C to this process once the fake apply is running (the user pressing it mid-apply)."""
    monkeypatch.setenv("FAKE_TF_APPLY", "hang")

    def press() -> None:
        if wait_for(fake_tf / "apply-started"):
            os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press, daemon=True)
    presser.start()
    yield
    presser.join(timeout=35)


def test_ctrl_c_during_apply_forwards_sigint_to_terraforms_group_and_still_destroys(
    fake_tf: Path, interrupt_when_apply_starts: None
) -> None:
    logs: list[str] = []
    with pytest.raises(KeyboardInterrupt), staging.hetzner_staging(logs.append):
        pytest.fail("the apply was interrupted: the body never runs")
    assert (fake_tf / "sigint").read_text() == "state saved"  # terraform's graceful stop, not a kill
    made = calls(fake_tf)
    assert [c["argv"][0] for c in made] == ["init", "apply", "destroy"]
    apply = made[1]
    assert apply["pgid"] == apply["pid"] != os.getpgid(0)  # its own group: a terminal Ctrl-C is ours to forward
    assert not psutil.pid_exists(apply["pid"]) or psutil.Process(apply["pid"]).status() == psutil.STATUS_ZOMBIE
    assert staging_dirs(fake_tf) == []  # destroyed: the directory is gone
    assert any("terraform destroy" in line for line in logs) and not any("FAILED" in line for line in logs)


def test_a_failed_destroy_keeps_the_state_and_logs_the_command_that_works(fake_tf: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_TF_APPLY", "fail")
    (fake_tf / "destroy-fails").write_text("")
    logs: list[str] = []
    with pytest.raises(InfrastructureError, match="boom") as err, staging.hetzner_staging(logs.append):
        pytest.fail("apply failed: the body never runs")
    assert err.value.exit_code == ExitCode.INFRASTRUCTURE
    (kept,) = staging_dirs(fake_tf)
    workdir = kept / "hetzner"
    assert json.loads((workdir / "terraform.tfstate").read_text()) == {"resources": ["creating"]}
    failed = [line for line in logs if "DESTROY FAILED" in line]
    assert len(failed) == 1 and "still locked" in failed[0] and str(kept) in failed[0]
    (hint,) = [line for line in logs if "remove it by hand" in line]
    command = hint.split("; run: ", 1)[1]
    assert command.startswith(f"cd {shlex.quote(str(workdir))} && ") and " destroy -auto-approve " in command
    api_key = next(c["api_key"] for c in calls(fake_tf) if c["argv"][0] == "apply")
    assert api_key and all(api_key not in line for line in logs)  # never printed
    assert all("hcloud-token-never-printed" not in line for line in logs)
    assert "HCLOUD_TOKEN" in hint

    # the printed command, run by hand, is the destroy staging ran: same directory, same arguments
    (fake_tf / "destroy-fails").unlink()
    subprocess.run(["sh", "-c", command], check=True, env={**os.environ, "TF_VAR_staging_api_key": ""})
    destroys = [c for c in calls(fake_tf) if c["argv"][0] == "destroy"]
    assert len(destroys) == 2 and destroys[0]["argv"] == destroys[1]["argv"]
    assert destroys[0]["cwd"] == destroys[1]["cwd"] == str(workdir)
    assert destroys[0]["api_key"] is None  # the automatic destroy needs no key either
    assert json.loads((workdir / "terraform.tfstate").read_text()) == {"resources": []}


def test_a_successful_run_removes_its_directory(fake_tf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "_healthy", lambda url: url == "http://127.0.0.1:9")
    logs: list[str] = []
    with staging.hetzner_staging(logs.append) as (target, details):
        assert target.base_url == "http://127.0.0.1:9" and details["ipv4"] == "127.0.0.1"
        assert len(staging_dirs(fake_tf)) == 1
    assert [c["argv"][0] for c in calls(fake_tf)] == ["init", "apply", "output", "destroy"]
    assert staging_dirs(fake_tf) == []
    assert not any("FAILED" in line for line in logs)


# --- STAGING_REPO_URL / STAGING_REPO_REF ------------------------------------------------------------

BAD_URLS = [
    "http://github.com/example/repo.git",
    "git@github.com:example/repo.git",
    "https://user:token@github.com/example/repo.git",
    'https://github.com/x/repo.git" --upload-pack=touch',
    "https://github.com/x/repo.git\nruncmd: [reboot]",
    "https://github.com/x/$(id).git",
    "https://github.com/x/`id`.git",
    "https://github.com/x/a b.git",
    "-uhttps://github.com/x/repo.git",
    "https://github.com/x/repo.git\n",
]
BAD_REFS = ["-b", "--upload-pack=x", "main; reboot", "main\nreboot", "$(id)", "`id`", 'main"', "main\n", ".hidden"]


@pytest.mark.parametrize("value", BAD_URLS)
def test_a_repo_url_that_is_not_plain_is_a_config_error_naming_it(fake_tf: Path, monkeypatch, value: str) -> None:
    monkeypatch.setenv("STAGING_REPO_URL", value)
    with pytest.raises(ConfigError) as err:
        staging._tf_vars()
    assert err.value.exit_code == ExitCode.CONFIGURATION
    assert "STAGING_REPO_URL" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("value", BAD_REFS)
def test_a_repo_ref_that_is_not_plain_is_a_config_error_naming_it(fake_tf: Path, monkeypatch, value: str) -> None:
    monkeypatch.setenv("STAGING_REPO_REF", value)
    with pytest.raises(ConfigError) as err:
        staging._tf_vars()
    assert err.value.exit_code == ExitCode.CONFIGURATION
    assert "STAGING_REPO_REF" in str(err.value) and "\n" not in str(err.value)


def test_a_bad_repo_value_stops_before_terraform_runs(fake_tf: Path, monkeypatch) -> None:
    monkeypatch.setenv("STAGING_REPO_REF", "--upload-pack=x")
    with pytest.raises(ConfigError, match="STAGING_REPO_REF"), staging.hetzner_staging(lambda _m: None):
        pytest.fail("never reached")
    assert not (fake_tf / "calls.jsonl").exists() and staging_dirs(fake_tf) == []


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        ("https://github.com/example/llmpyramid.git", "main"),
        ("https://git.example.com:8443/team/repo", "release/1.2_rc-3"),
        ("https://github.com/example/llmpyramid", "0123456789abcdef0123456789abcdef01234567"),
    ],
)
def test_plain_repo_values_pass_unchanged(fake_tf: Path, monkeypatch, url: str, ref: str) -> None:
    monkeypatch.setenv("STAGING_REPO_URL", url)
    monkeypatch.setenv("STAGING_REPO_REF", ref)
    args = staging._tf_vars()
    assert f"-var=staging_repo_url={url}" in args and f"-var=staging_repo_ref={ref}" in args


def test_the_python_patterns_are_the_terraform_validation_patterns() -> None:
    """One rule in two languages: variables.tf validates with exactly the patterns staging.py checks."""
    text = (PROJECT_ROOT / "terraform" / "hetzner" / "variables.tf").read_text()
    for var, pattern in (
        ("staging_repo_url", staging.REPO_URL_PATTERN),
        ("staging_repo_ref", staging.REPO_REF_PATTERN),
    ):
        assert "\\" not in pattern and '"' not in pattern  # the HCL string literal is the pattern itself
        block = re.search(rf'variable "{var}" {{.*?\n}}\n', text, re.S)
        assert block and f'regex("{pattern}", var.{var})' in block.group(0), var
