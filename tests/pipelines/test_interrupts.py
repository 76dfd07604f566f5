"""Ctrl-C and SIGTERM from every front door end with exit 130 and leave nothing behind.

Each run gets an environment tag that every process it starts inherits; leftovers are the tagged
processes started after the test began (not matched by name: other runs share this machine).
The signal lands mid-suite: once the embedded stack is up and the smoke suite's pytest has started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from llmpyramid.layers import REPORT_DIR_ENV, STEP_RESULTS_FILE
from tests.support.leftovers import commands, tagged_run

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)

ENTRIES = {
    "uv run nox -s smoke": ["uv", "run", "--frozen", "nox", "-s", "smoke"],
    "nox -s smoke": [sys.executable, "-m", "nox", "-s", "smoke"],  # nox itself, no uv in front
    "run_tests.py --suite smoke": [sys.executable, "scripts/run_tests.py", "--suite", "smoke",
                                   "--results-file", "{report_dir}/" + STEP_RESULTS_FILE],
    # a pipeline whose steps run side by side: the signal must reach every running session
    "invoke local": [sys.executable, "-m", "invoke", "local"],
}  # fmt: skip


def _suite_running(procs: list[psutil.Process]) -> bool:
    """The smoke suite is under way: its server is up and the pytest running against it has started."""
    cmds = commands(procs)
    return any("llmpyramid.stack.server" in c for c in cmds) and any("pytest tests/test_smoke.py" in c for c in cmds)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_interrupt_mid_suite_exits_130_and_leaves_nothing(entry, sig, tmp_path):
    # a suite still running; its results document goes to this test's directory (the noxfile and
    # run_tests.py both write there), never into the work tree's results/
    env = {**os.environ, "SMOKE_LATENCY_SAMPLES": "200", REPORT_DIR_ENV: str(tmp_path),
           "PIPELINE_RESULTS_DIR": str(tmp_path)}  # fmt: skip
    env.pop("BASE_URL", None)
    argv = [arg.format(report_dir=tmp_path) for arg in ENTRIES[entry]]
    with tagged_run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
        reached = run.wait_until(_suite_running, poll_s=0.2)
        assert reached, f"{entry} ended before the signal: {run.proc.communicate()[1][-2000:]}"
        err, took, left = run.interrupt(sig)
    assert run.proc.returncode == 130, err[-2000:]
    for stream in (run.stdout or "", err):  # pytest's own traceback would be on stdout
        assert "Traceback" not in stream.split("Interrupted")[-1], stream[-2000:]
    assert not left, commands(left)
    print(f"{entry} {sig.name}: exit 130 after {took:.1f}s, 0 processes left")
