"""The embedded stack for real: llama.cpp's server in a subprocess, its lifecycle and its failure modes.

Each test uses its own run directory and a free port, so it never touches a stack the user runs; the
checks that only read share one stack per module.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h11
import httpx
import psutil
import pytest

from llmpyramid.config import StackSettings
from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.ports import free_port, port_is_free
from llmpyramid.stack.embedded import HANDED_DOWN_STACK_ENV, EmbeddedStack, handed_down_stack, handoff_stack_env
from llmpyramid.target import Target

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def _settings(tmp_path: Path, **kw) -> StackSettings:
    kw.setdefault("port", free_port())
    return StackSettings(run_dir=tmp_path / "run", **kw)


def _server_pids(port: int) -> set[int]:
    """Our server processes on this port (other runs on the machine are not counted)."""
    return {
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "llmpyramid.stack.server" in (cmd := " ".join(p.info["cmdline"] or [])) and f"--port {port} " in cmd
    }


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False
    )


@pytest.fixture
def stack(tmp_path):
    """A stack of the test's own, for tests that start, kill or rewrite it."""
    st = EmbeddedStack(_settings(tmp_path))
    yield st
    st.down()


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory):
    """One running stack shared by the checks that only read it (status, a second `up`, file modes)."""
    st = EmbeddedStack(_settings(tmp_path_factory.mktemp("shared-stack")))
    st.up(notify=lambda _: None)
    yield st
    st.down()


