"""The embedded stack: llama.cpp's server (xllamacpp) as a managed service on loopback.

The lifecycle (private run dir, lock, identity, stop, owner watchdog, logs) is llmpyramid.procs'
ManagedService; this module adds what is specific to the server: its command line, the model,
the port, and "healthy" meaning `/health` answers 200. `invoke stack.up` in one shell and
`stack.status` / `stack.down` / the test fixtures in another all see the same stack.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from llmpyramid.config import ModelSettings, StackSettings
from llmpyramid.errors import InfrastructureError
from llmpyramid.model import ensure_model
from llmpyramid.ports import free_port, require_free
from llmpyramid.procs import ManagedService, ServiceState, stop_process
from llmpyramid.target import PROBED_ENV, Target, check_reachable, handoff_env, target_from_env

SERVER_MODULE = "llmpyramid.stack.server"
HANDED_DOWN_STACK_ENV = "LLMPYRAMID_STACK_RUN_DIR"  # the run dir of an embedded stack a front door handed down
API_KEY_ENV = "LLMPYRAMID_SERVER_API_KEY"  # the key travels in the environment, never on argv


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class StackState:
    """A running stack as the rest of the project sees it."""

    pid: int
    host: str
    port: int
    model: str  # the alias clients send as "model"
    model_path: str
    log_file: str
    started_at: float
    api_key: str | None = None
    owner_pid: int | None = None  # set when the stack dies with its owner (test sessions)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def target(self) -> Target:
        return Target(self.base_url, self.api_key, self.model)

    @classmethod
    def from_service(cls, state: ServiceState, log_file: str) -> StackState:
        x = state.extra
        return cls(
            state.pid, x["host"], x["port"], x["model"], x["model_path"], log_file, state.started_at,
            x.get("api_key"), state.owner_pid,
        )  # fmt: skip


def _health(base_url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of /health (200 ready, 503 loading), or None when nothing answers."""
    try:
        return httpx.get(f"{base_url}/health", timeout=timeout).status_code
    except httpx.HTTPError:
        return None


class EmbeddedStack:
    """One embedded server, addressed by its run directory."""

    def __init__(self, settings: StackSettings | None = None, model: ModelSettings | None = None):
        self.settings = settings or StackSettings.from_env()
        self.model_settings = model or ModelSettings.from_env()
        self.service = ManagedService("server", self.settings.run_dir, stop_grace=self.settings.stop_grace)
        self.run_dir = self.service.run_dir
        self.state_file = self.service.state_file
        self.log_file = self.service.log_file

    def read_state(self) -> StackState | None:
        state = self.service.read_state()
        return self._stack_state(state) if state else None

    def running(self) -> StackState | None:
        """The live stack, or None. A stale state file (process gone, pid reused) is removed."""
        state = self.service.running()
        return self._stack_state(state) if state else None

    def _stack_state(self, state: ServiceState) -> StackState | None:
        try:
            return StackState.from_service(state, str(self.log_file))
        except (KeyError, TypeError):
            return None  # a state file this version did not write

    # --- lifecycle --------------------------------------------------------------------------

    def up(self, *, owner_pid: int | None = None, notify: Callable[[str], None] = _stderr) -> StackState:
        """Start the server (or return the one already running) and wait until /health is 200."""
        with self.service.locked():
            existing = self.running()
            if existing is None:
                model = ensure_model(self.model_settings, notify=notify)
                try:
                    proc, state = self._spawn(str(model.path), owner_pid)
                except BaseException:  # e.g. Ctrl-C delivered as the spawn ends: still under the lock, so
                    self.service.stop()  # the only record here is the one just written
                    raise
        if existing is not None:
            notify(f"stack already running at {existing.base_url} (pid {existing.pid})")
            self._wait_healthy(existing, None)
            return existing
        stack_state = StackState.from_service(state, str(self.log_file))
        try:
            self._wait_healthy(stack_state, proc)
        except BaseException:
            if proc.poll() is None:
                stop_process(proc.pid, self.settings.stop_grace)
            self.service.stop(port=stack_state.port, host=stack_state.host)
            raise
        took = time.time() - stack_state.started_at
        notify(f"stack up at {stack_state.base_url} (pid {proc.pid}, model {stack_state.model}) in {took:.1f}s")
        return stack_state

    def _spawn(self, model_path: str, owner_pid: int | None) -> tuple[subprocess.Popen[bytes], ServiceState]:
        s = self.settings
        port = s.port or free_port(s.host)
        require_free(port, s.host)
        argv = [
            sys.executable, "-m", SERVER_MODULE, "--model", model_path, "--alias", s.model_alias,
            "--host", s.host, "--port", str(port), "--threads", str(s.threads),
            "--parallel", str(s.parallel), "--ctx-size", str(s.ctx_size), "--api-key-env", API_KEY_ENV,
        ]  # fmt: skip
        if owner_pid:
            argv += ["--owner-pid", str(owner_pid)]
        extra = {"host": s.host, "port": port, "model": s.model_alias, "model_path": model_path, "api_key": s.api_key}
        env = {**os.environ, API_KEY_ENV: s.api_key or ""}
        return self.service.spawn(argv, env=env, owner_pid=owner_pid, extra=extra)

    def _wait_healthy(self, state: StackState, proc: subprocess.Popen[bytes] | None) -> None:
        def not_ready(code: int | None) -> bool:
            if proc is not None and proc.poll() is not None:
                raise InfrastructureError(
                    f"llama.cpp server exited with code {proc.returncode} before it was healthy: {self.last_log_line()}"
                )
            return code != 200

        retrying = Retrying(
            stop=stop_after_delay(self.settings.startup_timeout),
            wait=wait_fixed(0.1),
            retry=retry_if_result(not_ready),
            retry_error_callback=lambda _: None,
        )
        if retrying(_health, state.base_url, 1.0) != 200:
            raise InfrastructureError(
                f"llama.cpp server not healthy after {self.settings.startup_timeout:.0f}s at {state.base_url}: "
                f"{self.last_log_line()}"
            )

    def down(self) -> bool:
        """Stop the stack (SIGTERM, SIGKILL after the grace period) and wait for its port to free up."""
        state = self.read_state()
        return self.service.stop(port=state.port if state else None, host=self.settings.host)

    # --- inspection -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.running()
        if state is None:
            return {"running": False, "run_dir": str(self.run_dir)}
        code = _health(state.base_url)
        return {
            "running": True,
            "url": state.base_url,
            "pid": state.pid,
            "model": state.model,
            "model_path": state.model_path,
            "uptime_seconds": round(time.time() - state.started_at, 1),
            "rss_bytes": self.rss_bytes(),
            "health": {200: "ok", 503: "loading", None: "unreachable"}.get(code, f"http {code}"),
            "api_key_required": bool(state.api_key),
            "log_file": state.log_file,
        }

    def rss_bytes(self) -> int | None:
        state = self.service.running()
        proc = state.identity.process() if state else None
        with contextlib.suppress(psutil.Error):
            return int(proc.memory_info().rss) if proc else None
        return None

    def logs(self, lines: int = 50) -> str:
        return self.service.logs(lines)

    def last_log_line(self) -> str:
        return self.service.last_log_line()


