"""Unit tests for the terraform CLI wrapper: CLI config generation, mirror discovery, parsing, and the
process rules (own group, SIGINT forwarded on Ctrl-C or timeout, bounded grace) with a fake terraform."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from llmpyramid.errors import ConfigError, ExitCode, InfrastructureError
from llmpyramid.iac import terraform as tfmod
from llmpyramid.iac.terraform import Terraform, mirrored_providers, parse_test_runs, required_providers


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    binary = tmp_path / "terraform"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    monkeypatch.setenv("TERRAFORM_BIN", str(binary))
    return binary


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    plat = root / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0" / "linux_amd64"
    plat.mkdir(parents=True)
    (plat / "terraform-provider-aws_v5.100.0_x5").write_text("")
    return root


def test_missing_terraform_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERRAFORM_BIN", "/nonexistent/terraform")
    with pytest.raises(ConfigError) as err:
        tfmod.terraform_bin()
    assert err.value.exit_code == ExitCode.CONFIGURATION
    assert "\n" not in str(err.value) and "TERRAFORM_BIN" in str(err.value)


def test_mirror_env_override_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_PLUGIN_MIRROR", "/nonexistent/mirror")
    with pytest.raises(ConfigError, match="TF_PLUGIN_MIRROR"):
        tfmod.find_mirror()


def test_mirror_env_override_wins(monkeypatch: pytest.MonkeyPatch, mirror: Path) -> None:
    monkeypatch.setenv("TF_PLUGIN_MIRROR", str(mirror))
    assert tfmod.find_mirror() == mirror


def test_mirrored_providers_lists_sources(mirror: Path) -> None:
    assert mirrored_providers(mirror) == {"registry.terraform.io/hashicorp/aws"}
    assert mirrored_providers(None) == set()


def test_cli_config_points_at_the_mirror_and_excludes_it_from_direct(
    fake_bin: Path, mirror: Path, tmp_path: Path
) -> None:
    tf = Terraform(run_dir=tmp_path / "run", mirror=mirror)
    text = tf.cli_config.read_text()
    assert "filesystem_mirror" in text and str(mirror) in text
    assert 'include = ["registry.terraform.io/hashicorp/aws"]' in text
    assert 'exclude = ["registry.terraform.io/hashicorp/aws"]' in text
    env = tf.env(tmp_path / "data")
    assert env["TF_CLI_CONFIG_FILE"] == str(tf.cli_config)
    assert env["TF_DATA_DIR"] == str(tmp_path / "data")


def test_cli_config_without_mirror_uses_registry(fake_bin: Path, tmp_path: Path) -> None:
    tf = Terraform(run_dir=tmp_path / "run", mirror=None)
    text = tf.cli_config.read_text()
    assert "filesystem_mirror" not in text and "direct {}" in text


def test_required_providers_and_offline_skip(fake_bin: Path, mirror: Path, tmp_path: Path) -> None:
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "versions.tf").write_text(
        'terraform {\n  required_providers {\n    hcloud = { source = "hetznercloud/hcloud" }\n'
        '    aws = { source = "hashicorp/aws" }\n  }\n}\n'
    )
    assert required_providers(mod) == {
        "hcloud": "registry.terraform.io/hetznercloud/hcloud",
        "aws": "registry.terraform.io/hashicorp/aws",
    }
    tf = Terraform(run_dir=tmp_path / "run", mirror=mirror)
    tf.__dict__["online"] = False  # cached_property: pretend the registry is unreachable
    assert tf.missing_providers(mod) == ["hcloud"]
    outcome = tf.test(mod)
    assert outcome.status == "skipped"
    assert outcome.reason == "skipped: provider hcloud not available offline"
    tf.__dict__["online"] = True
    assert tf.missing_providers(mod) == []


def test_parse_test_runs() -> None:
    out = (
        'tests/a.tftest.hcl... in progress\n  run "one"... pass\n  run "two"... fail\n'
        "tests/a.tftest.hcl... tearing down\ntests/a.tftest.hcl... fail\n"
        'tests/b.tftest.hcl... in progress\n  run "three"... skip\n'
    )
    assert parse_test_runs(out) == [
        {"file": "tests/a.tftest.hcl", "run": "one", "status": "pass"},
        {"file": "tests/a.tftest.hcl", "run": "two", "status": "fail"},
        {"file": "tests/b.tftest.hcl", "run": "three", "status": "skip"},
    ]


# --- processes: own group, SIGINT forwarded, bounded grace, nothing left running ---------------------

FAKE_TERRAFORM = """\
import os, signal, subprocess, sys, time
from pathlib import Path

