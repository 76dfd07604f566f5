"""The load layer for real, against one embedded llama.cpp stack that requires an API key (or the
BASE_URL + API_KEY given): every front door, shape and fault, each ending with a check that no
process of the run is left behind.

Verdicts here never depend on the machine's speed: runs end by the number of requests answered
(LOAD_MIN_REQUESTS, with a cap), counts come from what the server completed or from the schedule
the generator logged, and shutdowns get generous limits with the measured time recorded.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from llmpyramid.config import PROJECT_ROOT, StackSettings
from llmpyramid.ports import free_port
from llmpyramid.stack.embedded import EmbeddedStack
from llmpyramid.target import Target, target_from_env
from tests.support.leftovers import with_env

# Above the sum of any one test's own bounded waits (locust up 180 s + mid-run 180 s + shutdown 180 s; a
# server death 60 s + 400 s), so a slow box fails on the wait that names what is slow, not on the timeout.
pytestmark = [pytest.mark.load, pytest.mark.slow, pytest.mark.timeout(600)]

LOCUSTFILE = str(PROJECT_ROOT / "tests" / "locustfile.py")
# short answers, a few requests: enough to prove each point, cheap on a busy 2-core box
SHORT = {"LOAD_MAX_TOKENS": "8", "LOAD_MIX": "chat_stream=3,completion_stream=1,chat=1,completion=1",
         "LOAD_MIN_REQUESTS": "5", "LOAD_PLOTS": "0"}  # fmt: skip
SHUTDOWN_LIMIT_S = 180  # generous: a loaded box is slow to stop; the measured time is recorded


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """BASE_URL (+ API_KEY) if given, else one embedded stack for the module that requires a key."""
    given = target_from_env()
    if given is not None:
        yield given
        return
    key = "sk-load-" + os.urandom(8).hex()
    stack = EmbeddedStack(StackSettings.from_env(port=0, run_dir=tmp_path_factory.mktemp("stack"), api_key=key))
    state = stack.up(owner_pid=os.getpid())
    try:
        yield state.target()
    finally:
        stack.down()


def _env(results: Path, target: Target | None = None, **extra: str) -> dict[str, str]:
    drop = ("API_KEY", "BASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOAD_", "SLO_")) and k not in drop}
    if target is not None:
        env["BASE_URL"] = target.base_url
        if target.api_key:
            env["API_KEY"] = target.api_key
    return {**env, **SHORT, "LOAD_RESULTS_DIR": str(results), "PYTHONUNBUFFERED": "1", **extra}


def _ours(results: Path) -> list[psutil.Process]:
    """Live processes started for this run (they carry its LOAD_RESULTS_DIR)."""
    return with_env("LOAD_RESULTS_DIR", str(results))


def assert_nothing_left(results: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _ours(results) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [" ".join(p.cmdline()[:6]) for p in _ours(results)]
    assert not left, f"processes left behind: {left}"


def front_door(results: Path, *args: str, target: Target | None = None, timeout: float = 400,
               **env: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = [sys.executable, "-m", "llmpyramid.load", "--results-dir", str(results), *args]
    return subprocess.run(cmd, env=_env(results, target, **env), capture_output=True, text=True, timeout=timeout)


def raw_locust(results: Path, *args: str, target: Target | None = None, timeout: float = 400,
               **env: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", *args]
    return subprocess.run(cmd, env=_env(results, target, **env), capture_output=True, text=True, timeout=timeout)


def results_of(results: Path) -> dict:
    return json.loads((results / "load_results.json").read_text())


def wait_for(what: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# --- the seed command ----------------------------------------------------------------------------


def test_seed_locust_command_runs_and_reports_llm_metrics(target: Target, tmp_path: Path) -> None:
    """`locust -f tests/locustfile.py --headless -u 10 -r 2 -t 60s --json`, shorter, default LOAD_MIN_REQUESTS."""
    proc = raw_locust(tmp_path, "-u", "10", "-r", "10", "-t", "5s", "--json", target=target,
                      LOAD_MIN_REQUESTS="", LOAD_PLOTS="1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(proc.stdout)  # locust's own --json on stdout
    assert any(e["method"] == "POST" and e["num_requests"] > 0 for e in stats)
    doc = results_of(tmp_path)
    lt = doc["load_test"]
    assert doc["verdict"] == "passed" and lt["error_rate"] == 0
    assert lt["completed"] >= 20 == lt["min_requests"]  # run on past -t until the default minimum was done
    assert lt["ttft_p50_ms"] > 0 and lt["itl_p50_ms"] > 0 and lt["output_tokens_per_second"] > 0
    assert lt["output_tokens_source"] == "usage"  # counted by the server, not re-tokenised
    assert lt["shape"] == {"type": "constant_users", "users": 10, "spawn_rate": 10.0, "duration_seconds": 5.0}
    assert (tmp_path / "load_over_time.png").stat().st_size > 10_000
    # goodput (no latency SLO here: every completed request counts) and the honest percentiles
    assert lt["goodput_share"] == 1.0 and lt["goodput_rps"] == lt["requests_per_second"]
    assert lt["p95_latency_with_failures_ms"] == lt["p95_latency_ms"] and lt["percentile_note"] is None
    server = doc["server_metrics"]  # llama.cpp's /metrics and /slots, sampled while the run ran
    assert server["status"] == "exposed" and server["slots"] == "exposed" and server["samples"] >= 2
    assert server["peaks"]["requests_processing"] >= 1 and "requests_deferred" in server["series"]
    assert len(server["series"]["t"]) == server["samples"]
    assert (tmp_path / "server_vs_client.png").stat().st_size > 10_000
    page = (tmp_path / "llm_report.html").read_text()
    assert "TTFT p95" in page and "data:image/png;base64," in page and "locust_report.html" in page
    assert "goodput share" in page and "Server metrics" in page and "/metrics, /slots: exposed" in page
    assert "LLM load:" in proc.stderr and "LLM load verdict: passed" in proc.stderr
    assert_nothing_left(tmp_path)


# --- bad input and faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-u", "0"], "LOAD_USERS must be between 1 and 100000"),
        (["--duration=-5s"], "--duration must be a duration like 60, 60s, 2m or 1h"),
        (["--shape", "zigzag"], "LOAD_SHAPE must be one of constant, sweep, rate, got 'zigzag'"),
    ],
)
def test_bad_input_exits_3_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = front_door(tmp_path, *args, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert results_of(tmp_path)["exit_code"] == 3  # this run's results, not a stale verdict
    assert_nothing_left(tmp_path)


def test_malformed_slo_file_exits_3(tmp_path: Path) -> None:
    slo = tmp_path / "slo.toml"
    slo.write_text("[slo]\np95_latency_ms = \n")
    proc = front_door(tmp_path, "--slo-file", str(slo), timeout=60)
    assert proc.returncode == 3 and proc.stderr.startswith("error: SLO file") and proc.stderr.count("\n") == 1
    assert_nothing_left(tmp_path)


def test_malformed_base_url_exits_3_with_this_runs_results(tmp_path: Path) -> None:
    (tmp_path / "load_results.json").write_text('{"verdict": "passed", "exit_code": 0}')  # a stale verdict
    proc = front_door(tmp_path, timeout=60, BASE_URL="http://alice:s3cretpw@[::1")
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: BASE_URL is not a valid URL") and "s3cretpw" not in proc.stderr
    doc = results_of(tmp_path)
    assert doc["exit_code"] == 3 and doc["verdict"].startswith("error: BASE_URL") and "s3cretpw" not in str(doc)
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["-u", "0", "-t", "5s"], {}, "error: users must be >= 1, got 0"),
        (["-t=-5s"], {}, "error: locust: argument -t/--run-time: Invalid time span"),
        (["-t", "5s"], {"LOAD_SHAPE": "zigzag"}, "error: LOAD_SHAPE must be one of constant, sweep, rate"),
        (["-t", "5s"], {"SLO_P95_LATENCY_MS": "fast"}, "error: environment: SLO p95_latency_ms must be a number"),
    ],
)
def test_raw_locust_bad_input_exits_3(target: Target, tmp_path: Path, args: list, env: dict, message: str) -> None:
    proc = raw_locust(tmp_path, *args, target=target, timeout=120, **env)
    assert proc.returncode == 3, proc.stderr[-1000:]
    assert message in proc.stderr
    assert_nothing_left(tmp_path)


def test_unreachable_target_exits_2(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = front_door(tmp_path, "-t", "5", timeout=120, BASE_URL=url)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: target {url} is not reachable"), proc.stderr
    raw = raw_locust(tmp_path, "-t", "5s", "--host", url, timeout=120)
    assert raw.returncode == 2 and "is not reachable" in raw.stderr
    assert_nothing_left(tmp_path)


def test_wrong_api_key_fails_naming_401(target: Target, tmp_path: Path) -> None:
    if not target.api_key:
        pytest.skip("the given target has no API_KEY: nothing enforces a key")
    wrong = Target(target.base_url, "sk-wrong-key", target.model)
    proc = front_door(tmp_path, "-u", "2", "-t", "3", target=wrong)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "401" in proc.stderr and "sk-wrong-key" not in proc.stderr + proc.stdout
    doc = results_of(tmp_path)
    assert any("HTTP 401" in e for e in doc["load_test"]["errors"]) and doc["load_test"]["completed"] == 0
    assert_nothing_left(tmp_path)


def test_too_few_requests_is_inconclusive_not_passed(target: Target, tmp_path: Path) -> None:
    proc = front_door(tmp_path, "-u", "2", "-t", "2", "--max-duration", "4", target=target, LOAD_MIN_REQUESTS="100000")
    assert proc.returncode == 1, proc.stderr[-2000:]
    n = results_of(tmp_path)["load_test"]["completed"]
    verdict = f"inconclusive: only {n} requests completed (need 100000)"
    assert proc.stdout.strip().splitlines()[-1] == verdict
    assert results_of(tmp_path)["verdict"] == verdict and results_of(tmp_path)["exit_code"] == 1
    assert_nothing_left(tmp_path)


class _BasicAuthProxy(BaseHTTPRequestHandler):
    """A loopback reverse proxy that demands HTTP Basic alice:s3cretpw and adds the upstream's key."""

    protocol_version = "HTTP/1.1"
    upstream: str
    upstream_key: str | None
    expected = "Basic " + base64.b64encode(b"alice:s3cretpw").decode()
    authorised_posts = 0

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {"Content-Type": self.headers.get("Content-Type") or "application/json"}
        if self.upstream_key:
            headers["Authorization"] = f"Bearer {self.upstream_key}"
        if self.command == "POST":
            type(self).authorised_posts += 1
        with httpx.stream(self.command, self.upstream + self.path, content=body, headers=headers, timeout=600) as r:
            self.send_response(r.status_code)
            self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in r.iter_raw():
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")


