"""Embedded cloud emulators: moto's server (AWS) and fake-gcs-server (GCS) on loopback.

Each emulator is a managed subprocess (`llmpyramid.emulators.runner`) on a free 127.0.0.1 port,
with its state in `<run_dir>/<kind>.json`, so `invoke emulators.up` in one shell and
`emulators.status` / `emulators.down` / the test fixtures in another all see the same emulators.

Endpoints are exposed through the standard variables the SDKs already honour:
`AWS_ENDPOINT_URL` (boto3, the aws CLI) and `STORAGE_EMULATOR_HOST` (google-cloud-storage).
When the user sets one of those (for example to a LocalStack container), that endpoint is used
instead of starting an emulator, and an unreachable endpoint is an InfrastructureError (exit 2)
naming it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psutil
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from llmpyramid.config import PROJECT_ROOT, Settings, _env, knob, parse_duration, parse_path, parse_url, redact_url
from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.ports import free_port, require_free
from llmpyramid.procs import ManagedService, ServiceState, private_dir, stop_process

RUNNER_MODULE = "llmpyramid.emulators.runner"
HOST = "127.0.0.1"
DEFAULT_RUN_DIR = PROJECT_ROOT / ".run" / "emulators"

# Credentials the emulators accept; only ever used against an emulator endpoint.
EMULATOR_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Kind:
    """One emulated cloud: the variable that names its endpoint and how to probe it."""

    name: str  # "aws" | "gcs"
    env_var: str  # where users (and we) put the endpoint
    label: str  # what we start when no endpoint is given
    probe_path: str  # GET this; see `healthy`
    needs_200: bool  # our own emulator must answer 200 (any HTTP answer proves a user endpoint is up)


KINDS: dict[str, Kind] = {
    "aws": Kind("aws", "AWS_ENDPOINT_URL", "moto server", "/moto-api/data.json", False),
    "gcs": Kind("gcs", "STORAGE_EMULATOR_HOST", "fake-gcs-server", "/storage/v1/b", True),
}


def kind_of(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown emulator {name!r}; choose from {', '.join(KINDS)}") from None


def normalize_url(raw: str, name: str = "emulator endpoint") -> str:
    """'localhost:4443' -> 'http://localhost:4443' (STORAGE_EMULATOR_HOST is often given bare);
    validated by the project's URL rule, so a malformed endpoint is exit 3 naming the variable."""
    raw = raw.strip().rstrip("/")
    return parse_url(name, raw if "://" in raw else f"http://{raw}")


def probe(url: str, path: str = "/", timeout: float = 2.0) -> int | None:
    """HTTP status of GET url+path, or None when nothing answers."""
    try:
        return httpx.get(f"{url}{path}", timeout=timeout).status_code
    except (httpx.HTTPError, httpx.InvalidURL):
        return None


