"""The embedded emulators for real: background up/status/down through invoke, and nothing left behind
when the owner dies, the runner is killed, or a session gets SIGTERM / Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from llmpyramid.config import PROJECT_ROOT
from llmpyramid.emulators import KINDS, EmulatorManager, EmulatorSettings, emulators
from llmpyramid.ports import free_port, port_is_free
from tests.support.leftovers import with_env

pytestmark = [pytest.mark.localstack, pytest.mark.timeout(120)]

INVOKE = [sys.executable, "-m", "invoke", "-r", str(PROJECT_ROOT / "invoke_tasks"), "-c", "emulators"]


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
    run_dir = Path(env["EMULATORS_RUN_DIR"])
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run_dir.iterdir()}
    assert {"aws.json", "aws.log", "gcs.json", "gcs.log"} <= set(files)
    assert set(files.values()) == {0o600}, files

    again = invoke("emulators.up", env=env)
    assert "already running" in again.stdout

    down = invoke("emulators.down", env=env)
    assert down.returncode == 0 and "stopped: aws, gcs" in down.stdout
    assert gone(procs)
    ports = [int(status[k]["url"].rsplit(":", 1)[1]) for k in KINDS]
    assert all(port_is_free(p) for p in ports)
    assert invoke("emulators.status", "--json", env=env).stdout.count('"running": false') == 2


def test_invoke_status_and_down_with_a_stale_state_file_delete_and_signal_nothing(env, tmp_path):
    """A stale gcs.json naming a foreign directory (the old format's `data_dir`) and a foreign live pid."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        run_dir = Path(env["EMULATORS_RUN_DIR"])
        run_dir.mkdir()
        stale = {"pid": bystander.pid, "host": "127.0.0.1", "port": free_port(), "data_dir": str(precious)}
        (run_dir / "gcs.json").write_text(json.dumps({"kind": "gcs", "log_file": "x", "started_at": 0.0, **stale}))
        (run_dir / "aws.json").write_text(
            json.dumps({"pid": bystander.pid, "create_time": 0.0, "argv": ["sleep", "60"], "started_at": 0.0,
                        "extra": {"host": "127.0.0.1", "port": free_port(), "data_dir": str(precious)}})
        )  # fmt: skip
        status = invoke("emulators.status", "--json", env=env)
        assert status.returncode == 0 and status.stdout.count('"running": false') == 2, status.stdout
        down = invoke("emulators.down", env=env)
        assert down.returncode == 0 and "no emulators were running" in down.stdout
        assert (precious / "data.txt").read_text() == "keep me"
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


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


# --- an interrupted `pytest tests/integration` mid `terraform apply` ------------------------------------------

APPLY_TEST = (
    "tests/integration/test_terraform_integration.py::TestApplyAgainstEmulator::"
    "test_apply_creates_every_declared_resource"
)
IN_LIFECYCLE_WAIT = "aws_s3_bucket_lifecycle_configuration.checkpoints: Creating..."
TOKEN_VAR = "LLMPYRAMID_TEST_TOKEN"  # inherited by every descendant, re-parented or not


@dataclass
class InterruptedRun:
    """A child `pytest tests/integration` (own moto, own terraform) that gets `sig` in the middle of its apply."""

    sig: signal.Signals
    root: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    proc: subprocess.Popen[bytes] | None = None
    family: list[psutil.Process] = field(default_factory=list)  # the child and its descendants when signalled
    signalled_at: float = 0.0
    stop_seconds: float | None = None

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "pytest.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in {kind.env_var for kind in KINDS.values()}}
        env |= {"EMULATORS_RUN_DIR": str(self.run_dir), TOKEN_VAR: self.token}
        cmd = [sys.executable, "-m", "pytest", APPLY_TEST, "-q", "-p", "no:cacheprovider", f"--basetemp={self.root}/t"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def apply_output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.root.glob("t/tf-aws[0-9]*/terraform-apply.out"))

    def in_lifecycle_wait(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"child exited {self.proc.returncode} early:\n{self.log.read_text()[-2000:]}"
        return IN_LIFECYCLE_WAIT in self.apply_output()

    def interrupt(self) -> None:
        assert self.proc is not None
        parent = psutil.Process(self.proc.pid)
        self.family = [parent, *parent.children(recursive=True)]
        self.proc.send_signal(self.sig)
        self.signalled_at = time.monotonic()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.stop_seconds = time.monotonic() - self.signalled_at
        return code

    def leftovers(self, since: float) -> list[str]:
        """Processes started after `since` that carry this run's token, or were its family when signalled."""
        found = {p for p in self.family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE}
        found |= set(with_env(TOKEN_VAR, self.token, since))
        return sorted(f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in found if p.is_running())


@pytest.mark.timeout(600)
def test_interrupt_mid_apply_exits_130_destroys_and_leaves_nothing(tmp_path):
    """SIGINT and SIGTERM (concurrently, one child each) while the provider waits on the lifecycle rule."""
    since = time.time() - 1.0
    runs = [InterruptedRun(sig, tmp_path / sig.name) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        for run in runs:
            run.root.mkdir()
            run.start()
        for run in runs:
            assert wait_until(run.in_lifecycle_wait, timeout=240), run.log.read_text()[-2000:]
            run.interrupt()
        codes = {run.sig.name: run.wait(timeout=300) for run in runs}
    finally:
        for run in runs:
            if run.proc and run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
    for run in runs:
        print(f"{run.sig.name}: exit {codes[run.sig.name]} after {run.stop_seconds:.1f}s, family {len(run.family)}")
    assert codes == {"SIGINT": 130, "SIGTERM": 130}, [r.log.read_text()[-1500:] for r in runs]
    for run in runs:
        assert len(run.family) >= 4, run.family  # pytest, moto runner, terraform, terraform-provider-aws
        assert gone(run.family) and run.leftovers(since) == []
        assert not list(run.run_dir.glob("owned-*")), list(run.run_dir.iterdir())
        # The cleanup destroy was awaited: it ran to the end and state is empty.
        (work,) = run.root.glob("t/tf-aws[0-9]*")
        assert "Destroy complete!" in (work / "terraform-destroy.out").read_text()
        assert json.loads((work / "root" / "terraform.tfstate").read_text())["resources"] == []


def wait_until(ready, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(interval)
    return False