def test_url_credentials_are_used_and_never_shown(target: Target, tmp_path: Path) -> None:
    handler = type("Proxy", (_BasicAuthProxy,), {"upstream": target.base_url, "upstream_key": target.api_key})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://alice:s3cretpw@127.0.0.1:{server.server_address[1]}"
    seen: list[str] = []  # command lines of this run's processes while it runs
    cmd = [sys.executable, "-m", "llmpyramid.load", "--results-dir", str(tmp_path), "-u", "2", "-t", "3",
           "--workers", "1"]  # fmt: skip
    env = _env(tmp_path, BASE_URL=url, LOAD_PLOTS="1")
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            for p in _ours(tmp_path):
                try:
                    seen.append(" ".join(p.cmdline()))
                except psutil.Error:
                    continue
            time.sleep(0.5)
        out, err = proc.communicate(timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, err[-2000:]
    doc = results_of(tmp_path)
    assert handler.authorised_posts >= doc["load_test"]["completed"] >= 5  # the credentials were sent
    assert any("locust" in c and "--master" in c for c in seen) and any("--worker" in c for c in seen)
    assert not [c for c in seen if "s3cretpw" in c]
    assert "s3cretpw" not in out + err
    for f in tmp_path.rglob("*"):  # reports and locust's own state and logs (run/)
        if f.is_file():
            assert "s3cretpw" not in f.read_text(errors="replace"), f"password in {f.relative_to(tmp_path)}"
    assert doc["load_test"]["target"] == f"http://***@127.0.0.1:{server.server_address[1]}"
    assert_nothing_left(tmp_path)


def test_server_dying_mid_run_still_writes_results_and_fails(tmp_path: Path) -> None:
    stack = EmbeddedStack(StackSettings.from_env(port=0, run_dir=tmp_path / "stack", api_key=""))
    state = stack.up(owner_pid=os.getpid())
    results = tmp_path / "results"
    try:
        cmd = [sys.executable, "-m", "llmpyramid.load", "-u", "4", "-r", "4", "-t", "10", "--results-dir", str(results)]
        env = _env(results, state.target(), LOAD_MIN_REQUESTS="1000", LOAD_MAX_DURATION="20")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # kill it once it has answered a request of the run (llama.cpp logs each one's timings), else after 60 s
        wait_for(lambda: "print_timing" in Path(state.log_file).read_text(errors="replace"), 60)
        psutil.Process(state.pid).kill()  # the server dies without a goodbye
        _, err = proc.communicate(timeout=400)
    finally:
        stack.down()
    assert proc.returncode == 1, err
    lt = results_of(results)["load_test"]
    assert lt["error_rate"] > 0 and lt["failures"] > 0
    assert any("connection" in e or "broken stream" in e for e in lt["errors"])
    assert "error rate" in err
    assert_nothing_left(results)


def _start_distributed(target: Target, results: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "llmpyramid.load", "--workers", "2", "-u", "2", "-t", "300", "--results-dir",
           str(results)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=_env(results, target), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # front door + master + 2 workers; generous: starting three locust processes on a busy box is slow
    assert wait_for(lambda: len(_ours(results)) >= 4, 180), "locust master and workers did not start"
    return proc


def _requests_counted(results: Path) -> int:
    """Requests the running locust has counted so far (its CSV history, appended while it runs)."""
    try:
        with (results / "locust_stats_history.csv").open(newline="") as f:
            return max((int(row["Total Request Count"]) for row in csv.DictReader(f)), default=0)
    except (OSError, KeyError, ValueError):
        return 0


def _wait_mid_run(results: Path) -> None:
    """The run is under way: its workers have had requests answered (not a fixed sleep)."""
    assert wait_for(lambda: _requests_counted(results) > 0, 180), "no request was counted"


def test_ctrl_c_stops_master_and_workers(target: Target, tmp_path: Path, record_property: Any) -> None:
    proc = _start_distributed(target, tmp_path)
    _wait_mid_run(tmp_path)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=SHUTDOWN_LIMIT_S)
    took = round(time.monotonic() - sent, 1)
    record_property("metrics", {"ctrl_c_to_exit_seconds": took})
    print(f"Ctrl-C to exit: {took}s")
    assert proc.returncode == 130, err
    assert results_of(tmp_path)["verdict"] == "interrupted"  # not a partial run's verdict
    assert_nothing_left(tmp_path)


def test_a_second_run_into_the_same_results_dir_is_refused(target: Target, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "llmpyramid.load", "-u", "1", "-t", "300", "--results-dir", str(tmp_path)]
    first = subprocess.Popen(cmd, env=_env(tmp_path, target), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: (tmp_path / "run" / "locust.json").is_file(), 180), "locust did not start"
        second = front_door(tmp_path, "-u", "1", "-t", "3", target=target, timeout=120)
        assert second.returncode == 3, second.stderr[-2000:]
        assert "already running (locust pid" in second.stderr and second.stderr.count("\n") == 1
        assert first.poll() is None  # the first run goes on
        assert not (tmp_path / "load_results.json").exists()  # nothing written into the first run's directory
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=SHUTDOWN_LIMIT_S)
    assert first.returncode == 130, err
    assert results_of(tmp_path)["verdict"] == "interrupted"
    assert_nothing_left(tmp_path)


