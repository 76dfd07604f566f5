"""SkyPilot's API server as a managed service, without SkyPilot's server: the command line is SkyPilot's
own (captured from its client), and the lifecycle runs with a stand-in process that answers /api/health.

The real server (started this way, used by SkyPilot's client, stopped with its workers) runs in tests/cloud_emulated.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from llmpyramid.cloud import api_server
from llmpyramid.config import patched_environ
from llmpyramid.errors import InfrastructureError
from llmpyramid.ports import free_port
from llmpyramid.procs import ProcessIdentity, processes_with_env

# Not imported at collection (~4 s in every pytest worker): the tests that need SkyPilot's code import it.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sky") is None, reason="SkyPilot is in the `cloud` dependency group: uv sync --group cloud"
)

HEALTHY = textwrap.dedent("""
    import http.server, json, sys
    port = int(sys.argv[-1].split("=")[1])
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "healthy"}).encode()
            self.send_response(200); self.end_headers(); self.wfile.write(body)
    print("stand-in API server", flush=True)
    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
""")


class Captured(Exception):
    """Raised by the fake Popen: SkyPilot's client got as far as starting its server."""


def skypilot_start_command(monkeypatch, tmp_path, port):
    """The argv and environment SkyPilot's own client would start its local API server with."""
    from sky.server import common

    seen = {}

    def popen(args, **kwargs):
        seen.update(args=args, env=kwargs["env"])
        raise Captured

    monkeypatch.setenv("HOME", str(tmp_path))  # SkyPilot creates ~/.sky/api_server for its log
    monkeypatch.setenv(api_server.PORT_ENV, str(port))
    monkeypatch.delenv(api_server.NO_LOCAL_SERVER_ENV, raising=False)
    monkeypatch.setattr(common.subprocess, "Popen", popen)
    common.get_server_url.cache_clear()
    common.is_api_server_local.cache_clear()
    try:
        with pytest.raises(Captured):
            common._start_api_server(host=api_server.HOST)
    finally:
        common.get_server_url.cache_clear()
        common.is_api_server_local.cache_clear()
    return seen


def test_the_command_line_is_the_one_skypilots_client_uses(monkeypatch, tmp_path):
    port = free_port()
    seen = skypilot_start_command(monkeypatch, tmp_path, port)
    assert api_server.argv(port) == seen["args"]
    # The websockets limits SkyPilot's client adds are set by the server itself (setdefault) on startup.
    assert {k: v for k, v in seen["env"].items() if not k.startswith("WEBSOCKETS_")} == api_server.server_env(
        os.environ
    )
    assert seen["env"]["IS_SKYPILOT_SERVER"] == "true"


def stand_in(monkeypatch, script):
    """Run `script` where SkyPilot's server would run (same --port flag)."""
    monkeypatch.setattr(api_server, "argv", lambda port: [sys.executable, "-c", script, f"--port={port}"])


