"""The emulated cloud's own services: SkyPilot's client uses the API server we started (it never
daemonizes one), and nothing outlives the emulator — not when it ends (conftest checks that for the
session), and not when its owner is killed outright.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from llmpyramid.cloud import api_server, skypilot
from llmpyramid.cloud.emulator import EPHEMERAL_PORTS, PORT_RANGE_SYSCTL, EmulatedAWS, namespace_is_ours
from llmpyramid.ports import free_port, port_is_free
from llmpyramid.procs import ProcessIdentity
from tests.cloud_emulated.groups import IN_PROCESS
from tests.support.cloud_leftovers import assert_all_stopped, same_home

OWNER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from llmpyramid.cloud import skypilot
    from llmpyramid.cloud.emulator import EmulatedAWS

    with EmulatedAWS(Path(sys.argv[1])) as aws:
        skypilot.status(None, 180)  # a request: SkyPilot's executors are busy
        print(json.dumps([[p.pid, p.create_time, list(p.argv)] for p in aws.processes()]), flush=True)
        sys.stdin.read()  # until killed
""")


@IN_PROCESS
def test_skypilots_client_talks_to_the_server_we_started(emulated_aws):
    from sky.server import common

    assert emulated_aws.sky_api is not None
    skypilot.status(None, 180)  # a request through whichever server the client picks
    assert common.get_server_url() == emulated_aws.sky_api.url
    ours = {(p.pid, p.create_time) for p in emulated_aws.processes()}
    theirs = same_home(emulated_aws)  # everything that runs with the emulator's HOME
    assert any("sky.server.server" in " ".join(cmd) for _, cmd in theirs), theirs
    strays = [(pid, cmd) for pid, cmd in theirs if (pid, ProcessIdentity.of(pid).create_time) not in ours]
    assert strays == [], "a SkyPilot process that is not ours: the client started a server of its own"


@IN_PROCESS
def test_no_ephemeral_port_can_take_skypilots_queue_manager_port(emulated_aws):
    """SkyPilot's server binds its queue manager late, on a port derived from its own (CI once saw an API server
    never get healthy because that port was taken meanwhile): in our namespace ephemeral ports stay below it.
    A namespace this run did not create (the user's own) is left as it is, so there is nothing to prove."""
    if not namespace_is_ours():
        pytest.skip("not in a network namespace this run created: its ephemeral port range is left alone")
    assert emulated_aws.sky_api is not None
    assert tuple(int(x) for x in PORT_RANGE_SYSCTL.read_text().split()) == EPHEMERAL_PORTS
    queue_port = api_server.queue_manager_port(emulated_aws.sky_api.port)
    assert not port_is_free(queue_port, api_server.HOST), "SkyPilot's queue manager listens where we expect it"
    assert queue_port > EPHEMERAL_PORTS[1] >= max(free_port() for _ in range(200))


def _owner_processes(owner: subprocess.Popen[str]) -> list[ProcessIdentity]:
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line, f"the owner exited ({owner.wait()}) before its emulator was up"
    return [ProcessIdentity(pid, created, tuple(argv)) for pid, created, argv in json.loads(line)]


@pytest.mark.timeout(600)
@IN_PROCESS
def test_nothing_outlives_an_owner_killed_with_sigkill(emulated_aws, tmp_path):
    """No teardown runs: moto follows its owner (parent-death signal + watchdog), SkyPilot's server gets the
    parent-death signal, and the reaper stops the server's executors, which would otherwise live on."""
    root = tmp_path / "owned"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(root)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        started = _owner_processes(owner)
        assert len(started) > 3, "moto, the server and its reaper, plus the server's workers"
        aws = EmulatedAWS(root)  # not entered: names the owner's paths
        reaper_log = aws.run_dir / "skypilot-api-server-reaper.log"
        skypilots = [p for p in started if not any(a.startswith("llmpyramid.") for a in p.argv)]

        def watched() -> bool:  # every SkyPilot process still alive (a request's executor may come and go)
            alive = {p.pid for p in skypilots if p.alive()}
            return bool(alive) and any(alive <= _pids(line) for line in reaper_log.read_text().splitlines())

        wait_for(watched, "the reaper never watched the server's family")
        owner.kill()
        owner.wait()
        assert_all_stopped(aws, started, timeout=120)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def _pids(line: str) -> set[int]:
    if not line.startswith("reaper: watching pids ["):
        return set()
    return {int(x) for x in line.split("[", 1)[1].rstrip("]").split(",") if x.strip()}


def wait_for(predicate, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