rec = Path(os.environ["FAKE_TF_DIR"])
print("to stdout"); print("Error: to stderr", file=sys.stderr); sys.stdout.flush(); sys.stderr.flush()
if sys.argv[1] == "version":
    sys.exit(0)
# a provider plugin: joins terraform's group and ignores SIGINT, so only the group kill ends it
plugin = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                           "time.sleep(60)"])
(rec / "plugin").write_text(str(plugin.pid))
if sys.argv[1] == "apply":
    def graceful_stop(_signum, _frame):
        (rec / "sigint").write_text("state saved")
        sys.exit(1)
    signal.signal(signal.SIGINT, graceful_stop)
elif sys.argv[1] == "stubborn":
    signal.signal(signal.SIGINT, lambda *_: (rec / "sigint").write_text("ignored"))
(rec / "started").write_text(str(os.getpid()))
time.sleep(60)
"""


@pytest.fixture
def fake_tf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Terraform, Path]:
    rec = tmp_path / "rec"
    rec.mkdir()
    binary = tmp_path / "terraform"
    binary.write_text(f"#!{sys.executable}\n{FAKE_TERRAFORM}")
    binary.chmod(0o755)
    monkeypatch.setenv("TERRAFORM_BIN", str(binary))
    monkeypatch.setenv("FAKE_TF_DIR", str(rec))
    return Terraform(run_dir=tmp_path / "run", mirror=None, interrupt_grace=5.0), rec


@pytest.fixture
def plain_ctrl_c() -> Iterator[None]:
    """Python's own SIGINT handler for this test: the session's one-interrupt rule (tests/conftest.py) would
    take our Ctrl-C as the session's, swallow later ones and arm its exit timer."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _pid(path: Path) -> int:
    found = Retrying(stop=stop_after_delay(30), wait=wait_fixed(0.05), retry=retry_if_result(lambda t: not t))(
        lambda: path.read_text() if path.exists() else ""
    )
    return int(found)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _interrupt_when_started(rec: Path) -> threading.Thread:  # use with plain_ctrl_c
    def press() -> None:
        _pid(rec / "started")
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def test_run_keeps_stdout_and_stderr_apart(fake_tf: tuple[Terraform, Path], tmp_path: Path) -> None:
    tf, _ = fake_tf
    result = tf.run("version", cwd=tmp_path)
    assert result.ok and result.stdout == "to stdout\n" and result.stderr == "Error: to stderr\n"
    assert result.first_error() == "Error: to stderr"


@pytest.mark.usefixtures("plain_ctrl_c")
def test_ctrl_c_reaches_terraform_as_sigint_and_its_group_is_gone(fake_tf: tuple[Terraform, Path], tmp_path) -> None:
    tf, rec = fake_tf
    presser = _interrupt_when_started(rec)
    with pytest.raises(KeyboardInterrupt):
        tf.run("apply", cwd=tmp_path)
    presser.join(timeout=30)
    assert (rec / "sigint").read_text() == "state saved"  # terraform's graceful stop ran
    terraform, plugin = _pid(rec / "started"), _pid(rec / "plugin")
    assert _gone(terraform) and _gone(plugin)  # the plugin, deaf to SIGINT, went with the group


@pytest.mark.usefixtures("plain_ctrl_c")
def test_a_terraform_deaf_to_sigint_is_killed_after_the_grace(fake_tf: tuple[Terraform, Path], tmp_path) -> None:
    tf, rec = fake_tf
    tf.interrupt_grace = 0.5
    presser = _interrupt_when_started(rec)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        tf.run("stubborn", cwd=tmp_path)
    presser.join(timeout=30)
    assert time.monotonic() - started < 20  # bounded: not the fake's 60 s
    assert (rec / "sigint").read_text() == "ignored"
    assert _gone(_pid(rec / "started")) and _gone(_pid(rec / "plugin"))


def test_a_timeout_stops_terraform_and_is_one_line(fake_tf: tuple[Terraform, Path], tmp_path: Path) -> None:
    tf, rec = fake_tf
    tf.timeout = 1.0
    with pytest.raises(InfrastructureError) as err:
        tf.run("apply", cwd=tmp_path)
    assert err.value.exit_code == ExitCode.INFRASTRUCTURE
    assert str(err.value) == f"terraform apply timed out after 1s in {tmp_path}"
    assert (rec / "sigint").read_text() == "state saved"  # stopped gracefully, too
    assert _gone(_pid(rec / "started")) and _gone(_pid(rec / "plugin"))