def test_up_waits_for_health_and_down_stops_it_in_a_private_run_dir(monkeypatch, tmp_path):
    stand_in(monkeypatch, HEALTHY)
    server = api_server.ApiServer(tmp_path / "run", api_server.free_api_port(), startup_timeout=30)
    state = server.up(os.environ, owner_pid=os.getpid())
    try:
        assert api_server.healthy(server.url)
        reaper = server.reaper.running()
        assert reaper is not None and reaper.owner_pid == os.getpid()
        assert reaper.argv[reaper.argv.index("--pid") + 1] == str(state.pid)
        assert {p.pid for p in server.processes()} == {state.pid, reaper.pid}
        assert psutil.Process(state.pid).environ()["IS_SKYPILOT_SERVER"] == "true"
        with pytest.raises(InfrastructureError, match="already running"):
            server.up(os.environ, owner_pid=os.getpid())
        assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700
        for path in (server.service.state_file, server.service.log_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        assert server.down()
    assert not state.identity.alive() and not reaper.identity.alive()
    assert not api_server.healthy(server.url)
    assert server.processes() == []
    assert "stand-in API server" in server.service.logs()


def test_a_server_that_dies_at_startup_is_exit_2_with_its_last_log_line(monkeypatch, tmp_path):
    stand_in(monkeypatch, "import sys; print('Port 1 is not available, exiting.'); sys.exit(1)")
    server = api_server.ApiServer(tmp_path / "run", api_server.free_api_port(), startup_timeout=30)
    with pytest.raises(InfrastructureError, match=r"exited with code 1 .*Port 1 is not available"):
        server.up(os.environ, owner_pid=os.getpid())
    assert server.service.read_state() is None


def test_a_busy_port_is_refused_before_anything_starts(monkeypatch, tmp_path):
    stand_in(monkeypatch, HEALTHY)
    first = api_server.ApiServer(tmp_path / "first", api_server.free_api_port(), startup_timeout=30)
    first.up(os.environ, owner_pid=os.getpid())
    try:
        second = api_server.ApiServer(tmp_path / "second", first.port, startup_timeout=30)
        with pytest.raises(InfrastructureError, match=f"port {first.port} on 127.0.0.1 is busy"):
            second.up(os.environ, owner_pid=os.getpid())
        assert second.service.read_state() is None and second.reaper.read_state() is None
    finally:
        first.down()


def _listening(port):
    sock = socket.socket()
    sock.bind((api_server.HOST, port))
    sock.listen()
    return sock


def test_a_busy_queue_manager_port_is_refused_before_anything_starts(monkeypatch, tmp_path):
    """SkyPilot's server binds its queue manager ~10 s after start; taken by then, the server never gets healthy."""
    stand_in(monkeypatch, HEALTHY)
    server = api_server.ApiServer(tmp_path / "run", api_server.free_api_port(), startup_timeout=30)
    queue_port = api_server.queue_manager_port(server.port)
    with _listening(queue_port), pytest.raises(InfrastructureError, match=f"port {queue_port} on 127.0.0.1 is busy"):
        server.up(os.environ, owner_pid=os.getpid())
    assert server.service.read_state() is None and server.reaper.read_state() is None


def test_free_api_port_passes_over_a_port_whose_queue_port_is_busy(monkeypatch):
    first, second = free_port(), api_server.free_api_port()
    candidates = iter([first, second])
    monkeypatch.setattr(api_server, "free_port", lambda host: next(candidates))
    with _listening(api_server.queue_manager_port(first)):
        assert api_server.free_api_port() == second


@pytest.mark.parametrize("port", [1024, 32768, 40000, 46580, 49999, 50000, 56569, 60999, 65535])
def test_queue_manager_port_is_skypilots_rule_and_above_the_emulated_clouds_ephemeral_ports(port):
    from sky.server.requests.queues import mp_queue

    from llmpyramid.cloud.emulator import EPHEMERAL_PORTS

    with patched_environ({api_server.PORT_ENV: str(port)}):
        assert api_server.queue_manager_port(port) == mp_queue.get_queue_manager_port()
    assert EPHEMERAL_PORTS[1] < api_server.queue_manager_port(port) < 65536


def test_a_server_that_never_gets_healthy_is_stopped_after_the_timeout(monkeypatch, tmp_path):
    stand_in(monkeypatch, "import time; print('stuck', flush=True); time.sleep(600)")
    server = api_server.ApiServer(tmp_path / "run", api_server.free_api_port(), startup_timeout=1)
    spawned = []
    spawn = server.service.spawn
    monkeypatch.setattr(server.service, "spawn", lambda *a, **k: spawned.append(spawn(*a, **k)) or spawned[-1])
    with pytest.raises(InfrastructureError, match=r"not healthy after 1s .*skypilot-api-server.log.*stuck"):
        server.up(os.environ, owner_pid=os.getpid())
    proc, state = spawned[0]
    assert proc.wait(timeout=10) is not None and not state.identity.alive()


# --- the front doors' scope ------------------------------------------------------------------------


@pytest.fixture
def fake_skypilot_url(monkeypatch):
    """SkyPilot's notion of where its server is, without a server."""
    from sky.server import common

    where = {"url": "http://127.0.0.1:46580", "local": True, "port": 46580}
    monkeypatch.setattr(common, "get_server_url", lambda host=None: where["url"])
    monkeypatch.setattr(common, "is_api_server_local", lambda endpoint=None: where["local"])
    monkeypatch.setattr(common, "get_local_api_server_port", lambda: where["port"])
    return where


def point_at(where, port):
    where.update(url=f"http://{api_server.HOST}:{port}", local=True, port=port)


class Recorder:
    def __init__(self, run_dir, port, **_):
        self.calls = [("init", run_dir, port)]
        Recorder.last = self

    def up(self, env, *, owner_pid):
        self.calls.append(("up", owner_pid))

    def down(self):
        self.calls.append(("down",))


def test_scope_starts_a_server_when_none_answers_and_stops_it_even_on_error(monkeypatch, tmp_path, fake_skypilot_url):
    monkeypatch.setattr(api_server, "healthy", lambda url: False)
    monkeypatch.setattr(api_server, "ApiServer", Recorder)
    monkeypatch.delenv(api_server.NO_LOCAL_SERVER_ENV, raising=False)
    with pytest.raises(RuntimeError), api_server.scope(tmp_path):
        assert os.environ[api_server.NO_LOCAL_SERVER_ENV] == "1"  # the client may not start a second one
        raise RuntimeError("a step failed")
    assert Recorder.last.calls == [("init", tmp_path, 46580), ("up", os.getpid()), ("down",)]
    assert api_server.NO_LOCAL_SERVER_ENV not in os.environ


@pytest.mark.parametrize("healthy", [True, False])
def test_scope_uses_a_remote_server_as_it_is(monkeypatch, tmp_path, fake_skypilot_url, healthy):
    """A remote endpoint is the user's explicit configuration: no local identity check, nothing started."""
    fake_skypilot_url.update(url="https://sky.example.com:443", local=False)
    monkeypatch.setattr(api_server, "healthy", lambda url: healthy)
    monkeypatch.setattr(api_server, "require_skypilot_server", lambda *a: pytest.fail("a remote URL is not checked"))
    monkeypatch.setattr(api_server, "ApiServer", lambda *a, **k: pytest.fail("must not start a server"))
    with api_server.scope(tmp_path):
        pass
    assert not (tmp_path / f"{api_server.NAME}.json").exists()


def test_scope_sends_skypilots_stdout_to_stderr(monkeypatch, tmp_path, fake_skypilot_url, capfd):
    fake_skypilot_url["local"] = False
    monkeypatch.setattr(api_server, "healthy", lambda url: True)
    with api_server.scope(tmp_path):
        print("SkyPilot's progress")
    out, err = capfd.readouterr()
    assert "SkyPilot's progress" in err and "SkyPilot's progress" not in out


@contextlib.contextmanager
def answering(argv, port, **popen):
    """A process answering healthy on `port` with command line `argv`, until the block ends."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, **popen)
    try:
        url = f"http://{api_server.HOST}:{port}"
        deadline = time.monotonic() + 30
        while not api_server.healthy(url, timeout=0.5):
            assert proc.poll() is None and time.monotonic() < deadline, "the stand-in never answered"
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_scope_refuses_an_impostor_answering_healthy_on_the_local_port(monkeypatch, tmp_path, fake_skypilot_url):
    port = free_port()
    point_at(fake_skypilot_url, port)
    monkeypatch.setattr(api_server, "ApiServer", lambda *a, **k: pytest.fail("must not start a server"))
    impostor_argv = [sys.executable, "-c", HEALTHY, f"--port={port}"]
    with (
        answering(impostor_argv, port) as impostor,
        pytest.raises(InfrastructureError) as refused,
        api_server.scope(tmp_path),
    ):
        pytest.fail("the scope ran with an impostor as SkyPilot's server")
    message = str(refused.value)
    assert f"answered by pid {impostor.pid} ({sys.executable} -c" in message
    assert "not SkyPilot's server (python -m sky.server.server)" in message and api_server.PORT_ENV in message
    assert "\n" not in message and refused.value.exit_code == 2


def test_scope_uses_the_server_recorded_in_its_run_dir_and_leaves_it_alone(monkeypatch, tmp_path, fake_skypilot_url):
    stand_in(monkeypatch, HEALTHY)  # not SkyPilot's command line: accepted for its recorded identity alone
    server = api_server.ApiServer(tmp_path, api_server.free_api_port(), startup_timeout=30)
    state = server.up(os.environ, owner_pid=os.getpid())
    try:
        point_at(fake_skypilot_url, server.port)
        with api_server.scope(tmp_path):
            assert state.identity.alive()
        assert state.identity.alive() and api_server.healthy(server.url), "the scope stopped a server it did not start"
        # the same process seen from a run directory that did not record it: nothing vouches for it there
        with (
            pytest.raises(InfrastructureError, match=f"answered by pid {state.pid} "),
            api_server.scope(tmp_path / "x"),
        ):
            pass
    finally:
        server.down()


def test_scope_uses_a_server_running_skypilots_module(monkeypatch, tmp_path, fake_skypilot_url):
    """The user's `sky api start`, or the emulated cloud's ApiServer: not recorded in this run directory, but
    `python -m sky.server.server ...` (here a stand-in module of that name)."""
    fake = tmp_path / "fake" / "sky" / "server"
    fake.mkdir(parents=True)
    for package in (fake.parent, fake):
        (package / "__init__.py").write_text("")
    (fake / "server.py").write_text(HEALTHY)
    port = free_port()
    point_at(fake_skypilot_url, port)
    monkeypatch.setattr(api_server, "ApiServer", lambda *a, **k: pytest.fail("must not start a server"))
    argv = [sys.executable, "-m", "sky.server.server", f"--host={api_server.HOST}", f"--port={port}"]
    with answering(argv, port, cwd=tmp_path / "fake") as server, api_server.scope(tmp_path / "run"):
        assert server.poll() is None
    assert not (tmp_path / "run" / f"{api_server.NAME}.json").exists()


def test_up_refuses_a_healthy_answer_from_a_process_that_is_not_the_one_it_started(monkeypatch, tmp_path):
    """The port was free when checked, then taken before the server bound it: its answer is not ours."""
    port = free_port()
    stand_in(monkeypatch, "import time; time.sleep(600)")  # never binds: the port's holder answers instead
    server = api_server.ApiServer(tmp_path / "run", port, startup_timeout=30)
    monkeypatch.setattr(api_server, "require_free", lambda *a: None)  # the race, made certain
    with answering([sys.executable, "-c", HEALTHY, f"--port={port}"], port) as impostor:
        expected = f"answers healthy, but from pid {impostor.pid} "
        with pytest.raises(InfrastructureError, match=expected):
            server.up(os.environ, owner_pid=os.getpid())
    assert server.service.read_state() is None and server.processes() == []


def test_patched_environ_restores_set_and_unset_names(monkeypatch):
    monkeypatch.setenv("LLMPYRAMID_T_SET", "before")
    monkeypatch.delenv("LLMPYRAMID_T_UNSET", raising=False)
    with patched_environ({"LLMPYRAMID_T_SET": "x", "LLMPYRAMID_T_UNSET": "y"}):
        assert (os.environ["LLMPYRAMID_T_SET"], os.environ["LLMPYRAMID_T_UNSET"]) == ("x", "y")
        assert subprocess.run([sys.executable, "-c", "import os; print(os.environ['LLMPYRAMID_T_UNSET'])"],
                              capture_output=True, text=True).stdout.strip() == "y"  # fmt: skip
    assert os.environ["LLMPYRAMID_T_SET"] == "before" and "LLMPYRAMID_T_UNSET" not in os.environ


# --- the reaper ------------------------------------------------------------------------------------

SERVER_WITH_ORPHANS = textwrap.dedent("""
    import subprocess, sys, time
    # like SkyPilot's executors: workers that outlive the server when it exits
    for _ in range(2):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    print("started", flush=True)
    time.sleep(600)
""")


def _wait(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_the_reaper_stops_the_servers_orphans_when_the_owner_dies(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    tag = {"LLMPYRAMID_REAPER_TEST": str(tmp_path)}  # the orphans inherit it: found even once reparented
    server = subprocess.Popen([sys.executable, "-c", SERVER_WITH_ORPHANS], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **tag})  # fmt: skip
    log = tmp_path / "reaper.log"
    reaper = None
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "started"
        workers = psutil.Process(server.pid).children()
        assert len(workers) == 2
        identity = ProcessIdentity.of(server.pid)
        with log.open("w") as out:
            reaper = subprocess.Popen(api_server.reaper_argv(owner.pid, identity, 5.0), stdout=out)
        expected = f"reaper: watching pids {sorted([server.pid, *(w.pid for w in workers)])}"
        _wait(lambda: expected in log.read_text(), "the reaper never saw the server's workers")
        server.kill()  # the server goes first, as SkyPilot's does on the parent-death signal
        server.wait()
        assert all(w.is_running() for w in workers), "the workers outlive the server: what the reaper is for"
        owner.kill()
        owner.wait()
        assert reaper.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [], "the reaper left the server's workers running"
    finally:
        for proc in (owner, server, reaper):
            if proc is not None and proc.poll() is None:
                proc.kill()
        for worker in [*psutil.Process().children(recursive=True), *processes_with_env(*next(iter(tag.items())))]:
            with contextlib.suppress(psutil.Error):  # an interrupted run leaves no orphan either
                worker.kill()