def test_killed_front_door_takes_master_and_workers_with_it(
    target: Target, tmp_path: Path, record_property: Any
) -> None:
    """SIGKILL leaves no chance to clean up: the kernel's parent-death signal must stop locust."""
    proc = _start_distributed(target, tmp_path)
    try:
        _wait_mid_run(tmp_path)
    finally:
        proc.kill()
        proc.wait()
    killed = time.monotonic()
    try:
        assert_nothing_left(tmp_path, timeout=SHUTDOWN_LIMIT_S)
        record_property("metrics", {"orphans_gone_after_seconds": round(time.monotonic() - killed, 1)})
    finally:
        for p in _ours(tmp_path):  # a failing check must not leave the orphans running
            p.kill()


# --- shapes, distribution, baseline ---------------------------------------------------------------


def test_distributed_run_has_the_same_result_shape(target: Target, tmp_path: Path) -> None:
    local, dist = tmp_path / "local", tmp_path / "dist"
    a_run = front_door(local, "-u", "2", "-r", "2", "-t", "3", target=target)
    assert a_run.returncode == 0, a_run.stderr[-2000:]
    proc = front_door(dist, "-u", "2", "-r", "2", "-t", "3", "--workers", "2", target=target)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = results_of(local)["load_test"], results_of(dist)["load_test"]
    assert set(a) == set(b) and b["workers"] == 2
    # every answered request reached the master, the tail sent when the workers stopped included
    assert b["completed"] >= b["min_requests"] and b["requests"] >= b["completed"]
    assert (dist / "locust_report.html").stat().st_size > 10_000
    # each locust process is a managed service: a private run directory, its own 0600 log
    run_dir = dist / "run"
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in run_dir.iterdir()}
    assert {"locust.log", "locust-worker-1.log", "locust-worker-2.log"} <= set(modes), modes
    assert set(modes.values()) == {0o600}, modes
    assert not [name for name in modes if name.endswith(".json")]  # stopped: no state left claiming the dir
    artifacts = results_of(dist)["artifacts"]
    assert artifacts["log"] == str(run_dir / "locust.log") and len(artifacts["worker_logs"]) == 2
    assert "LLM load verdict: passed" in (run_dir / "locust.log").read_text()
    assert_nothing_left(local)
    assert_nothing_left(dist)


