"""The test session's own interrupt rules (tests/conftest.py), proven on a child pytest that loads them: an
interrupted xdist controller tells its workers at once, and once interrupted no further test starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from llmpyramid.cli import INTERRUPTED_EXIT
from llmpyramid.config import PROJECT_ROOT
from tests.support.leftovers import tagged_run

CHILD_PYTEST = (sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}


WAITING_TESTS = """
import os, pathlib, time

def _wait_for_the_interrupt(name):
    pathlib.Path(f"{name}.started").write_text(str(os.getpid()))
    try:
        time.sleep(300)
    except KeyboardInterrupt as exc:
        pathlib.Path(f"{name}.interrupted").write_text(str(exc))
        raise

def test_one():
    _wait_for_the_interrupt("one")

def test_two():
    _wait_for_the_interrupt("two")
"""


def test_an_interrupted_controller_tells_its_workers_at_once(tmp_path: Path) -> None:
    """Left alone, a worker hears of it only from execnet's own SIGINT, 5 s into the controller's shutdown
    (and meanwhile goes on with its tests): here each is interrupted by the controller's SIGTERM."""
    (tmp_path / "test_waiting.py").write_text(WAITING_TESTS)
    argv = (*CHILD_PYTEST, "-n", "2", "--dist", "load", "test_waiting.py")
    with tagged_run(argv, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
        both_started = run.wait_until(lambda _: all((tmp_path / f"{n}.started").exists() for n in ("one", "two")))
        assert both_started, run.proc.communicate()
        err, _, left = run.interrupt(signal.SIGTERM)
    assert run.proc.returncode == INTERRUPTED_EXIT, (run.stdout, err)
    told = {n: (tmp_path / f"{n}.interrupted").read_text() for n in ("one", "two")}
    assert told == {"one": f"signal {signal.SIGTERM}", "two": f"signal {signal.SIGTERM}"}
    assert not left


SWALLOWING_TESTS = """
import pathlib, signal, time
import pytest

def test_a_catches_the_interrupt():  # an interrupt test of its own, expecting a KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)
        time.sleep(300)

def test_b_after_it():
    pathlib.Path("b.started").write_text("")
"""


def test_once_interrupted_no_further_test_starts(tmp_path: Path) -> None:
    (tmp_path / "test_swallowing.py").write_text(SWALLOWING_TESTS)
    done = subprocess.run([*CHILD_PYTEST, "-p", "no:xdist", "test_swallowing.py"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == INTERRUPTED_EXIT, done.stdout + done.stderr
    assert not (tmp_path / "b.started").exists()