def handoff_stack_env(target: Target, stack: EmbeddedStack | None) -> dict[str, str]:
    """handoff_env, plus where the embedded stack behind the target keeps its state when this run started
    it: the child then knows the server as embedded (its RSS, its settings), not as an external target."""
    return {**handoff_env(target), **({HANDED_DOWN_STACK_ENV: str(stack.service.run_dir)} if stack else {})}


def handed_down_stack(target: Target) -> EmbeddedStack | None:
    """The embedded stack a front door started and handed down (handoff_stack_env), if it is this target."""
    run_dir = os.environ.get(HANDED_DOWN_STACK_ENV)
    if not run_dir:
        return None
    stack = EmbeddedStack(StackSettings.from_env(run_dir=Path(run_dir)))
    state = stack.running()
    return stack if state is not None and state.base_url == target.base_url else None


@contextlib.contextmanager
def target_session(
    given: Target | str | None = None,
    *,
    reuse_running: bool = False,
    notify: Callable[[str], None] = _stderr,
    **stack_overrides: Any,
) -> Iterator[tuple[Target, EmbeddedStack | None]]:
    """Yield (target, stack-started-for-this-run or None), per THE target rule (llmpyramid.target).

    `given`: a resolved Target, a URL (--base-url), or None (then BASE_URL, else a stack)."""
    target = given if isinstance(given, Target) else target_from_env(given)
    if target is not None:
        if os.environ.get(PROBED_ENV) != target.base_url:
            check_reachable(target)
        yield target, handed_down_stack(target)  # a stack the front door started stays its to stop
        return
    if reuse_running and (state := EmbeddedStack(StackSettings.from_env()).running()) is not None:
        notify(f"using the running embedded stack at {state.base_url}")
        yield state.target(), None
        return
    with fresh_stack(notify=notify, **stack_overrides) as pair:
        yield pair


@contextlib.contextmanager
def fresh_stack(
    *, notify: Callable[[str], None] = _stderr, **stack_overrides: Any
) -> Iterator[tuple[Target, EmbeddedStack]]:
    """A stack owned by this process: free port, private temporary run dir, dies with us, stopped after."""
    with tempfile.TemporaryDirectory(prefix="llmpyramid-stack-") as run_dir:
        settings = StackSettings.from_env(port=0, run_dir=Path(run_dir), **stack_overrides)
        stack = EmbeddedStack(settings)
        state = stack.up(owner_pid=os.getpid(), notify=notify)
        try:
            yield state.target(), stack
        finally:
            stack.down()
