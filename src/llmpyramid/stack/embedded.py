"""The embedded stack: llama.cpp's server (xllamacpp) as a managed subprocess on loopback.

State (pid, port, model, log file) lives in `<run_dir>/state.json`, so `invoke stack.up` in one
shell and `stack.status` / `stack.down` / the test fixtures in another all see the same stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import psutil
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from llmpyramid.config import ModelSettings, StackSettings
from llmpyramid.errors import InfrastructureError
from llmpyramid.model import ensure_model
from llmpyramid.ports import free_port, port_is_free, port_owner
from llmpyramid.procs import is_ours, stop_process, wait_port_free
from llmpyramid.stack.target import Target

SERVER_MODULE = "llmpyramid.stack.server"
API_KEY_ENV = "LLMPYRAMID_SERVER_API_KEY"


@dataclass
class StackState:
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


def _is_our_server(pid: int) -> bool:
    return is_ours(pid, SERVER_MODULE)


def _health(base_url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of /health (200 ready, 503 loading), or None when nothing answers."""
    try:
        return httpx.get(f"{base_url}/health", timeout=timeout).status_code
    except httpx.HTTPError:
        return None


class EmbeddedStack:
    """Lifecycle of one embedded server, addressed by its run directory."""

    def __init__(self, settings: StackSettings | None = None, model: ModelSettings | None = None):
        self.settings = settings or StackSettings.from_env()
        self.model_settings = model or ModelSettings.from_env()
        self.run_dir = self.settings.run_dir
        self.state_file = self.run_dir / "state.json"
        self.log_file = self.run_dir / "server.log"

    # --- state ------------------------------------------------------------------------------

    def read_state(self) -> StackState | None:
        try:
            return StackState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _write_state(self, state: StackState) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.chmod(0o600)  # may hold the API key
        os.replace(tmp, self.state_file)

    def running(self) -> StackState | None:
        """The live stack, or None. A stale state file (process gone) is removed."""
        state = self.read_state()
        if state is None:
            return None
        if _is_our_server(state.pid):
            return state
        self.state_file.unlink(missing_ok=True)
        return None

    # --- lifecycle --------------------------------------------------------------------------

    def up(self, *, owner_pid: int | None = None, notify=lambda m: print(m, file=sys.stderr)) -> StackState:
        """Start the server (or return the one already running) and wait until /health is 200."""
        existing = self.running()
        if existing:
            notify(f"stack already running at {existing.base_url} (pid {existing.pid})")
            return existing
        model = ensure_model(self.model_settings, notify=notify)
        s = self.settings
        port = s.port or free_port(s.host)
        if not port_is_free(port, s.host):
            owner = port_owner(port)
            raise InfrastructureError(f"port {port} on {s.host} is busy" + (f" (held by {owner})" if owner else ""))

        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", SERVER_MODULE, "--model", str(model.path), "--alias", s.model_alias,
            "--host", s.host, "--port", str(port), "--threads", str(s.threads),
            "--parallel", str(s.parallel), "--ctx-size", str(s.ctx_size), "--api-key-env", API_KEY_ENV,
        ]  # fmt: skip
        if owner_pid:
            cmd += ["--owner-pid", str(owner_pid)]
        env = {**os.environ, API_KEY_ENV: s.api_key or ""}
        with self.log_file.open("ab") as log:
            # New session: a Ctrl-C in the user's terminal reaches us, and we decide what stops.
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        state = StackState(
            pid=proc.pid, host=s.host, port=port, model=s.model_alias, model_path=str(model.path),
            log_file=str(self.log_file), started_at=time.time(), api_key=s.api_key, owner_pid=owner_pid,
        )  # fmt: skip
        try:
            self._write_state(state)
            self._wait_healthy(proc, state)
        except BaseException:
            self.down()
            if proc.poll() is None:  # interrupted before the state file named it
                stop_process(proc.pid, self.settings.stop_grace)
            raise
        took = time.time() - state.started_at
        notify(f"stack up at {state.base_url} (pid {proc.pid}, model {s.model_alias}) in {took:.1f}s")
        return state

    def _wait_healthy(self, proc: subprocess.Popen[bytes], state: StackState) -> None:
        def not_ready(code: int | None) -> bool:
            if proc.poll() is not None:
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
        """Stop the stack: SIGTERM, SIGKILL after the grace period, then wait for the port to free up."""
        state = self.read_state()
        if state is None:
            return False
        stopped = _is_our_server(state.pid)
        if stopped:
            stop_process(state.pid, self.settings.stop_grace)
        wait_port_free(state.port, state.host)
        self.state_file.unlink(missing_ok=True)
        return stopped

    # --- inspection -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.running()
        if state is None:
            return {"running": False, "run_dir": str(self.run_dir)}
        rss = None
        with contextlib.suppress(psutil.Error):
            rss = psutil.Process(state.pid).memory_info().rss
        code = _health(state.base_url)
        return {
            "running": True,
            "url": state.base_url,
            "pid": state.pid,
            "model": state.model,
            "model_path": state.model_path,
            "uptime_seconds": round(time.time() - state.started_at, 1),
            "rss_bytes": rss,
            "health": {200: "ok", 503: "loading", None: "unreachable"}.get(code, f"http {code}"),
            "api_key_required": bool(state.api_key),
            "log_file": state.log_file,
        }

    def rss_bytes(self) -> int | None:
        state = self.running()
        if state is None:
            return None
        with contextlib.suppress(psutil.Error):
            return int(psutil.Process(state.pid).memory_info().rss)
        return None

    def logs(self, lines: int = 50) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def last_log_line(self) -> str:
        lines = [ln for ln in self.logs(20).splitlines() if ln.strip()]
        return lines[-1].strip() if lines else f"(no output in {self.log_file})"

    # --- context manager: an owned stack that always stops ----------------------------------

    def __enter__(self) -> StackState:
        return self.up(owner_pid=os.getpid())

    def __exit__(self, *exc: object) -> None:
        self.down()
