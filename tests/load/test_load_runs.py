"""The load layer for real, against the embedded llama.cpp stack (or BASE_URL): short runs of every
front door, shape and fault from the load issue, each ending with a process check that no locust
process of the run is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llmpyramid.config import PROJECT_ROOT, StackSettings
from llmpyramid.ports import free_port
from llmpyramid.stack import EmbeddedStack, Target, target_from_env

pytestmark = [pytest.mark.load, pytest.mark.slow]

LOCUSTFILE = str(PROJECT_ROOT / "tests" / "locustfile.py")
SHORT = {"LOAD_MAX_TOKENS": "8", "LOAD_MIX": "chat_stream=3,completion_stream=1,chat=1,completion=1"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    given = target_from_env()
    if given is not None:
        yield given
        return
    stack = EmbeddedStack(StackSettings.from_env(port=0, run_dir=tmp_path_factory.mktemp("stack")))
    state = stack.up(owner_pid=os.getpid())
    try:
        yield state.target()
    finally:
        stack.down()


def _env(results: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOAD_", "SLO_"))}
    return {**env, **SHORT, "LOAD_RESULTS_DIR": str(results), "PYTHONUNBUFFERED": "1", **extra}


def _ours(results: Path) -> list[psutil.Process]:
    """Live processes started for this run (they carry its LOAD_RESULTS_DIR)."""
    found = []
    for p in psutil.process_iter():
        try:
            mine = p.pid != os.getpid() and p.environ().get("LOAD_RESULTS_DIR") == str(results)
            if mine and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def assert_nothing_left(results: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while _ours(results) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [" ".join(p.cmdline()[:6]) for p in _ours(results)]
    assert not left, f"processes left behind: {left}"


def front_door(results: Path, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "llmpyramid.load", "--results-dir", str(results), *args]
    return subprocess.run(cmd, env=_env(results, **env), capture_output=True, text=True, timeout=timeout)


def results_of(results: Path) -> dict:
    return json.loads((results / "load_results.json").read_text())


# --- the seed command ----------------------------------------------------------------------------


def test_seed_locust_command_runs_and_reports_llm_metrics(target: Target, tmp_path: Path) -> None:
    """`locust -f tests/locustfile.py --headless -u 10 -r 2 -t 60s --json`, 15 s here."""
    cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "10", "-r", "2", "-t", "15s",
           "--json"]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(tmp_path, BASE_URL=target.base_url), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(proc.stdout)  # locust's own --json on stdout
    assert any(e["method"] == "POST" and e["num_requests"] > 0 for e in stats)
    lt = results_of(tmp_path)["load_test"]
    assert lt["requests"] > 0 and lt["error_rate"] == 0
    assert lt["ttft_p50_ms"] > 0 and lt["itl_p50_ms"] > 0 and lt["output_tokens_per_second"] > 0
    assert lt["output_tokens_source"] == "usage"  # counted by the server, not re-tokenised
    assert lt["shape"] == {"type": "constant_users", "users": 10, "spawn_rate": 2.0, "duration_seconds": 15.0}
    assert (tmp_path / "load_over_time.png").stat().st_size > 1000
    assert "LLM load:" in proc.stderr
    assert_nothing_left(tmp_path)


# --- bad input and faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-u", "0"], "users must be >= 1"),
        (["--duration=-5s"], "duration must be a positive time span"),
        (["--shape", "zigzag"], "unknown load shape 'zigzag'"),
    ],
)
def test_bad_input_exits_3_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = front_door(tmp_path, *args, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert_nothing_left(tmp_path)


def test_malformed_slo_file_exits_3(tmp_path: Path) -> None:
    slo = tmp_path / "slo.toml"
    slo.write_text("[slo]\np95_latency_ms = \n")
    proc = front_door(tmp_path, "--slo-file", str(slo), timeout=60)
    assert proc.returncode == 3 and proc.stderr.startswith("error: SLO file") and proc.stderr.count("\n") == 1
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["-u", "0", "-t", "5s"], {}, "error: users must be >= 1, got 0"),
        (["-t=-5s"], {}, "error: locust: argument -t/--run-time: Invalid time span"),
        (["-t", "5s"], {"LOAD_SHAPE": "zigzag"}, "error: unknown load shape 'zigzag'"),
        (["-t", "5s"], {"SLO_P95_LATENCY_MS": "fast"}, "error: environment: SLO p95_latency_ms must be a number"),
    ],
)
def test_raw_locust_bad_input_exits_3(target: Target, tmp_path: Path, args: list, env: dict, message: str) -> None:
    cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", *args]
    proc = subprocess.run(cmd, env=_env(tmp_path, BASE_URL=target.base_url, **env), capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-1000:]
    assert message in proc.stderr
    assert_nothing_left(tmp_path)


def test_unreachable_target_exits_2(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = front_door(tmp_path, "--base-url", url, "-t", "5", timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: target {url} is not reachable")
    raw = subprocess.run([sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-t", "5s", "--host", url],
                         env=_env(tmp_path), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert raw.returncode == 2 and "is not reachable" in raw.stderr
    assert_nothing_left(tmp_path)


def test_server_dying_mid_run_still_writes_results_and_fails(tmp_path: Path) -> None:
    stack = EmbeddedStack(StackSettings.from_env(port=0, run_dir=tmp_path / "stack"))
    state = stack.up(owner_pid=os.getpid())
    results = tmp_path / "results"
    try:
        cmd = [sys.executable, "-m", "llmpyramid.load", "--base-url", state.base_url, "-u", "4", "-r", "4",
               "-t", "14", "--results-dir", str(results)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=_env(results), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(7)
        psutil.Process(state.pid).kill()  # the server dies without a goodbye
        _, err = proc.communicate(timeout=120)
    finally:
        stack.down()
    assert proc.returncode == 1, err
    lt = results_of(results)["load_test"]
    assert lt["error_rate"] > 0 and lt["failures"] > 0
    assert any("connection" in e or "broken stream" in e for e in lt["errors"])
    assert "error rate" in err
    assert_nothing_left(results)


def test_ctrl_c_stops_master_and_workers(target: Target, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "llmpyramid.load", "--base-url", target.base_url, "--workers", "2", "-u", "2",
           "-t", "120", "--results-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_ours(tmp_path)) < 4 and time.monotonic() < deadline:  # front door + master + 2 workers
        time.sleep(0.2)
    assert len(_ours(tmp_path)) >= 4
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert_nothing_left(tmp_path)


def test_killed_front_door_takes_master_and_workers_with_it(target: Target, tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: the kernel's parent-death signal must stop locust."""
    cmd = [sys.executable, "-m", "llmpyramid.load", "--base-url", target.base_url, "--workers", "2", "-u", "2",
           "-t", "120", "--results-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_ours(tmp_path)) < 4 and time.monotonic() < deadline:  # front door + master + 2 workers
            time.sleep(0.2)
        assert len(_ours(tmp_path)) >= 4
        time.sleep(2)
    finally:
        proc.kill()
        proc.wait()
    try:
        assert_nothing_left(tmp_path, timeout=30)
    finally:
        for p in _ours(tmp_path):  # a failing check must not leave the orphans running
            p.kill()


# --- shapes, distribution, baseline ---------------------------------------------------------------


def test_distributed_run_has_the_same_result_shape(target: Target, tmp_path: Path) -> None:
    local, dist = tmp_path / "local", tmp_path / "dist"
    assert front_door(local, "--base-url", target.base_url, "-u", "2", "-r", "2", "-t", "8").returncode == 0
    proc = front_door(dist, "--base-url", target.base_url, "-u", "2", "-r", "2", "-t", "8", "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = results_of(local)["load_test"], results_of(dist)["load_test"]
    assert set(a) == set(b) and b["workers"] == 2 and b["requests"] > 0
    assert (dist / "locust_report.html").stat().st_size > 10_000
    assert_nothing_left(local)
    assert_nothing_left(dist)


def test_scaling_sweep_reports_levels_and_a_knee(target: Target, tmp_path: Path) -> None:
    proc = front_door(tmp_path, "--base-url", target.base_url, "--shape", "sweep", "--sweep-step", "5",
                      "--sweep-max-users", "4")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = results_of(tmp_path)["load_test"]["sweep"]
    assert [lv["users"] for lv in sweep["levels"]][:2] == [1, 2]
    assert "reason" in sweep["knee"]
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert "LLM load sweep: " in proc.stderr
    assert_nothing_left(tmp_path)


def test_constant_arrival_rate(target: Target, tmp_path: Path) -> None:
    proc = front_door(tmp_path, "--base-url", target.base_url, "--shape", "rate", "--rate", "2", "-t", "10")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lt = results_of(tmp_path)["load_test"]
    assert lt["shape"]["type"] == "constant_arrival_rate"
    assert 8 <= lt["requests"] <= 22  # 2/s for 10 s, minus what is still in flight at the end
    assert_nothing_left(tmp_path)


def test_baseline_regression_fails_naming_the_metric(target: Target, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"load_test": {"requests_per_second": 1000.0, "error_rate": 0.0}}))
    proc = front_door(tmp_path / "r", "--base-url", target.base_url, "-u", "2", "-t", "6", "--baseline",
                      str(baseline), "--tolerance", "0.2")  # fmt: skip
    assert proc.returncode == 1
    assert "baseline regression: requests/s" in proc.stderr
    assert results_of(tmp_path / "r")["exit_code"] == 1
    assert_nothing_left(tmp_path / "r")


def test_slo_violation_names_metric_measured_and_threshold(target: Target, tmp_path: Path) -> None:
    proc = front_door(tmp_path, "--base-url", target.base_url, "-u", "2", "-t", "6", SLO_TTFT_P95_MS="0.001")
    assert proc.returncode == 1
    assert "FAIL: TTFT p95 " in proc.stderr and "> threshold 0.001ms" in proc.stderr
    assert_nothing_left(tmp_path)