def check_reachable(kind: Kind, url: str, origin: str, timeout: float = 3.0) -> None:
    """Raise InfrastructureError naming the endpoint (credentials redacted) if nothing answers HTTP there."""
    try:
        httpx.get(f"{url}{kind.probe_path}", timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = redact_url(" ".join(str(exc).split())[:120] or type(exc).__name__)
        raise InfrastructureError(
            f"{kind.name} endpoint {redact_url(url)} ({origin}) is not reachable: {reason}"
        ) from None


@dataclass(frozen=True)
class EmulatorSettings(Settings):
    """Where the background emulators keep their state and how long to wait for them."""

    section: ClassVar[str] = "emulator setting"
    run_dir: Path = knob(DEFAULT_RUN_DIR, "EMULATORS_RUN_DIR", parse_path)
    startup_timeout: float = knob(30.0, "EMULATORS_STARTUP_TIMEOUT", parse_duration, minimum=0.1, maximum=3600)
    stop_grace: float = knob(5.0, "EMULATORS_STOP_GRACE", parse_duration, minimum=0, maximum=600)


@dataclass
class EmulatorState:
    kind: str
    pid: int
    host: str
    port: int
    log_file: str
    started_at: float
    owner_pid: int | None = None  # set when the emulator dies with its owner (test sessions)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Endpoint:
    """Where an emulated cloud answers, and who is responsible for it."""

    kind: str
    url: str
    source: str  # "user" (env var) | "background" (`invoke emulators.up`) | "owned" (started here)
    pid: int | None = None

    @property
    def env_var(self) -> str:
        return KINDS[self.kind].env_var


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class EmulatorManager:
    """The emulators that live in one run directory: one llmpyramid.procs.ManagedService per kind.

    A state file only ever says which process to look at; whether it is ours is decided by pid +
    start time + exact argv, and the only paths ever removed are the ones ManagedService derives
    from the run directory (state, log, lock) - never one a state file names.
    """

    def __init__(self, settings: EmulatorSettings | None = None):
        self.settings = settings or EmulatorSettings.from_env()
        self.run_dir = self.settings.run_dir

    def service(self, kind: str) -> ManagedService:
        return ManagedService(kind_of(kind).name, self.run_dir, stop_grace=self.settings.stop_grace)

    # --- state ------------------------------------------------------------------------------

    def state_file(self, kind: str) -> Path:
        return self.service(kind).state_file

    def log_file(self, kind: str) -> Path:
        return self.service(kind).log_file

    def _emulator_state(self, kind: str, state: ServiceState | None) -> EmulatorState | None:
        if state is None:
            return None
        try:
            host, port = str(state.extra["host"]), int(state.extra["port"])
        except (KeyError, TypeError, ValueError):
            return None  # a state file this version did not write
        return EmulatorState(kind, state.pid, host, port, str(self.log_file(kind)), state.started_at, state.owner_pid)

    def read_state(self, kind: str) -> EmulatorState | None:
        return self._emulator_state(kind, self.service(kind).read_state())

    def alive(self, kind: str) -> EmulatorState | None:
        """The live emulator of this kind, or None; changes nothing (for read-only commands)."""
        state = self.service(kind).read_state()
        return self._emulator_state(kind, state) if state and state.identity.alive() else None

    def running(self, kind: str) -> EmulatorState | None:
        """The live emulator of this kind, or None. A stale state file (process gone) is removed."""
        return self._emulator_state(kind, self.service(kind).running())

    # --- lifecycle --------------------------------------------------------------------------

    def up(self, kind: str, *, owner_pid: int | None = None, notify: Callable[[str], None] = _stderr) -> EmulatorState:
        """Start the emulator (or return the one already running) and wait until it answers."""
        k = kind_of(kind)
        service = self.service(kind)
        with service.locked():
            existing = self.running(kind)
            if existing is None:
                proc, state = self._spawn(k, service, owner_pid)
        if existing is not None:
            notify(f"{k.label} already running at {existing.url} (pid {existing.pid})")
            return existing
        try:
            self._wait_healthy(k, proc, state)
        except BaseException:
            if proc.poll() is None:
                stop_process(proc.pid, self.settings.stop_grace)
            service.stop(port=state.port, host=state.host)
            raise
        notify(f"{k.label} up at {state.url} (pid {proc.pid}) in {time.time() - state.started_at:.1f}s")
        return state

    def _spawn(
        self, k: Kind, service: ManagedService, owner_pid: int | None
    ) -> tuple[subprocess.Popen[bytes], EmulatorState]:
        port = free_port(HOST)
        require_free(port, HOST)  # a race with another process
        argv = [sys.executable, "-m", RUNNER_MODULE, k.name, "--host", HOST, "--port", str(port)]
        if owner_pid:
            argv += ["--owner-pid", str(owner_pid)]
        proc, state = service.spawn(argv, owner_pid=owner_pid, extra={"host": HOST, "port": port})
        emulator = self._emulator_state(k.name, state)
        assert emulator is not None  # we just wrote host and port
        return proc, emulator

    def _wait_healthy(self, k: Kind, proc: subprocess.Popen[bytes], state: EmulatorState) -> None:
        def not_ready(code: int | None) -> bool:
            if proc.poll() is not None:
                raise InfrastructureError(
                    f"{k.label} exited with code {proc.returncode} before it was healthy: {self.last_log_line(k.name)}"
                )
            return code != 200 if k.needs_200 else code is None

        retrying = Retrying(
            stop=stop_after_delay(self.settings.startup_timeout),
            wait=wait_fixed(0.1),
            retry=retry_if_result(not_ready),
            retry_error_callback=lambda _: None,
        )
        code = retrying(probe, state.url, k.probe_path, 1.0)
        if code is None or (k.needs_200 and code != 200):
            raise InfrastructureError(
                f"{k.label} not healthy after {self.settings.startup_timeout:.0f}s at {state.url}: "
                f"{self.last_log_line(k.name)}"
            )

    def down(self, kind: str) -> bool:
        """Stop one emulator if it is still ours: SIGTERM, SIGKILL after the grace period, port freed.

        A foreign or reused pid is never signalled; its state file is simply dropped."""
        service = self.service(kind)
        with service.locked():
            state = self.read_state(kind)
            ours = self.alive(kind) is not None
            return service.stop(port=state.port if state and ours else None, host=HOST)

    def down_all(self) -> list[str]:
        return [kind for kind in KINDS if self.down(kind)]

    def forget_files(self) -> None:
        """Remove the files this manager derives in its run directory, then the directory if empty.

        For a run directory this process created (`emulators()`): never a path read from a state file."""
        for kind in KINDS:
            service = self.service(kind)
            for path in (service.state_file, service.log_file, service.lock_file):
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.run_dir.rmdir()

    # --- inspection -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What answers for each cloud: a user endpoint, a background emulator, or nothing. Read-only."""
        out: dict[str, Any] = {"run_dir": str(self.run_dir)}
        for name, k in KINDS.items():
            user = _env(k.env_var)
            state = self.alive(name)
            if user:
                url = normalize_url(user, k.env_var)
                entry: dict[str, Any] = {"source": "user", "url": redact_url(url), "env_var": k.env_var}
            elif state:
                url = state.url
                entry = {
                    "source": "background", "url": url, "env_var": k.env_var, "pid": state.pid,
                    "uptime_seconds": round(time.time() - state.started_at, 1), "log_file": state.log_file,
                }  # fmt: skip
            else:
                out[name] = {"running": False, "env_var": k.env_var}
                continue
            code = probe(url, k.probe_path)
            entry["running"] = code is not None
            entry["health"] = "unreachable" if code is None else ("ok" if code == 200 else f"http {code}")
            out[name] = entry
        return out

    def logs(self, kind: str, lines: int = 50) -> str:
        return self.service(kind).logs(lines)

    def last_log_line(self, kind: str) -> str:
        return self.service(kind).last_log_line()


def user_endpoint(kind: str, environ: Mapping[str, str] | None = None) -> Endpoint | None:
    """The endpoint the user configured for this cloud (checked reachable), or None."""
    k = kind_of(kind)
    raw = (environ if environ is not None else os.environ).get(k.env_var, "").strip()
    if not raw:
        return None
    url = normalize_url(raw, k.env_var)
    check_reachable(k, url, k.env_var)
    return Endpoint(kind, url, "user")


@contextlib.contextmanager
def emulators(
    kinds: tuple[str, ...] = tuple(KINDS),
    *,
    settings: EmulatorSettings | None = None,
    notify: Callable[[str], None] = _stderr,
) -> Iterator[dict[str, Endpoint]]:
    """Endpoints for the given clouds; whatever this starts is stopped on exit (also on Ctrl-C).

    Order per cloud: the user's endpoint (env var) -> the background emulator from
    `invoke emulators.up` -> a fresh emulator owned by this process (dies with it, too).
    """
    settings = settings or EmulatorSettings.from_env()
    background = EmulatorManager(settings)
    started: list[str] = []
    endpoints: dict[str, Endpoint] = {}
    owned: EmulatorManager | None = None
    try:
        for kind in kinds:
            endpoint = user_endpoint(kind)
            if endpoint is None and (state := background.alive(kind)):
                check_reachable(KINDS[kind], state.url, "started by `invoke emulators.up`")
                endpoint = Endpoint(kind, state.url, "background", state.pid)
            if endpoint is None:
                if owned is None:
                    # A fresh private directory per owner: its files are ours to remove at the end.
                    private_dir(settings.run_dir)
                    sweep_abandoned(settings)
                    run_dir = Path(tempfile.mkdtemp(prefix=f"owned-{os.getpid()}-", dir=settings.run_dir))
                    owned = EmulatorManager(replace(settings, run_dir=run_dir))
                started.append(kind)
                state = owned.up(kind, owner_pid=os.getpid(), notify=notify)
                endpoint = Endpoint(kind, state.url, "owned", state.pid)
            endpoints[kind] = endpoint
        yield endpoints
    finally:
        if owned is not None:
            for kind in reversed(started):
                owned.down(kind)
            owned.forget_files()


def sweep_abandoned(settings: EmulatorSettings) -> list[Path]:
    """Empty the `owned-<pid>-*` directories of owners that died without cleaning up (SIGKILL).

    Only when that pid is gone and nothing in the directory is alive, and only the files an
    EmulatorManager derives there (state, log, lock): anything else keeps the directory."""
    swept = []
    for path in settings.run_dir.glob("owned-*-*"):
        pid = path.name.split("-")[1]
        if path.is_symlink() or not path.is_dir() or not pid.isdigit() or psutil.pid_exists(int(pid)):
            continue
        manager = EmulatorManager(replace(settings, run_dir=path))
        if any(manager.alive(kind) for kind in KINDS):
            continue
        manager.forget_files()
        swept.append(path)
    return swept


def client_env(endpoints: Mapping[str, Endpoint], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables that point SDKs (and terraform) at the endpoints; dummy AWS credentials when none are set."""
    environ = os.environ if environ is None else environ
    env = {e.env_var: e.url for e in endpoints.values()}
    if "aws" in endpoints:
        for name, value in EMULATOR_CREDENTIALS.items():
            if not environ.get(name):
                env[name] = value
    return env
