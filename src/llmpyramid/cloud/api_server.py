"""SkyPilot's local API server, started by us as one llmpyramid.procs.ManagedService.

Left to itself, SkyPilot's client daemonizes an API server on first use (its own session, its own
0644 log, outliving the caller) and `sky api stop` later finds it again by scanning processes. Here
the server is started the way SkyPilot's client would start it (`sky.server.common._start_api_server`:
`python -m sky.server.server --host=H --port=P` with IS_SKYPILOT_SERVER=true and the caller's
environment), but as a managed service: private run directory, 0600 log and state, identity = pid +
start time + argv, dies with its owner, stopped with SIGTERM -> grace -> SIGKILL of its whole family
(request workers included). The client finds it healthy on its port and uses it (SkyPilot starts a
server only when none answers); SKYPILOT_DISABLE_LOCAL_API_SERVER=1 makes sure it never daemonizes a
second one should ours go away (the call fails instead). A server this run did not start is used only
if it is identifiably SkyPilot's (`require_skypilot_server`): whatever answers on that port gets our
requests and acts with our cloud credentials.

SkyPilot's server listens on a second port it derives from its own: its request-queue manager, in
[50000, 60000) (`queue_manager_port`). It checks that port, then binds it ~10 s later from a child
process; a port taken meanwhile kills the child and leaves the server waiting on whatever answers there,
never healthy (seen in CI). So `up` refuses a busy queue port too, `free_api_port` picks a port whose
queue port is free, and the emulated cloud keeps ephemeral ports out of that range (emulator.py).

Owner death: the server gets SIGTERM from the kernel (parent-death signal) and exits, but its request
executors do not (measured: they outlive it indefinitely, re-parented to init). So a small reaper
(`python -m llmpyramid.cloud.api_server reap ...`, a managed service of its own) keeps the current
list of the server's family and, when the owner dies, stops every member still alive by identity.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import psutil

from llmpyramid.config import patched_environ
from llmpyramid.errors import InfrastructureError
from llmpyramid.ports import free_port, port_is_free, require_free
from llmpyramid.procs import (
    ManagedService,
    ProcessIdentity,
    ServiceState,
    foreign_listener,
    in_family,
    stop_event_on_signals,
    stop_process,
)

NAME = "skypilot-api-server"
REAPER = f"{NAME}-reaper"
HOST = "127.0.0.1"
PORT_ENV = "SKYPILOT_API_SERVER_LOCAL_PORT"  # both SkyPilot's client and server honour it
NO_LOCAL_SERVER_ENV = "SKYPILOT_DISABLE_LOCAL_API_SERVER"  # the client refuses to start one


def argv(port: int, host: str = HOST) -> list[str]:
    """The command line SkyPilot's client uses for a local server (see tests/unit/test_cloud.py)."""
    from sky.server import common

    return [sys.executable, *common.API_SERVER_CMD.split(), f"--host={host}", f"--port={port}"]


def server_env(base: Mapping[str, str]) -> dict[str, str]:
    from sky.skylet import constants

    return {**base, constants.ENV_VAR_IS_SKYPILOT_SERVER: "true"}


def queue_manager_port(port: int) -> int:
    """The port SkyPilot's server on `port` gives its request-queue manager: SkyPilot's rule
    (`sky.server.requests.queues.mp_queue.get_queue_manager_port`), written out because importing SkyPilot
    fixes its paths from HOME, and the emulated cloud picks the port before it sets HOME (a unit test holds
    this copy to SkyPilot's function)."""
    default_server_port, default_queue_port = 46580, 50011
    return 50000 + (default_queue_port - 50000 + port - default_server_port) % 10000


def free_api_port(attempts: int = 100) -> int:
    """A free loopback port for a server whose queue-manager port is free as well."""
    for _ in range(attempts):
        port = free_port(HOST)
        if port_is_free(queue_manager_port(port), HOST):
            return port
    raise InfrastructureError(f"no free port for a SkyPilot API server and its queue manager in {attempts} tries")


