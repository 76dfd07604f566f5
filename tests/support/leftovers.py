"""Leftover check by inheritance, not by name: every process a front door starts inherits the run's
LLMPYRAMID_TEST_TAG; the leftovers are the tagged processes started after the test began (other runs
share this machine, so names prove nothing)."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from llmpyramid.procs import processes_with_env

TAG_ENV = "LLMPYRAMID_TEST_TAG"


def with_env(name: str, value: str, since: float | None = None) -> list[psutil.Process]:
    """THE leftover detector (llmpyramid.procs.processes_with_env): what a run that set name=value left."""
    return processes_with_env(name, value, since)


def tagged(tag: str, since: float) -> list[psutil.Process]:
    return with_env(TAG_ENV, tag, since)


def commands(procs: list[psutil.Process]) -> list[str]:
    cmds = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            cmds.append(" ".join(p.cmdline()))
    return cmds


@dataclass
class TaggedRun:
    proc: subprocess.Popen[str]
    tag: str
    since: float
    stdout: str | None = None

    def processes(self) -> list[psutil.Process]:
        return tagged(self.tag, self.since)

    def wait_until(self, reached: Callable[[list[psutil.Process]], bool], poll_s: float = 0.1) -> bool:
        """Wait until `reached` holds for the run's processes or the run ends; True if reached.

        No wall-clock window: a slow core only makes this slower, and the test's timeout bounds it."""
        while self.proc.poll() is None:
            if reached(self.processes()):
                return True
            time.sleep(poll_s)
        return False

    def interrupt(self, sig: int) -> tuple[str, float, list[psutil.Process]]:
        """Send `sig`, wait for the front door to exit: its stderr, seconds to exit, what it left running.
        Its stdout (when piped) is kept in `self.stdout`: a traceback may land on either stream."""
        self.proc.send_signal(sig)
        started = time.monotonic()
        self.stdout, err = self.proc.communicate()
        took = time.monotonic() - started
        return err, took, self.left_after_exit()

    def left_after_exit(self) -> list[psutil.Process]:
        """What is still running once the front door has exited: its grandchildren (pytest's workers, the
        servers they own) get 90 s for their own bounded teardown, which on a busy box outlasts the exit
        (under two CPU burners one was still exiting after 30 s: gone, but past the old bound)."""
        left = self.processes()
        for _ in range(450):
            if not left:
                break
            time.sleep(0.2)
            left = self.processes()
        return left


@contextlib.contextmanager
def tagged_run(argv: Sequence[str], *, cwd: Path, env: dict[str, str], **popen: object) -> Iterator[TaggedRun]:
    """Start a front door with a fresh tag; whatever happens in the test, nothing it started outlives it
    (a failed test must not leave a pipeline running beside the next one)."""
    tag = uuid.uuid4().hex
    since = time.time()
    proc = subprocess.Popen(list(argv), cwd=cwd, env={**env, TAG_ENV: tag}, text=True, **popen)
    run = TaggedRun(proc, tag, since)
    try:
        yield run
    finally:
        for child in run.processes():
            with contextlib.suppress(psutil.Error):
                child.kill()
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            proc.communicate(timeout=30)
