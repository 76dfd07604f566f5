"""Pipelines for real: `invoke staging` with the offline local provisioner (a real embedded stack standing
in for the CPX31 VM, really started and stopped), its combined report, and interrupts at any step.

Leftovers are found by an environment tag every process the pipeline starts inherits (not by name:
other runs share this machine), among processes started after the test began.
"""

from __future__ import annotations

import json
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

from llmpyramid import pipelines

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)


def _staging(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str, float]:
    tag = uuid.uuid4().hex
    env = {**os.environ, "LLMPYRAMID_TEST_TAG": tag, "STAGING_PROVISIONER": "local",
           "PIPELINE_RESULTS_DIR": str(tmp_path / "results")}  # fmt: skip
    env.pop("BASE_URL", None)
    since = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "staging", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    return proc, tag, since


def test_offline_staging_provisions_tests_reports_and_tears_down(tmp_path):
    proc, tag, since = _staging(tmp_path, "--output", "json")
    out, err = proc.communicate(timeout=840)
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(out)
    pipelines.validate(report)
    assert [s["step"] for s in report["steps"]] == ["smoke", "integration", "contract", "load"]
    assert all(s["status"] == "passed" for s in report["steps"]), report["steps"]
    assert report["provision"]["kind"] == "local" and report["provision"]["pid"]
    assert report["target"].startswith("http://127.0.0.1:")
    for step in report["steps"]:
        assert step["results_file"] and Path(step["results_file"]).exists(), step
    assert json.loads((tmp_path / "results" / "pipeline-staging.json").read_text()) == report
    assert not psutil.pid_exists(report["provision"]["pid"]), "the staging stand-in outlived the pipeline"
    assert not tagged(tag, since)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_staging_exits_130_and_leaves_nothing(tmp_path, sig):
    proc, tag, since = _staging(tmp_path)
    deadline = time.monotonic() + 300
    # land mid-step: once the smoke session's pytest runs against the stand-in
    while time.monotonic() < deadline and not any("pytest" in " ".join(p.cmdline()) for p in tagged(tag, since)):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    started = time.monotonic()
    _, err = proc.communicate(timeout=180)
    took = time.monotonic() - started
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted")
    left = []
    for _ in range(50):  # children finish their own teardown within the bounded grace
        left = tagged(tag, since)
        if not left:
            break
        time.sleep(0.2)
    assert not left, [" ".join(p.cmdline())[:120] for p in left]
    print(f"{sig.name}: exit 130 after {took:.1f}s, 0 processes left")
