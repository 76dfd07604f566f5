"""Base + burst behind a router: the reference topology on loopback, or the user's deployment.

Reference: two embedded llama.cpp stacks (base with fewer slots, so it saturates first; burst with
more) and a reference router in front (LiteLLM's proxy or HAProxy), each on a free loopback port, each
a managed service that stops on success, failure, Ctrl-C, SIGTERM and when this process dies. The
router reaches base through a fault proxy (faultproxy.py: transparent until a scenario switches it).
Faults are real: SIGKILL of a backend's server process, restoring starts a fresh server on the same
port; or the fault proxy failing base's answers before the first token, mid-stream, or late.

External: the router and backends the user names; faults run the user's stop/start commands.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from llmpyramid.config import StackSettings, redact_url
from llmpyramid.errors import InfrastructureError
from llmpyramid.hybrid.config import HybridSettings
from llmpyramid.hybrid.faultproxy import FaultProxy
from llmpyramid.hybrid.router import LiteLLMRouter, ManagedRouter
from llmpyramid.ports import free_port
from llmpyramid.procs import open_private_log
from llmpyramid.stack.embedded import EmbeddedStack

COMMAND_TIMEOUT_S = 300.0
ROUTER_LOG_FILE = "hybrid_router.log"
CTX_PER_SLOT = 512  # short prompts and answers: 512 tokens per slot is plenty, and keeps RSS small


def _health(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code
    except httpx.HTTPError:
        return None


@dataclass
class Backend:
    """One backend: how to reach it, fault it and bring it back."""

    name: str  # base | burst
    url: str | None
    kill: Callable[[], None] | None = None
    restore: Callable[[], None] | None = None
    pid: Callable[[], int | None] = lambda: None
    slots: int | None = None
    fault: FaultProxy | None = None  # between the router and this backend (reference topology, base)

    def healthy(self) -> bool | None:
        """/health is 200 (None: no URL to ask)."""
        return None if self.url is None else _health(self.url) == 200

    def total_slots(self) -> int | None:
        """llama.cpp's own slot count from /props (None when the backend does not say)."""
        if self.url is None:
            return None
        with contextlib.suppress(httpx.HTTPError, ValueError, TypeError):
            value = httpx.get(f"{self.url}/props", timeout=5).json().get("total_slots")
            return int(value) if value else None
        return None


@dataclass
class Topology:
    router_url: str
    api_key: str | None
    model: str
    backends: dict[str, Backend]
    router: ManagedRouter | None = None  # set for the reference topology
    notes: list[str] = field(default_factory=list)

    @property
    def base(self) -> Backend:
        return self.backends["base"]

    @property
    def burst(self) -> Backend:
        return self.backends["burst"]


def _run_command(name: str, command: str) -> None:
    """A user's stop/start command, without a shell; a failure is an infrastructure error naming it."""
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfrastructureError(f"{name} {command!r} failed: {exc}") from None
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).split())[-200:]
        raise InfrastructureError(f"{name} {command!r} exited with {done.returncode}: {tail}")


def check_reachable(what: str, url: str, path: str) -> None:
    """Any HTTP answer counts as reachable; a refused/timed-out connection is exit 2 naming `what`."""
    try:
        httpx.get(f"{url}{path}", timeout=10)
    except httpx.HTTPError as exc:
        reason = redact_url(" ".join(str(exc).split()) or type(exc).__name__)
        raise InfrastructureError(f"{what} {redact_url(url)} is not reachable: {reason}") from None


@contextlib.contextmanager
def external_topology(settings: HybridSettings) -> Iterator[Topology]:
    assert settings.router_url is not None
    check_reachable("router", settings.router_url, "/")
    for name, url in (("base", settings.base_url), ("burst", settings.burst_url)):
        if url is not None:
            check_reachable(f"{name} backend", url, "/health")
    base = Backend("base", settings.base_url)
    if settings.base_stop_cmd and settings.base_start_cmd:
        stop_cmd, start_cmd = settings.base_stop_cmd, settings.base_start_cmd
        base.kill = lambda: _run_command("HYBRID_BASE_STOP_CMD", stop_cmd)
        base.restore = lambda: _run_command("HYBRID_BASE_START_CMD", start_cmd)
    burst = Backend("burst", settings.burst_url)
    if settings.burst_stop_cmd:
        burst_stop = settings.burst_stop_cmd
        burst.kill = lambda: _run_command("HYBRID_BURST_STOP_CMD", burst_stop)
    base.slots = settings.base_capacity or base.total_slots()
    yield Topology(settings.router_url, settings.router_api_key, settings.model, {"base": base, "burst": burst})