def test_up_serves_health_and_a_completion_then_down_frees_the_port(stack):
    state = stack.up(notify=lambda _: None)
    server = psutil.Process(state.pid)  # pid + start time: a reused pid is not our server
    assert httpx.get(f"{state.base_url}/health").status_code == 200
    r = httpx.post(f"{state.base_url}/v1/completions", json={"prompt": "Hello", "max_tokens": 4}, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["text"]
    assert stack.down() is True
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert port_is_free(state.port)
    assert stack.read_state() is None


def test_sigterm_ends_the_server_with_requests_in_flight(stack):
    """SIGTERM alone ends the server even mid-answer (its C++ destructor would wait for them): a stop
    must not depend on the SIGKILL after the grace period, and a cloud node has no one to send it."""
    import threading

    state = stack.up(notify=lambda _: None)
    body = {"prompt": "Count to one thousand:", "max_tokens": 400, "ignore_eos": True}

    def long_answer() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{state.base_url}/v1/completions", json=body, timeout=120)

    for _ in range(2):
        threading.Thread(target=long_answer, daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _slots_busy(state.base_url):
        time.sleep(0.1)
    assert _slots_busy(state.base_url), "the long answers never started"
    server = psutil.Process(state.pid)
    server.send_signal(signal.SIGTERM)
    started = time.monotonic()
    server.wait(timeout=60)  # before the fix: still running after the SIGTERM, however long one waited
    print(f"server exited {time.monotonic() - started:.1f}s after SIGTERM with 2 requests in flight")


def _slots_busy(base_url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        slots = httpx.get(f"{base_url}/slots", timeout=5).json()
        return sum(bool(s.get("is_processing")) for s in slots) >= 1
    return False


def test_second_up_reports_the_running_stack(running_stack):
    first = running_stack.read_state()
    notes: list[str] = []
    second = running_stack.up(notify=notes.append)
    assert second.pid == first.pid
    assert any("already running" in n for n in notes)


def _second_answer_on_one_connection(base_url: str, *, stream: bool) -> int | None:
    """Send two chat completions on one kept-alive connection; the second's status, None if the server
    closed the connection instead of answering it."""
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": stream}).encode()
    request = h11.Request(method="POST", target="/v1/chat/completions", headers=[
        ("Host", host), ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])  # fmt: skip
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        status = None
        for turn in (1, 2):
            try:
                sock.sendall(conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                    if event is h11.NEED_DATA:
                        conn.receive_data(sock.recv(65536))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
            except (h11.RemoteProtocolError, ConnectionError):  # closed: no answer to this turn
                assert turn == 2, "the first request on a fresh connection must be answered"
                return None
            if turn == 1:
                assert status == 200 and conn.our_state is h11.DONE
                conn.start_next_cycle()  # llama.cpp advertised keep-alive: the connection may be reused
    return status


def test_llama_cpp_drops_a_kept_alive_connection_after_a_streamed_answer(running_stack):
    """Why the reference routers never reuse a backend connection (LiteLLM AIOHTTP_KEEPALIVE_TIMEOUT=0,
    HAProxy http-server-close): llama.cpp advertises keep-alive on a streamed answer but closes the
    connection after it, so a router that reuses it fails the next request. A llama.cpp that stops doing
    this fails here, and the routers could pool their backend connections again."""
    url = running_stack.read_state().base_url
    assert _second_answer_on_one_connection(url, stream=False) == 200  # reuse works after a plain answer
    assert _second_answer_on_one_connection(url, stream=True) is None


def test_status_reports_url_pid_model_rss_health(running_stack):
    state = running_stack.read_state()
    info = running_stack.status()
    assert info["running"] and info["url"] == state.base_url and info["pid"] == state.pid
    assert info["model"] == "SmolLM2-135M-Instruct" and info["health"] == "ok"
    assert 50 * 2**20 < info["rss_bytes"] < 2 * 2**30


def test_stale_state_is_detected_and_cleaned(stack):
    state = stack.up(notify=lambda _: None)
    os.kill(state.pid, signal.SIGKILL)
    psutil.Process(state.pid).wait(10)
    assert stack.running() is None
    assert not stack.state_file.exists()
    assert stack.up(notify=lambda _: None).pid != state.pid


def test_api_key_is_enforced(tmp_path):
    st = EmbeddedStack(_settings(tmp_path, api_key="s3cret"))
    try:
        state = st.up(notify=lambda _: None)
        body = {"prompt": "Hi", "max_tokens": 2}
        assert httpx.post(f"{state.base_url}/v1/completions", json=body, timeout=30).status_code == 401
        ok = httpx.post(f"{state.base_url}/v1/completions", json=body, headers=state.target().headers(), timeout=30)
        assert ok.status_code == 200
        assert httpx.get(f"{state.base_url}/health").status_code == 200
    finally:
        st.down()


def test_busy_port_names_the_port_and_its_owner(tmp_path):
    blocker = subprocess.Popen(
        [sys.executable, "-c", "import socket,time;s=socket.socket();s.bind(('127.0.0.1',0));s.listen();"
         "print(s.getsockname()[1],flush=True);time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = int(blocker.stdout.readline())
        with pytest.raises(InfrastructureError, match=rf"port {port} on 127.0.0.1 is busy \(held by pid {blocker.pid}"):
            EmbeddedStack(_settings(tmp_path, port=port)).up(notify=lambda _: None)
    finally:
        blocker.kill()
        blocker.wait()


def test_invalid_model_is_config_error(tmp_path, monkeypatch):
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a model")
    monkeypatch.setenv("MODEL_PATH", str(bad))
    with pytest.raises(ConfigError, match="not a GGUF"):
        EmbeddedStack(_settings(tmp_path)).up(notify=lambda _: None)


def test_stack_dies_with_its_owner(tmp_path):
    """A test run killed with SIGKILL (no cleanup at all) must not leave a server behind."""
    port = free_port()
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, time
            from llmpyramid.config import StackSettings
            from llmpyramid.stack.embedded import EmbeddedStack
            st = EmbeddedStack(StackSettings(port={port}, run_dir={str(tmp_path / "run")!r}))
            print(st.up(owner_pid=os.getpid(), notify=lambda _: None).pid, flush=True)
            time.sleep(120)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    server = psutil.Process(int(owner.stdout.readline()))  # pid + start time: a reused pid is not our server
    owner.kill()
    owner.wait()
    _, alive = psutil.wait_procs([server], timeout=10)
    assert not alive, "the server outlived its owner"
    deadline = time.monotonic() + 5
    while not port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert port_is_free(port)


# --- the front doors: invoke tasks and wait_healthy.sh, as a user runs them -------------------


def test_invoke_stack_lifecycle_and_exit_codes(tmp_path):
    env = {"STACK_RUN_DIR": str(tmp_path / "run"), "STACK_PORT": str(free_port())}
    invoke = [sys.executable, "-m", "invoke"]
    up = _run([*invoke, "stack.up"], env)
    assert up.returncode == 0, up.stderr
    try:
        status = _run([*invoke, "stack.status", "--json"], env)
        info = json.loads(status.stdout)
        assert info["running"] and info["health"] == "ok"
        busy = _run([*invoke, "stack.up"], {**env, "STACK_RUN_DIR": str(tmp_path / "other")})
        assert busy.returncode == 2
        assert busy.stderr.strip().splitlines()[-1].startswith(f"error: port {env['STACK_PORT']} on 127.0.0.1 is busy")
        assert "Traceback" not in busy.stderr
        healthy = _run(["scripts/wait_healthy.sh", info["url"], "10"])
        assert healthy.returncode == 0 and "healthy" in healthy.stdout
    finally:
        down = _run([*invoke, "stack.down"], env)
    assert down.returncode == 0 and "stack stopped" in down.stdout
    assert json.loads(_run([*invoke, "stack.status", "--json"], env).stdout)["running"] is False


def test_invoke_bad_flag_is_exit_3(tmp_path):
    bad = _run([sys.executable, "-m", "invoke", "stack.up", "--parallel", "zero"], {"STACK_RUN_DIR": str(tmp_path)})
    assert bad.returncode == 3
    assert bad.stderr.strip() == "error: STACK_PARALLEL must be an integer, got 'zero'"


def test_invoke_interrupted_startup_leaves_nothing_running(tmp_path):
    port = free_port()
    env = {"STACK_RUN_DIR": str(tmp_path / "run"), "STACK_PORT": str(port), "STACK_STARTUP_TIMEOUT": "60"}
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "stack.up"], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while not _server_pids(port) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _server_pids(port), "the server process never appeared"
    # The server needs ~0.5 s to import llama.cpp and load the model: this lands mid-startup.
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted")
    assert not _server_pids(port)
    assert port_is_free(port)


def test_wait_healthy_on_closed_port_is_exit_2():
    r = _run(["scripts/wait_healthy.sh", f"http://127.0.0.1:{free_port()}", "2"], timeout=20)
    assert r.returncode == 2 and "not healthy after 2s" in r.stderr


@pytest.mark.parametrize("args", [[], ["not-a-url"], ["http://127.0.0.1:8080", "soon"], ["a", "b", "c"]])
def test_wait_healthy_bad_arguments_are_exit_3(args):
    assert _run(["scripts/wait_healthy.sh", *args]).returncode == 3


def _docker_engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(_docker_engine_answers(), reason="a Docker engine runs here: the no-engine message cannot be shown")
def test_invoke_stack_up_docker_without_engine_says_so():
    r = _run([sys.executable, "-m", "invoke", "stack.up", "--docker"], timeout=120)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Docker" in last and "embedded stack" in last
    assert "Traceback" not in r.stderr


# --- one managed-service lifecycle: lock, identity, private files -----------------------------


def test_two_concurrent_invoke_stack_up_give_one_server_and_one_already_running(tmp_path):
    port = free_port()
    env = {**os.environ, "STACK_RUN_DIR": str(tmp_path / "run"), "STACK_PORT": str(port)}
    ups = [
        subprocess.Popen([sys.executable, "-m", "invoke", "stack.up"], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]  # fmt: skip
    try:
        outs = [p.communicate(timeout=120) for p in ups]
        assert [p.returncode for p in ups] == [0, 0], outs
        said = " ".join(out + err for out, err in outs)
        assert said.count("already running") == 1, said
        assert len(_server_pids(port)) == 1
    finally:
        _run([sys.executable, "-m", "invoke", "stack.down"], {"STACK_RUN_DIR": env["STACK_RUN_DIR"]})
    assert not _server_pids(port)


def test_state_and_log_are_private(running_stack):
    assert stat.S_IMODE(running_stack.run_dir.stat().st_mode) == 0o700
    for path in (running_stack.state_file, running_stack.log_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_down_never_signals_a_foreign_process_named_by_the_state_file(stack):
    """A state file whose pid now belongs to another process (same marker in its command line)."""
    state = stack.up(notify=lambda _: None)
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "llmpyramid.stack.server"])
    try:
        doc = json.loads(stack.state_file.read_text())
        doc["pid"] = decoy.pid
        stack.state_file.write_text(json.dumps(doc))
        assert stack.down() is False
        assert decoy.poll() is None, "stack.down signalled a process that is not its server"
    finally:
        decoy.kill()
        decoy.wait()
        os.kill(state.pid, signal.SIGTERM)
        psutil.Process(state.pid).wait(10)


# --- invoke front door: bad input and secrets --------------------------------------------------


def test_logs_follow_never_hands_the_run_dir_to_a_shell(tmp_path):
    pwned = tmp_path / "PWNED"
    run_dir = tmp_path / f"with space;touch {pwned};echo"
    run_dir.mkdir(parents=True)
    (run_dir / "server.log").write_text("line one\n")
    env = {**os.environ, "STACK_RUN_DIR": str(run_dir)}
    cmd = [sys.executable, "-m", "invoke", "stack.logs", "--follow"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "line one"  # a path with spaces works
        time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(10)
    assert not pwned.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stack.logs", "--lines", "abc"], "error: --lines must be an integer, got 'abc'"),
        (["stack.logs", "--lines", "-1"], "error: --lines must be between 1 and 1000000, got -1"),
        (["stack.up", "--port", "nan"], "error: STACK_PORT must be an integer, got 'nan'"),
        (["stack.up", "--api-key-file", "/nonexistent/key"], "error: cannot read --api-key-file"),
    ],
)
def test_invoke_typed_flags_are_parsed_by_the_project(tmp_path, args, message):
    r = _run([sys.executable, "-m", "invoke", *args], {"STACK_RUN_DIR": str(tmp_path / "run")})
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in r.stderr


def test_api_key_from_a_file_stays_off_the_command_line(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    env = {"STACK_RUN_DIR": str(tmp_path / "run"), "STACK_PORT": str(free_port())}
    up = _run([sys.executable, "-m", "invoke", "stack.up", "--api-key-file", str(key_file)], env)
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(_run([sys.executable, "-m", "invoke", "stack.status", "--json"], env).stdout)
        assert info["api_key_required"] is True
        assert "sk-from-file" not in " ".join(psutil.Process(info["pid"]).cmdline())
        body = {"prompt": "Hi", "max_tokens": 2}
        assert httpx.post(f"{info['url']}/v1/completions", json=body, timeout=30).status_code == 401
        headers = {"Authorization": "Bearer sk-from-file"}
        assert httpx.post(f"{info['url']}/v1/completions", json=body, headers=headers, timeout=30).status_code == 200
    finally:
        _run([sys.executable, "-m", "invoke", "stack.down"], env)


def test_api_key_flag_warns(tmp_path):
    env = {"STACK_RUN_DIR": str(tmp_path / "run"), "STACK_PORT": str(free_port())}
    up = _run([sys.executable, "-m", "invoke", "stack.up", "--api-key", "sk-flag"], env)
    try:
        assert up.returncode == 0, up.stderr
        assert "warning: --api-key is visible in the process list" in up.stderr
    finally:
        _run([sys.executable, "-m", "invoke", "stack.down"], env)


def test_a_handed_down_stack_is_known_as_embedded_only_for_its_own_url(running_stack, monkeypatch):
    """A front door that started the stack hands its run dir down: the child sees an embedded server (RSS,
    a keyed second stack) instead of an external target, and only for that stack's URL."""
    target = running_stack.read_state().target()
    env = handoff_stack_env(target, running_stack)
    assert env[HANDED_DOWN_STACK_ENV] == str(running_stack.service.run_dir)
    monkeypatch.setenv(HANDED_DOWN_STACK_ENV, env[HANDED_DOWN_STACK_ENV])
    found = handed_down_stack(target)
    assert found is not None and found.read_state().pid == running_stack.read_state().pid
    assert handed_down_stack(Target(f"http://127.0.0.1:{free_port()}")) is None
    monkeypatch.delenv(HANDED_DOWN_STACK_ENV)
    assert handed_down_stack(target) is None
