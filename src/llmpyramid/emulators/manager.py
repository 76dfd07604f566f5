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
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from llmpyramid.config import PROJECT_ROOT, _env, parse_float
from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.ports import free_port, port_is_free, port_owner
from llmpyramid.procs import is_ours, stop_process, wait_port_free

RUNNER_MODULE = "llmpyramid.emulators.runner"
HOST = "127.0.0.1"

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


def normalize_url(raw: str) -> str:
    """'localhost:4443' -> 'http://localhost:4443' (STORAGE_EMULATOR_HOST is often given bare)."""
    raw = raw.strip().rstrip("/")
    return raw if "://" in raw else f"http://{raw}"


def probe(url: str, path: str = "/", timeout: float = 2.0) -> int | None:
    """HTTP status of GET url+path, or None when nothing answers."""
    try:
        return httpx.get(f"{url}{path}", timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def check_reachable(kind: Kind, url: str, origin: str, timeout: float = 3.0) -> None:
    """Raise InfrastructureError naming the endpoint if nothing answers HTTP there."""
    try:
        httpx.get(f"{url}{kind.probe_path}", timeout=timeout)
    except httpx.HTTPError as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise InfrastructureError(f"{kind.name} endpoint {url} ({origin}) is not reachable: {reason}") from None


@dataclass(frozen=True)
class EmulatorSettings:
    run_dir: Path = field(default=PROJECT_ROOT / ".run" / "emulators")  # EMULATORS_RUN_DIR
    startup_timeout: float = 30.0  # EMULATORS_STARTUP_TIMEOUT: seconds to wait until healthy
    stop_grace: float = 5.0  # EMULATORS_STOP_GRACE: seconds between SIGTERM and SIGKILL

    @classmethod
    def from_env(cls, **overrides: Any) -> EmulatorSettings:
        d = cls.__dataclass_fields__
        values: dict[str, Any] = {
            "run_dir": Path(_env("EMULATORS_RUN_DIR", str(d["run_dir"].default)) or "."),
            "startup_timeout": parse_float(
                "EMULATORS_STARTUP_TIMEOUT", _env("EMULATORS_STARTUP_TIMEOUT", str(d["startup_timeout"].default))
            ),
            "stop_grace": parse_float(
                "EMULATORS_STOP_GRACE", _env("EMULATORS_STOP_GRACE", str(d["stop_grace"].default))
            ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class EmulatorState:
    kind: str
    pid: int
    host: str
    port: int
    log_file: str
    started_at: float
    data_dir: str | None = None
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


def _is_our_runner(pid: int, kind: str) -> bool:
    return is_ours(pid, RUNNER_MODULE, kind)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class EmulatorManager:
    """Lifecycle of the embedded emulators that live in one run directory."""

    def __init__(self, settings: EmulatorSettings | None = None):
        self.settings = settings or EmulatorSettings.from_env()
        self.run_dir = self.settings.run_dir

    # --- state ------------------------------------------------------------------------------

    def state_file(self, kind: str) -> Path:
        return self.run_dir / f"{kind}.json"

    def log_file(self, kind: str) -> Path:
        return self.run_dir / f"{kind}.log"

    def read_state(self, kind: str) -> EmulatorState | None:
        try:
            return EmulatorState(**json.loads(self.state_file(kind).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write_state(self, state: EmulatorState) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_file(state.kind)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, path)

    def running(self, kind: str) -> EmulatorState | None:
        """The live emulator of this kind, or None. A stale state file (process gone) is cleaned up."""
        state = self.read_state(kind)
        if state is None:
            return None
        if _is_our_runner(state.pid, kind):
            return state
        self._forget(state)
        return None

    def _forget(self, state: EmulatorState) -> None:
        self.state_file(state.kind).unlink(missing_ok=True)
        if state.data_dir:
            shutil.rmtree(state.data_dir, ignore_errors=True)

    # --- lifecycle --------------------------------------------------------------------------

    def up(self, kind: str, *, owner_pid: int | None = None, notify: Callable[[str], None] = _stderr) -> EmulatorState:
        """Start the emulator (or return the one already running) and wait until it answers."""
        k = kind_of(kind)
        existing = self.running(kind)
        if existing:
            notify(f"{k.label} already running at {existing.url} (pid {existing.pid})")
            return existing
        port = free_port(HOST)
        if not port_is_free(port, HOST):  # pragma: no cover - a race with another process
            owner = port_owner(port)
            raise InfrastructureError(f"port {port} on {HOST} is busy" + (f" (held by {owner})" if owner else ""))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", RUNNER_MODULE, kind, "--host", HOST, "--port", str(port)]
        data_dir = None
        if kind == "gcs":
            data_dir = str(self.run_dir / "gcs-data")
            shutil.rmtree(data_dir, ignore_errors=True)
            cmd += ["--data-dir", data_dir]
        if owner_pid:
            cmd += ["--owner-pid", str(owner_pid)]
        log = self.log_file(kind)
        with log.open("ab") as fh:
            # New session: a Ctrl-C in the user's terminal reaches us, and we decide what stops.
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        state = EmulatorState(
            kind=kind, pid=proc.pid, host=HOST, port=port, log_file=str(log), started_at=time.time(),
            data_dir=data_dir, owner_pid=owner_pid,
        )  # fmt: skip
        self._write_state(state)
        try:
            self._wait_healthy(k, proc, state)
        except BaseException:
            self.down(kind)
            raise
        notify(f"{k.label} up at {state.url} (pid {proc.pid}) in {time.time() - state.started_at:.1f}s")
        return state

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
        """Stop one emulator: SIGTERM, SIGKILL after the grace period, wait for its port to free up."""
        state = self.read_state(kind)
        if state is None:
            return False
        stopped = _is_our_runner(state.pid, kind)
        if stopped:
            stop_process(state.pid, self.settings.stop_grace)
        wait_port_free(state.port, state.host)
        self._forget(state)
        return stopped

    def down_all(self) -> list[str]:
        return [kind for kind in KINDS if self.down(kind)]

    # --- inspection -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What answers for each cloud: a user endpoint, a background emulator, or nothing."""
        out: dict[str, Any] = {"run_dir": str(self.run_dir)}
        for name, k in KINDS.items():
            user = _env(k.env_var)
            state = self.running(name)
            if user:
                url = normalize_url(user)
                entry: dict[str, Any] = {"source": "user", "url": url, "env_var": k.env_var}
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
        try:
            text = self.log_file(kind).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def last_log_line(self, kind: str) -> str:
        found = [ln for ln in self.logs(kind, 20).splitlines() if ln.strip()]
        return found[-1].strip() if found else f"(no output in {self.log_file(kind)})"


def user_endpoint(kind: str, environ: Mapping[str, str] | None = None) -> Endpoint | None:
    """The endpoint the user configured for this cloud (checked reachable), or None."""
    k = kind_of(kind)
    raw = (environ if environ is not None else os.environ).get(k.env_var, "").strip()
    if not raw:
        return None
    url = normalize_url(raw)
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
    owned = EmulatorManager(
        EmulatorSettings(settings.run_dir / f"owned-{os.getpid()}", settings.startup_timeout, settings.stop_grace)
    )
    started: list[str] = []
    endpoints: dict[str, Endpoint] = {}
    try:
        for kind in kinds:
            endpoint = user_endpoint(kind)
            if endpoint is None and (state := background.running(kind)):
                check_reachable(KINDS[kind], state.url, "started by `invoke emulators.up`")
                endpoint = Endpoint(kind, state.url, "background", state.pid)
            if endpoint is None:
                started.append(kind)
                state = owned.up(kind, owner_pid=os.getpid(), notify=notify)
                endpoint = Endpoint(kind, state.url, "owned", state.pid)
            endpoints[kind] = endpoint
        yield endpoints
    finally:
        for kind in reversed(started):
            owned.down(kind)
        shutil.rmtree(owned.run_dir, ignore_errors=True)


def client_env(endpoints: Mapping[str, Endpoint], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables that point SDKs (and terraform) at the endpoints; dummy AWS credentials when none are set."""
    environ = os.environ if environ is None else environ
    env = {e.env_var: e.url for e in endpoints.values()}
    if "aws" in endpoints:
        for name, value in EMULATOR_CREDENTIALS.items():
            if not environ.get(name):
                env[name] = value
    return env
