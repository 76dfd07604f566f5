"""The task files' setup and run, executed for real on this machine: they bring up a healthy server.

The node's workdir is built as a launch builds it (only the files the node needs), the task's `setup`
and `run` commands are run by bash exactly as SkyPilot would run them on the instance — only
SERVE_HOST is loopback and the port is free — and the smoke suite's own probes judge the server,
with the per-run API key required. uv works offline from its cache (UV_OFFLINE), as the locked
dependencies are already there for this checkout.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from llmpyramid.cloud.smoke import node_workdir
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.ports import free_port
from llmpyramid.target import Target
from tests.cloud_emulated.groups import FRONT_DOORS

pytestmark = pytest.mark.timeout(900)


def _task_commands(cloud: str) -> tuple[str, str, dict[str, str]]:
    """setup, run and envs as written in the task file (plain YAML; SkyPilot's parse is a unit test)."""
    import yaml

    from llmpyramid.cloud.smoke import task_file

    spec = yaml.safe_load(task_file(cloud).read_text())
    return spec["setup"], spec["run"], {k: str(v) for k, v in spec["envs"].items()}


def _user_uv_cache() -> str:
    """The user's uv cache: the emulated-cloud fixture points HOME at a private directory (SkyPilot state),
    and offline (UV_OFFLINE, no network in the namespace) the locked wheels must come from the real cache."""
    if os.environ.get("UV_CACHE_DIR"):
        return os.environ["UV_CACHE_DIR"]
    home = pwd.getpwuid(os.getuid()).pw_dir
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path(home) / ".cache") / "uv")


@FRONT_DOORS
def test_task_setup_and_run_bring_up_a_healthy_server_on_loopback(tmp_path, metrics):
    from llmpyramid.checks.smoke import probe_completion_fields, probe_health
    from llmpyramid.client import Client

    setup, run, envs = _task_commands("aws")
    workdir = node_workdir(tmp_path / "sky_workdir")  # exactly what a launch uploads
    port, key = free_port(), secrets.token_urlsafe(16)
    env = {
        **os.environ, **envs, "SERVE_HOST": "127.0.0.1", "SERVE_PORT": str(port), "API_KEY": key,
        "SERVE_THREADS": "1",  # this box is shared with the test run (see STACK_THREADS)
        "MODEL_DIR": str(PROJECT_ROOT / "models" / "test"), "MODEL_OFFLINE": "1", "UV_OFFLINE": "1",
        "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"), "UV_CACHE_DIR": _user_uv_cache(),
    }  # fmt: skip
    env.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    done = subprocess.run(["bash", "-c", setup], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics["setup_s"] = round(time.monotonic() - started, 2)
    server = subprocess.Popen(["bash", "-c", run], cwd=workdir, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, "the task's run command exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        target = Target(f"http://127.0.0.1:{port}", key, "SmolLM2-135M-Instruct")
        with Client(target) as client:
            metrics.update(probe_health(client))
            metrics.update(probe_completion_fields(client, "completion"))
            metrics.update(probe_completion_fields(client, "chat"))
        without_key = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "hi", "max_tokens": 1})
        assert without_key.status_code == 401, "the cloud endpoint must require the per-run API key"
        family = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        assert any("llmpyramid.cloud.node" in " ".join(p.cmdline()) for p in family)
        assert not [p.pid for p in family if key in " ".join(p.cmdline())], "the API key leaked onto a command line"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        stopping = time.monotonic()
        try:
            server.wait(timeout=180)  # generous on a busy 2-core box; the time it took is reported
        finally:
            metrics["stop_s"] = round(time.monotonic() - stopping, 2)
            with contextlib.suppress(ProcessLookupError):  # nothing of the task may outlive the test
                os.killpg(server.pid, signal.SIGKILL)