def healthy(url: str, timeout: float = 2.0) -> bool:
    """A SkyPilot API server answers `healthy` at `url` (what the client checks before using it)."""
    try:
        response = httpx.get(f"{url}/api/health", timeout=timeout)
        return response.status_code == 200 and response.json().get("status") == "healthy"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


class ApiServer:
    """One SkyPilot API server on 127.0.0.1:`port`, its state and log in `run_dir`."""

    def __init__(self, run_dir: Path, port: int, *, startup_timeout: float = 180.0, stop_grace: float = 10.0):
        self.service = ManagedService(NAME, run_dir, stop_grace=stop_grace)
        self.reaper = ManagedService(REAPER, run_dir, stop_grace=stop_grace)
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.startup_timeout = startup_timeout

    def up(self, env: Mapping[str, str], *, owner_pid: int) -> ServiceState:
        """Start it with `env` (SkyPilot's server keeps the environment it starts with) and wait until
        it is healthy; a server that dies or stays unhealthy is stopped and is exit 2."""
        with self.service.locked():
            if (running := self.service.running()) is not None:
                raise InfrastructureError(f"a SkyPilot API server is already running from {self.service.run_dir} "
                                          f"(pid {running.pid})")  # fmt: skip
            for port in (self.port, queue_manager_port(self.port)):
                require_free(port, HOST)
            proc, state = self.service.spawn(argv(self.port), env=server_env(env), owner_pid=owner_pid,
                                             extra={"port": self.port})  # fmt: skip
        try:
            with self.reaper.locked():
                self.reaper.spawn(reaper_argv(owner_pid, state.identity, self.service.stop_grace), owner_pid=owner_pid)
            deadline = time.monotonic() + self.startup_timeout
            while not healthy(self.url):
                if proc.poll() is not None:
                    raise InfrastructureError(f"SkyPilot API server exited with code {proc.returncode} before it "
                                              f"was healthy: {self.service.last_log_line()}")  # fmt: skip
                if time.monotonic() > deadline:
                    raise InfrastructureError(f"SkyPilot API server not healthy after {self.startup_timeout:.0f}s "
                                              f"at {self.url} (log {self.service.log_file}): "
                                              f"{self.service.last_log_line()}")  # fmt: skip
                time.sleep(0.5)
            # healthy from whom? a process that took the port between our check and the server's bind
            if (other := foreign_listener(self.port, lambda p: in_family(p, state.identity))) is not None:
                raise InfrastructureError(f"{self.url} answers healthy, but from {other}, not the SkyPilot API "
                                          f"server started here (pid {state.pid}); stop it and retry")  # fmt: skip
        except BaseException:
            self.down()
            raise
        return state

    def processes(self) -> list[ProcessIdentity]:
        """The server, every process it runs now (request workers, executors) and its reaper: what `down`
        must end."""
        state = self.service.read_state()
        reaper = self.reaper.running()
        found = family_of(state.identity) if state else set()
        return sorted(found | ({reaper.identity} if reaper else set()), key=lambda p: p.pid)

    def down(self) -> bool:
        try:
            return self.service.stop(port=self.port)
        finally:
            self.reaper.stop()


@contextlib.contextmanager
def scope(run_dir: Path) -> Iterator[None]:
    """SkyPilot's API server for one front-door run.

    A remote endpoint (the user's configuration) is used as it is. A server already answering on
    SkyPilot's local URL is used and left alone only if it is identifiably SkyPilot's (see
    `require_skypilot_server`: the user's `sky api start`, the emulated cloud's, one recorded in `run_dir`);
    anything else answering there is refused (exit 2). Otherwise this run starts one on SkyPilot's local
    port as a managed service owned by this process, and stops it (and its workers) at the end. SkyPilot
    prints its progress on stdout; inside the scope it goes to stderr, so a front door's stdout carries
    only its JSON document."""
    from sky.server import common

    url = common.get_server_url()
    server = None
    if common.is_api_server_local(url):
        port = common.get_local_api_server_port()
        if healthy(url):
            require_skypilot_server(url, port, run_dir)
        else:
            server = ApiServer(run_dir, port)
            server.up(os.environ, owner_pid=os.getpid())
    try:
        with patched_environ({NO_LOCAL_SERVER_ENV: "1"}), contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if server is not None:
            server.down()


