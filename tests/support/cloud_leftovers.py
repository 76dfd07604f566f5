"""Leftover check for the emulated cloud, by identity and inheritance, not by name: the processes the
emulator reported (pid + start time + argv) and any process whose environment carries the emulator's
private HOME (everything SkyPilot runs for it inherits that; other runs share this machine)."""

from __future__ import annotations

import contextlib
import stat
import time

import psutil

from llmpyramid.cloud.emulator import EmulatedAWS
from llmpyramid.procs import ProcessIdentity
from tests.support.leftovers import with_env


def assert_all_stopped(aws: EmulatedAWS, started: list[ProcessIdentity], timeout: float = 0.0) -> None:
    """Nothing the emulator started is left: not one of `started` (pid + start time + argv: moto, SkyPilot's
    API server, its workers, its reaper), and no process at all running with the emulator's private HOME.
    Its run directory is private: 0700, state and logs 0600."""
    names = {" ".join(p.argv) for p in started}
    assert len(started) >= 3 and any("moto" in n or "emulators.runner aws" in n for n in names), names
    assert any("sky.server.server" in n for n in names), names
    deadline = time.monotonic() + timeout
    while (left := [p for p in started if p.alive()]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"still running after the emulated cloud stopped: {[(p.pid, p.argv[:3]) for p in left]}"
    assert same_home(aws) == [], "processes with the emulator's HOME outlived it"
    assert stat.S_IMODE(aws.run_dir.stat().st_mode) == 0o700
    files = sorted(aws.run_dir.iterdir())
    assert {f.name for f in files} >= {"aws.log", "skypilot-api-server.log", "skypilot-api-server-reaper.log"}
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}


def same_home(aws: EmulatedAWS) -> list[tuple[int, list[str]]]:
    """Processes (other than this one) whose environment has the emulator's HOME: SkyPilot's, whoever
    started them."""
    found = []
    for proc in with_env("HOME", str(aws.home)):
        with contextlib.suppress(psutil.Error):
            found.append((proc.pid, proc.cmdline()))
    return found
