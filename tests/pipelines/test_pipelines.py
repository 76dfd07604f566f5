"""Pipelines for real: `invoke staging` with the offline local provisioner (a real embedded stack standing
in for the CPX31 VM, really started and stopped), its combined report, and interrupts at any step.

Leftovers are found by an environment tag every process the pipeline starts inherits (not by name:
other runs share this machine), among processes started after the test began.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from llmpyramid import pipelines, results
from llmpyramid.stack.embedded import SERVER_MODULE, fresh_stack
from tests.support.leftovers import TaggedRun, commands, tagged_run

ROOT = Path(__file__).resolve().parents[2]
# Generous: under two CPU burners staging needs ~10 min to reach its load step. The timeout is the
# only bound; a failed test still stops everything the pipeline started (tagged_run).
pytestmark = pytest.mark.timeout(1800)


# Cheap steps for the interrupt tests: one or two checks per suite (the wiring is what they prove; the
# full staging run above proves every step for real), so reaching the load step costs seconds.
CHEAP_SUITES = "-k 'health_endpoint or invalid_input or models_list'"


def _staging(tmp_path: Path, *args: str, cheap: bool = False) -> contextlib.AbstractContextManager[TaggedRun]:
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "STAGING_PROVISIONER": "local", "PIPELINE_RESULTS_DIR": str(tmp_path / "results"),
           "TMPDIR": str(tmp_path / "tmp"), **({"PYTEST_ADDOPTS": CHEAP_SUITES} if cheap else {})}  # fmt: skip
    env.pop("BASE_URL", None)
    argv = [sys.executable, "-m", "invoke", "staging", *args]
    return tagged_run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_offline_staging_provisions_tests_reports_and_tears_down(tmp_path):
    with _staging(tmp_path, "--output", "json") as run:
        out, err = run.proc.communicate()
        left = run.left_after_exit()
    assert run.proc.returncode == 0, err[-3000:]
    report = json.loads(out)
    pipelines.validate(report)
    assert [s["step"] for s in report["steps"]] == ["smoke", "integration", "contract", "load"]
    assert all(s["status"] == "passed" for s in report["steps"]), report["steps"]
    assert report["provision"]["kind"] == "local" and report["provision"]["pid"]
    assert report["target"].startswith("http://127.0.0.1:")
    for step in report["steps"]:
        assert step["results_file"] and Path(step["results_file"]).exists(), step
    assert json.loads((tmp_path / "results" / "pipeline-staging.json").read_text()) == report
    # the stand-in carries the run's tag like everything the pipeline started: identity, not a bare pid
    assert report["provision"]["pid"] not in {p.pid for p in left}, "the staging stand-in outlived the pipeline"
    assert not left, commands(left)
    assert not list((tmp_path / "tmp").glob("llmpyramid-*"))


def _running(procs: list[psutil.Process], needle: str) -> bool:
    return any(needle in c for c in commands(procs))


# Where to land the signal, read off the processes the pipeline has started so far.
STEP_REACHED = {
    # the stand-in server is starting and no step has begun yet
    "provision": lambda procs: _running(procs, SERVER_MODULE) and not _running(procs, "-m nox"),
    "smoke": lambda procs: _running(procs, "pytest"),  # first step: the smoke session's pytest
    "load": lambda procs: _running(procs, "locust"),  # last step: locust against the stand-in
}


# Both signals take one path once they arrive (SIGTERM is turned into Ctrl-C's KeyboardInterrupt), so the
# expensive last step is interrupted with one of them; the cheap steps with both.
INTERRUPTS = [(step, sig) for step in STEP_REACHED for sig in (signal.SIGINT, signal.SIGTERM)
              if (step, sig) != ("load", signal.SIGINT)]  # fmt: skip


@pytest.mark.parametrize(("step", "sig"), INTERRUPTS, ids=[f"{step}-{sig.name}" for step, sig in INTERRUPTS])
def test_interrupted_staging_exits_130_and_leaves_nothing(tmp_path, step, sig):
    with _staging(tmp_path, cheap=True) as run:
        reached = run.wait_until(STEP_REACHED[step])
        assert reached, f"the pipeline ended before reaching {step}: {run.proc.communicate()[1][-2000:]}"
        err, took, left = run.interrupt(sig)
    assert run.proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted")
    assert not left, commands(left)
    run_dirs = sorted(p.name for p in (tmp_path / "tmp").glob("llmpyramid-*"))  # the stand-in's, the suites'
    assert not run_dirs, f"run directories left behind: {run_dirs}"
    print(f"{step} {sig.name}: exit 130 after {took:.1f}s, 0 processes and 0 run directories left")


def test_preprod_against_an_embedded_stack_reports_the_worst_step(tmp_path):
    """`invoke preprod --base-url` against a real stack that requires an API key: every step runs against it,
    and the pipeline's exit code is the worst step's (here the sustained run fails an SLO nobody meets)."""
    slo = tmp_path / "slo.toml"
    slo.write_text("[slo]\nttft_p95_ms = 0.001\n")
    key = f"preprod-{uuid.uuid4().hex}"
    env = {**os.environ, "API_KEY": key, "PIPELINE_RESULTS_DIR": str(tmp_path / "results"),
           "PREPROD_SLO_FILE": str(slo), "PREPROD_SUSTAINED_DURATION": "6s", "PREPROD_CLOUDS": "none",
           "PREPROD_REPEAT": "2",  # the repeated sustained run, wired for real; 2 cheap runs
           # a short sweep; 5 samples are enough to prove the wiring (the gates have their own tests);
           # cheap suites: the offline staging run above runs every suite for real
           "LOAD_SWEEP_MAX_USERS": "2", "LOAD_SWEEP_STEP": "10", "LOAD_MIN_REQUESTS": "5",
           "PYTEST_ADDOPTS": CHEAP_SUITES}  # fmt: skip
    env.pop("BASE_URL", None)
    with fresh_stack(api_key=key, notify=lambda _m: None) as (target, _stack):
        argv = [sys.executable, "-m", "invoke", "preprod", "--base-url", target.base_url, "--output", "json"]
        with tagged_run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
            out, err = run.proc.communicate()
            left = run.left_after_exit()
    assert key not in out + err, "the API key was printed"
    report = json.loads(out)
    pipelines.validate(report)
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["smoke", "integration", "contract", "load_sweep", "load_sustained"], err[-3000:]
    assert all(steps[s]["status"] == "passed" for s in list(steps)[:4]), report["steps"]
    assert steps["load_sustained"]["status"] == "failed" and steps["load_sustained"]["exit_code"] == 1
    assert "users" in steps["load_sustained"]["note"]  # at the knee, or at the top level if still rising
    sustained = json.loads(Path(steps["load_sustained"]["results_file"]).read_text())
    results.validate(sustained)  # the step's document is the executor's, in the seed's schema
    assert any("ttft" in finding["message"].lower() for finding in sustained["findings"]), sustained["findings"]
    repeated = json.loads((Path(steps["load_sustained"]["results_file"]).parent / "load_results.json").read_text())
    assert repeated["repeat"]["n"] == 2 and "ttft_p95_ms" in repeated["repeat"]["intervals"]
    assert report["exit_code"] == run.proc.returncode == 1
    assert not left, commands(left)