def test_scaling_sweep_reports_levels_and_a_knee(target: Target, tmp_path: Path) -> None:
    proc = front_door(tmp_path, "--shape", "sweep", "--sweep-step", "4", "--sweep-max-users", "4", target=target)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = results_of(tmp_path)["load_test"]["sweep"]
    assert [lv["users"] for lv in sweep["levels"]][:2] == [1, 2]
    assert "reason" in sweep["knee"]
    assert "LLM load sweep: " in proc.stderr
    assert_nothing_left(tmp_path)


def test_constant_arrival_rate_issues_requests_on_its_schedule(target: Target, tmp_path: Path) -> None:
    proc = front_door(tmp_path, "--shape", "rate", "--rate", "2", "-t", "5", target=target)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lt = results_of(tmp_path)["load_test"]
    arrivals = lt["arrivals"]
    assert lt["shape"]["type"] == "constant_arrival_rate"
    # open loop: every slot of the schedule was issued (or dropped at the in-flight cap), however slow
    # the server, and every issued request was answered or was still in flight when the run ended
    assert arrivals["issued"] + arrivals["dropped"] == arrivals["scheduled"]
    assert lt["requests"] - arrivals["dropped"] + arrivals["in_flight_at_end"] == arrivals["issued"]
    assert arrivals["scheduled"] >= 2 * 5 // 2  # the generator kept going for (most of) the 5 s
    assert arrivals["issue_lag_p50_ms"] is not None
    assert_nothing_left(tmp_path)


