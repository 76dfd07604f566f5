"""The embedded emulators for real: background up/status/down through invoke, and nothing left behind
when the owner dies, the runner is killed, or a session gets SIGTERM / Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from llmpyramid.config import PROJECT_ROOT
from llmpyramid.emulators import KINDS, EmulatorManager, EmulatorSettings, emulators
from llmpyramid.ports import free_port, port_is_free

pytestmark = [pytest.mark.localstack, pytest.mark.timeout(120)]

INVOKE = [sys.executable, "-m", "invoke", "-r", str(PROJECT_ROOT / "src" / "llmpyramid"), "-c", "tasks_emulators"]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A private run dir and no user endpoints, for child processes."""
    clean = {k: v for k, v in os.environ.items() if k not in {k.env_var for k in KINDS.values()}}
    return {**clean, "EMULATORS_RUN_DIR": str(tmp_path / "run")}


@pytest.fixture
def manager(tmp_path) -> EmulatorManager:
    m = EmulatorManager(EmulatorSettings(run_dir=tmp_path / "run"))
    yield m
    m.down_all()


def family(pid: int) -> list[psutil.Process]:
    """The process and its descendants (the runner and, for gcs, the fake-gcs-server binary)."""
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def gone(procs: list[psutil.Process], timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs):
            return True
        time.sleep(0.1)
    return False


def invoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*INVOKE, *args], env=env, capture_output=True, text=True, timeout=90, check=False)


def test_invoke_up_leaves_them_running_until_down(env):
    up = invoke("emulators.up", env=env)
    assert up.returncode == 0, up.stderr
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in up.stdout
    assert "export STORAGE_EMULATOR_HOST=http://127.0.0.1:" in up.stdout

    status = json.loads(invoke("emulators.status", "--json", env=env).stdout)
    assert status["aws"]["source"] == status["gcs"]["source"] == "background"
    assert status["aws"]["health"] == status["gcs"]["health"] == "ok"
    procs = [p for kind in KINDS for p in family(status[kind]["pid"])]
    assert len(procs) == 3  # two runners + the fake-gcs-server binary

    again = invoke("emulators.up", env=env)
    assert "already running" in again.stdout

    down = invoke("emulators.down", env=env)
    assert down.returncode == 0 and "stopped: aws, gcs" in down.stdout
    assert gone(procs)
    ports = [int(status[k]["url"].rsplit(":", 1)[1]) for k in KINDS]
    assert all(port_is_free(p) for p in ports)
    assert invoke("emulators.status", "--json", env=env).stdout.count('"running": false') == 2


def test_invoke_with_unreachable_user_endpoint_exits_2_naming_it(env):
    dead = f"http://127.0.0.1:{free_port()}"
    result = invoke("emulators.up", "--only", "aws", env={**env, "AWS_ENDPOINT_URL": dead})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: aws endpoint {dead} (AWS_ENDPOINT_URL) is not reachable: [Errno 111] Connection refused"
    ]


def test_model_fetch_with_unreachable_endpoint_exits_2(env):
    dead = f"http://127.0.0.1:{free_port()}"
    result = invoke("model.fetch", "gs://bucket/x.gguf", env={**env, "STORAGE_EMULATOR_HOST": dead})
    assert result.returncode == 2
    assert dead in result.stderr and "Traceback" not in result.stderr


def test_emulators_die_with_their_owner(manager):
    owner = subprocess.Popen(["sleep", "60"])
    try:
        procs = [p for kind in KINDS for p in family(manager.up(kind, owner_pid=owner.pid, notify=lambda _m: None).pid)]
    finally:
        owner.kill()
        owner.wait()
    assert gone(procs), [p.cmdline() for p in procs if p.is_running()]


def test_killing_the_gcs_runner_takes_the_binary_with_it(manager):
    state = manager.up("gcs", notify=lambda _m: None)
    procs = family(state.pid)
    assert len(procs) == 2
    procs[0].kill()
    assert gone(procs)
    assert manager.running("gcs") is None  # stale state cleaned up


def test_fixture_reuses_background_emulators(manager, monkeypatch):
    for kind in KINDS.values():
        monkeypatch.delenv(kind.env_var, raising=False)
    state = manager.up("aws", notify=lambda _m: None)
    with emulators(("aws",), settings=manager.settings) as eps:
        assert eps["aws"].source == "background" and eps["aws"].url == state.url
    assert manager.running("aws") is not None  # not ours to stop


SESSION = """
import json, sys, time
from llmpyramid.cli import guarded
from llmpyramid.emulators import emulators
with guarded():
    with emulators(notify=lambda _m: None) as eps:
        print(json.dumps({k: e.pid for k, e in eps.items()}), flush=True)
        time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signalled_session_stops_its_emulators(env, sig):
    proc = subprocess.Popen([sys.executable, "-c", SESSION], env=env, stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        procs = [p for pid in pids.values() for p in family(pid)]
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert gone(procs)
    assert not list(Path(env["EMULATORS_RUN_DIR"]).glob("owned-*"))
