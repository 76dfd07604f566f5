"""The reference topology's router as a managed service on loopback (ManagedRouter), and LiteLLM's proxy.

HAProxy, the other reference router, is in haproxy.py. LiteLLM's proxy is started from the pinned
`hybrid` dependency group with the reference configuration (router/litellm.yaml, or HYBRID_ROUTER_CONFIG).
Backend addresses and keys reach it as environment variables the configuration names
(`os.environ/...`), so the file users adapt is the file tested.
LiteLLM would fetch its model price map from GitHub at import: it is told to use its bundled copy,
and its usage telemetry is switched off, so nothing it does leaves loopback.

It is an ordinary managed service (llmpyramid.procs): one per run directory, its port checked free before
the spawn, the process answering on that port checked to be ours before anyone sends it the master key,
stopped by identity (pid + start time + argv) with its workers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil

from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.ports import free_port, require_free
from llmpyramid.procs import ManagedService, ServiceState, foreign_listener, in_family

HOST = "127.0.0.1"
SAMPLE_EVERY_S = 0.5
COMPROMISED_LITELLM = ("1.107.0",)  # a release that shipped malicious code; never run it
PROXY_MODULE = "litellm.proxy.proxy_cli"
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the bundled price map, not a fetch from GitHub
    "LITELLM_TELEMETRY_DISABLED": "true",
    "NO_DOCS": "True",  # no Swagger UI: nothing served that a test does not use
}
# llama.cpp closes a connection right after a streamed answer while advertising `Keep-Alive: timeout=5`, and
# LiteLLM pools upstream connections for 15 s: a request sent on a pooled connection as its close arrives
# fails with "Server disconnected" (a 500 to the client when no other backend is left, as in scenario c).
# 0 = an upstream connection is never reused (what HAProxy's `option http-server-close` does).
UPSTREAM_ENV = {"AIOHTTP_KEEPALIVE_TIMEOUT": "0"}


def litellm_version() -> str:
    """The installed LiteLLM, refusing a known-compromised release (exit 3)."""
    try:
        version = metadata.version("litellm")
    except metadata.PackageNotFoundError:
        raise ConfigError("the hybrid layer needs LiteLLM: install the `hybrid` dependency group") from None
    if version in COMPROMISED_LITELLM:
        raise ConfigError(f"litellm {version} is a known-compromised release; install the pinned `hybrid` group")
    return version


def load_router_config(path: Path) -> dict[str, Any]:
    """Parse and sanity-check a LiteLLM proxy configuration: one line on anything malformed (exit 3)."""
    import yaml  # a LiteLLM dependency

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"router config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"router config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_list"), list) or not data["model_list"]:
        raise ConfigError(f"router config {path} has no model_list")
    for entry in data["model_list"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("litellm_params"), dict):
            raise ConfigError(f"router config {path}: every model_list entry needs litellm_params")
    return data


@dataclass
class RouterProcess:
    url: str
    pid: int
    api_key: str
    version: str


class ManagedRouter:
    """A router as a managed service on loopback: spawned, checked to be the process answering on its port
    before anyone sends it the key, sampled (CPU time, peak RSS, connections off loopback), stopped by
    identity. Subclasses say how to start one (`argv`, `environ`) and how to ask if it is ready."""

    kind = ""  # litellm | haproxy
    ready_path = "/"

    def __init__(self, config: Path, run_dir: Path, *, startup_timeout: float, stop_grace: float = 5.0) -> None:
        self.config = config
        self.service = ManagedService("router", run_dir, stop_grace=stop_grace)
        self.startup_timeout = startup_timeout
        self.process: RouterProcess | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._state: ServiceState | None = None
        self._started = 0.0
        self.peak_rss = 0
        self.foreign: set[str] = set()  # remote addresses off loopback seen on the router's sockets
        self._sampled = 0.0

    # -- what a router kind provides
    def version(self) -> str:
        raise NotImplementedError

    def check_config(self) -> None:
        raise NotImplementedError

    def argv(self, port: int) -> list[str]:
        raise NotImplementedError

    def stated_fail_back_s(self) -> float | None:
        """How long the configuration says a recovered backend waits before it gets traffic again."""
        return None

    def environ(self, port: int, api_key: str, backend_env: Mapping[str, str]) -> dict[str, str]:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return f"{self.kind} {self.process.version if self.process else ''}".strip()

    # -- the managed service
    def start(self, backend_env: Mapping[str, str]) -> RouterProcess:
        """Spawn the router (LiteLLM's import takes seconds: start backends meanwhile, then `wait_ready`)."""
        version = self.version()
        self.check_config()
        api_key = "sk-" + secrets.token_hex(24)  # the router's own client key, never a backend's
        self._started = time.monotonic()
        with self.service.locked():
            if (running := self.service.running()) is not None:
                raise InfrastructureError(
                    f"a router is already running from {self.service.run_dir} (pid {running.pid})"
                )
            port = free_port(HOST)
            require_free(port, HOST)  # a race with another process: whatever holds it would get our key
            env = self.environ(port, api_key, backend_env)
            self._proc, self._state = self.service.spawn(self.argv(port), env=env, owner_pid=os.getpid(),
                                                         extra={"port": port})  # fmt: skip
        self.process = RouterProcess(f"http://{HOST}:{port}", self._proc.pid, api_key, version)
        return self.process

    def wait_ready(self, *, notify: Callable[[str], None]) -> RouterProcess:
        assert self.process is not None and self._proc is not None and self._state is not None, "start() first"
        self._wait_ready(self._proc, self.process.url)
        # Ready from whom? The router binds after `start` checked the port (LiteLLM's import is slow): a process
        # that took the port meanwhile must not get a request carrying the key.
        port, identity = int(self._state.extra["port"]), self._state.identity
        if (other := foreign_listener(port, lambda p: in_family(p, identity))) is not None:
            raise InfrastructureError(f"router port {port} on {HOST} is answered by {other}, not the router "
                                      f"started here (pid {self.process.pid}); stop it and retry")  # fmt: skip
        took = time.monotonic() - self._started
        notify(f"router: {self.label} at {self.process.url} (pid {self.process.pid}) ready in {took:.1f}s")
        return self.process

    def _wait_ready(self, proc: subprocess.Popen[bytes], url: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise InfrastructureError(
                    f"router exited with code {proc.returncode} before it was ready: {self.service.last_log_line()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}{self.ready_path}", timeout=2).status_code == 200:
                    return
            self.sample()
            time.sleep(0.25)
        raise InfrastructureError(
            f"router not ready after {self.startup_timeout:.0f}s at {url}: {self.service.last_log_line()}"
        )

    def sample(self) -> None:
        """Record the router's RSS (process and children) for its peak, and any connection it holds to
        an address off loopback (there must be none: the router is told not to phone home)."""
        if self.process is None or time.monotonic() - self._sampled < SAMPLE_EVERY_S:
            return
        self._sampled = time.monotonic()
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.process.pid)
            family = (root, *root.children(recursive=True))
            self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in family))
            for p in family:
                for conn in p.net_connections(kind="inet"):
                    if conn.raddr and not ipaddress.ip_address(conn.raddr.ip).is_loopback:
                        self.foreign.add(f"{conn.raddr.ip}:{conn.raddr.port}")

    def cpu_seconds(self) -> float | None:
        if self.process is None:
            return None
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.process.pid)
            return float(sum(sum(p.cpu_times()[:2]) for p in (root, *root.children(recursive=True))))
        return None

    def down(self) -> bool:
        """Stop the router and its workers if the state file still names our process (pid + start time + argv):
        a reused pid is never signalled, its stale state file is simply dropped."""
        with self.service.locked():
            state = self.service.read_state()
            ours = state is not None and state.identity.alive()
            port = state.extra.get("port") if state is not None and ours else None
            return self.service.stop(port=port, host=HOST)


class LiteLLMRouter(ManagedRouter):
    """LiteLLM's proxy from the pinned `hybrid` group, configured by router/litellm.yaml."""

    kind = "litellm"
    ready_path = "/health/readiness"

    def version(self) -> str:
        return litellm_version()

    def check_config(self) -> None:
        load_router_config(self.config)

    def stated_fail_back_s(self) -> float | None:
        cooldown = (load_router_config(self.config).get("router_settings") or {}).get("cooldown_time")
        return float(cooldown) if isinstance(cooldown, int | float) else None

    def argv(self, port: int) -> list[str]:
        return [sys.executable, "-m", PROXY_MODULE, "--config", str(self.config), "--host", HOST,
                "--port", str(port), "--num_workers", "1"]  # fmt: skip

    def environ(self, port: int, api_key: str, backend_env: Mapping[str, str]) -> dict[str, str]:
        # LiteLLM refuses to start without a master key: the router's client key
        return {**os.environ, **OFFLINE_ENV, **UPSTREAM_ENV, **backend_env, "LITELLM_MASTER_KEY": api_key}