def test_baseline_regression_and_slo_violation_name_the_metric(target: Target, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"load_test": {"requests_per_second": 1000.0, "error_rate": 0.0}}))
    results = tmp_path / "r"
    proc = front_door(results, "-u", "2", "-t", "3", "--baseline", str(baseline), "--tolerance", "0.2",
                      target=target, SLO_TTFT_P95_MS="0.001")  # fmt: skip
    assert proc.returncode == 1
    assert "baseline regression: requests/s" in proc.stderr
    assert "FAIL: TTFT p95 " in proc.stderr and "> threshold 0.001ms" in proc.stderr
    assert results_of(results)["exit_code"] == 1
    assert results_of(results)["verdict"].startswith("failed: TTFT p95")
    assert_nothing_left(results)


def test_repeated_runs_give_intervals_and_a_gate_that_knows_the_noise(target: Target, tmp_path: Path) -> None:
    """--repeat 3 against the real server: an interval per metric; a baseline from a much faster server
    fails the gate (its limit lies below the whole interval); the runs' own means, as a baseline, do not."""
    from llmpyramid.load.repeat import gate

    faster = tmp_path / "faster.json"  # a server 3x faster than this one, as a stored baseline
    faster.write_text(json.dumps({"load_test": {"requests_per_second": 1000.0, "p95_latency_ms": 1.0}}))
    results = tmp_path / "r"
    # the other pytest worker's runs share this box: the busy-machine rule (its own test) would make it inconclusive
    proc = front_door(results, "-u", "2", "-t", "3", "--repeat", "3", "--baseline", str(faster), target=target,
                      LOAD_MACHINE_BUSY_BOUND="1")  # fmt: skip
    doc = results_of(results)
    assert proc.returncode == 1, proc.stderr[-2000:]
    cis = doc["repeat"]["intervals"]
    assert doc["repeat"]["n"] == 3 and len(doc["repeat"]["runs"]) == 3
    for key in ("requests_per_second", "p95_latency_ms", "ttft_p95_ms"):
        ci = cis[key]
        assert ci["n"] == 3 and len(ci["values"]) == 3 and ci["low"] <= ci["mean"] <= ci["high"]
        assert doc["load_test"][key] == ci["mean"]
    assert doc["verdict"].startswith("failed: baseline regression: ") and "95% interval" in doc["verdict"]
    own_means = {k: v["mean"] for k, v in cis.items()}
    regressions, _undecided = gate(cis, own_means, 0.10)
    assert regressions == [], "the same server's own numbers never regress against themselves"
    for k in range(1, 4):
        assert (results / f"repeat-{k}" / "load_results.json").is_file()
    assert_nothing_left(results)
