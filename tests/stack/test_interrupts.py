"""Ctrl-C and SIGTERM from every front door end with exit 130 and leave nothing behind.

Each run gets an environment tag that every process it starts inherits; leftovers are the tagged
processes started after the test began (not matched by name: other runs share this machine).
The signal lands mid-suite, once pytest is running against the embedded stack it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from leftovers import tagged

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)

ENTRIES = {
    "uv run nox -s smoke": ["uv", "run", "--frozen", "nox", "-s", "smoke"],
    "nox -s smoke": [sys.executable, "-m", "nox", "-s", "smoke"],  # nox itself, no uv in front
    "run_tests.py --suite smoke": [sys.executable, "scripts/run_tests.py", "--suite", "smoke"],
}


def _server_running(procs: list[psutil.Process]) -> bool:
    return any("llmpyramid.stack.server" in " ".join(p.cmdline()) for p in procs if p.is_running())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_interrupt_mid_suite_exits_130_and_leaves_nothing(entry, sig, tmp_path):
    tag = uuid.uuid4().hex
    env = {**os.environ, "LLMPYRAMID_TEST_TAG": tag, "SMOKE_LATENCY_SAMPLES": "200"}  # a suite still running
    env.pop("BASE_URL", None)
    since = time.time()
    proc = subprocess.Popen(ENTRIES[entry], cwd=ROOT, env=env, text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None and not _server_running(tagged(tag, since)):
        time.sleep(0.2)
    assert proc.poll() is None, f"{entry} ended before the signal: {proc.communicate()[1][-2000:]}"
    time.sleep(2)  # inside the suite
    proc.send_signal(sig)
    started = time.monotonic()
    _, err = proc.communicate(timeout=300)
    took = time.monotonic() - started
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err.split("Interrupted")[-1]
    left: list[psutil.Process] = []
    for _ in range(50):
        left = tagged(tag, since)
        if not left:
            break
        time.sleep(0.2)
    assert not left, [" ".join(p.cmdline())[:120] for p in left]
    print(f"{entry} {sig.name}: exit 130 after {took:.1f}s, 0 processes left")