class _LocalBackend:
    """An embedded stack that can be SIGKILLed and restarted on the same port."""

    def __init__(self, name: str, slots: int, run_dir: Path, api_key: str, notify: Callable[[str], None]) -> None:
        self.name = name
        self.notify = notify
        self.settings = StackSettings.from_env(
            port=free_port(), parallel=slots, ctx_size=max(CTX_PER_SLOT * slots, 256), run_dir=run_dir, api_key=api_key
        )
        self.stack = EmbeddedStack(self.settings)
        self.url = f"http://{self.settings.host}:{self.settings.port}"

    def up(self) -> None:
        self.stack.up(owner_pid=os.getpid(), notify=lambda m: self.notify(f"{self.name}: {m}"))

    def pid(self) -> int | None:
        state = self.stack.running()
        return state.pid if state else None

    def kill(self) -> None:
        pid = self.pid()
        if pid is None:
            raise InfrastructureError(f"{self.name} backend is not running; nothing to kill")
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)  # reap it if it is our child, so it is gone, not a zombie

    def backend(self, fault: FaultProxy | None = None) -> Backend:
        return Backend(self.name, self.url, kill=self.kill, restore=self.up, pid=self.pid, slots=self.settings.parallel,
                       fault=fault)  # fmt: skip


def make_router(settings: HybridSettings, run_dir: Path) -> ManagedRouter:
    """The reference router HYBRID_ROUTER names (HAProxy's module loads only when it is chosen)."""
    config, timeout = settings.router_config_path, settings.router_startup_timeout
    if settings.router_kind == "haproxy":
        from llmpyramid.hybrid.haproxy import HAProxyRouter

        return HAProxyRouter(config, run_dir, binary=settings.haproxy_bin, startup_timeout=timeout)
    return LiteLLMRouter(config, run_dir, startup_timeout=timeout)


def keep_router_log(router: ManagedRouter, results_dir: Path) -> None:
    """Copy the router's log next to the results: a failed scenario is explained by what the router said."""
    with contextlib.suppress(OSError):
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / ROUTER_LOG_FILE).unlink(missing_ok=True)
        with open_private_log(results_dir / ROUTER_LOG_FILE) as out:  # 0600: it may echo requests
            out.write(router.service.log_file.read_bytes())


@contextlib.contextmanager
def reference_topology(settings: HybridSettings, notify: Callable[[str], None]) -> Iterator[Topology]:
    """Two embedded stacks, a fault proxy and the router on loopback; all stop when the block exits, however."""
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="llmpyramid-hybrid-")))
        key = secrets.token_hex(16)  # the backends require a key, as production ones should
        base = _LocalBackend("base", settings.base_slots, tmp / "base", key, notify)
        burst = _LocalBackend("burst", settings.burst_slots, tmp / "burst", key, notify)
        router = make_router(settings, tmp / "router")
        fault = cleanup.enter_context(FaultProxy(base.url, delay_s=settings.degraded_delay))
        env = {
            # LiteLLM's file names URLs and a key per backend; HAProxy's addresses and one key for both
            "HYBRID_BASE_API_BASE": f"{fault.url}/v1",
            "HYBRID_BURST_API_BASE": f"{burst.url}/v1",
            "HYBRID_BASE_API_KEY": key,
            "HYBRID_BURST_API_KEY": key,
            "HYBRID_BASE_ADDR": fault.address,
            "HYBRID_BURST_ADDR": burst.url.removeprefix("http://"),
            "HYBRID_BACKEND_API_KEY": key,
            "HYBRID_BASE_SLOTS": str(settings.base_slots),
            "HYBRID_BURST_SLOTS": str(settings.burst_slots),
        }
        cleanup.callback(keep_router_log, router, settings.results_dir)  # after it stopped, before tmp goes
        cleanup.callback(router.down)
        cleanup.callback(base.stack.down)
        cleanup.callback(burst.stack.down)
        # LiteLLM's import takes far longer than a stack's start: it loads while the stacks start.
        router.start(env)
        base.up()
        burst.up()
        router.wait_ready(notify=notify)
        assert router.process is not None
        yield Topology(
            router.process.url,
            router.process.api_key,
            settings.model,
            {"base": base.backend(fault), "burst": burst.backend()},
            router=router,
        )