def is_skypilot_server(proc: psutil.Process) -> bool:
    """`proc` runs SkyPilot's API server module (`python -m sky.server.server ...`, however it was started:
    SkyPilot's client, `sky api start`, ApiServer) or is one of its descendants (e.g. a worker holding its socket)."""
    from sky.server import common

    module = common.API_SERVER_CMD.split()  # ["-m", "sky.server.server"]
    try:
        chain = [proc, *proc.parents()]
    except psutil.Error:
        return False
    for member in chain:
        with contextlib.suppress(psutil.Error):
            args = member.cmdline()
            if args[1 : 1 + len(module)] == module:
                return True
    return False


def require_skypilot_server(url: str, port: int, run_dir: Path) -> None:
    """Refuse (exit 2) a server answering healthy on SkyPilot's local `port` unless the process listening
    there is SkyPilot's API server, or the server recorded in `run_dir` with its identity (pid + start time
    + argv): whatever answers gets our requests and acts with our cloud credentials.

    The argv rule stops an accident (any service on that port), not a hostile local process, which can
    name itself anything."""
    from sky.server import common

    recorded = ManagedService(NAME, run_dir).read_state()
    mine = recorded.identity if recorded and recorded.extra.get("port") == port else None

    def ours(proc: psutil.Process) -> bool:
        return (mine is not None and in_family(proc, mine)) or is_skypilot_server(proc)

    if (other := foreign_listener(port, ours)) is not None:
        raise InfrastructureError(f"refusing the SkyPilot API server at {url}: it is answered by {other}, which "
                                  f"is not SkyPilot's server (python {common.API_SERVER_CMD}); stop it, or set "
                                  f"{PORT_ENV} to a free port so this run starts its own")  # fmt: skip


# --- the reaper: the server's family does not outlive the owner ---------------------------------------


def reaper_argv(owner_pid: int, server: ProcessIdentity, grace: float) -> list[str]:
    return [sys.executable, "-m", __name__, "reap", "--owner-pid", str(owner_pid), "--pid", str(server.pid),
            "--create-time", repr(server.create_time), "--grace", str(grace)]  # fmt: skip


def family_of(server: ProcessIdentity) -> set[ProcessIdentity]:
    proc = server.process()
    if proc is None:
        return set()
    found = {server}
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            found.add(ProcessIdentity.of(child.pid))
    return found


def reap(owner_pid: int, server: ProcessIdentity, grace: float, poll: float = 0.5) -> int:
    """Track the server's family until the owner dies (or we are told to stop), then stop every member
    that is still the same process. The list is kept current: once the server is gone, its orphans can no
    longer be found as its descendants."""
    stop = stop_event_on_signals()
    known: set[ProcessIdentity] = set()
    while not stop.is_set() and psutil.pid_exists(owner_pid):
        current = {p for p in known if p.alive()} | family_of(server)
        if {p.pid for p in current} != {p.pid for p in known}:
            print(f"reaper: watching pids {sorted(p.pid for p in current)}", flush=True)
        known = current
        stop.wait(poll)
    left = sorted((p for p in known if p.alive()), key=lambda p: p.pid)
    print(f"reaper: stopping pids {[p.pid for p in left]}", flush=True)
    for member in left:
        if member.alive():
            stop_process(member.pid, grace)
    return 0


def main(args: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmpyramid.cloud.api_server", description="see the module docstring")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reap")
    r.add_argument("--owner-pid", type=int, required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--create-time", type=float, required=True)
    r.add_argument("--grace", type=float, default=10.0)
    ns = ap.parse_args(args)
    try:
        server = ProcessIdentity(ns.pid, ns.create_time, tuple(psutil.Process(ns.pid).cmdline()))
    except psutil.Error:
        return 0  # the server is already gone: nothing to watch
    return reap(ns.owner_pid, server, ns.grace)


if __name__ == "__main__":
    sys.exit(main())
