"""The hybrid layer for real: two embedded llama.cpp stacks behind a reference router on loopback.

The layer's own sessions (`nox -s hybrid`, `nox -s hybrid_haproxy`) run every scenario with each
reference router; this file checks its front door: the document's shape, broken router configurations
and a router that hides a broken stream (each must fail the scenario that exists to catch it), Ctrl-C,
SIGKILL and unreachable routers.

Each test runs the layer's front door (`python -m llmpyramid.hybrid`) as a child process, as a user
would, and checks the document it prints, its exit code, and that every process it started (router,
base, burst, a restarted base) is gone afterwards. Verdicts are on counts the run measured; the only
time limits are generous ones against a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from llmpyramid import results
from llmpyramid.hybrid.config import REFERENCE_CONFIGS, HybridSettings
from llmpyramid.hybrid.faultproxy import FaultProxy
from llmpyramid.hybrid.scenarios import run_scenario
from llmpyramid.hybrid.topology import Backend, Topology, _LocalBackend
from llmpyramid.ports import free_port
from tests.support.leftovers import commands, with_env
from tests.support.masking_router import MaskingRouter

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUN_LIMIT_S = 600  # against a hang only; the layer's own wall time is recorded in its document
PIDS = re.compile(r"\(pid (\d+)")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The run's environment: its results directory (which every process it starts inherits, so it finds
    them all) and its temporary directory (where the stacks' logs go) under this test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_")}
    return {**env, "HYBRID_RESULTS_DIR": str(tmp_path / "results"), "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1",
            **extra}  # fmt: skip


def _run(tmp_path: Path, *args: str, **extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    proc = subprocess.run(
        [sys.executable, "-m", "llmpyramid.hybrid", "--output", "json", *args],
        env=_env(tmp_path, **extra), capture_output=True, text=True, timeout=RUN_LIMIT_S,
    )  # fmt: skip
    sys.stderr.write(proc.stderr)  # the run's log, for whoever reads a failure
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    return proc, doc


def _assert_all_stopped(tmp_path: Path, stderr: str) -> None:
    """Every process the run started (router, stacks, a restarted base) is gone: found by the results
    directory (this test's own) they all inherit, not by pid (reused on a busy box). 30 s for their exit."""
    assert PIDS.findall(stderr), f"the run announced no process: {stderr[-500:]}"
    deadline = time.monotonic() + 30
    alive = with_env("HYBRID_RESULTS_DIR", str(tmp_path / "results"))
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = with_env("HYBRID_RESULTS_DIR", str(tmp_path / "results"))
    for p in alive:  # counted; stopped so that a failure never leaks into the next test
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert not alive, f"processes left running after the layer ended: {commands(alive)}"


def _backend_answered(tmp_path: Path) -> bool:
    """A backend has answered a request through the router (llama.cpp logs each one's timings)."""
    logs = tmp_path.glob("llmpyramid-hybrid-*/*/*.log")
    return any("print_timing" in log.read_text(errors="replace") for log in logs)


def test_reference_topology_document_has_attribution_phases_operator_numbers_and_cost(tmp_path):
    # all eight run with each router in the hybrid sessions; this checks the document's shape, with HAProxy
    proc, doc = _run(tmp_path, "--router", "haproxy", HYBRID_SCENARIOS="a,b,c,d")
    assert doc is not None, f"no JSON document on stdout (exit {proc.returncode}): {proc.stderr[-800:]}"
    results.validate(doc)
    failed = [f"{t['name']}: {t.get('error')}" for t in doc["tests"] if t["status"] != "passed"]
    assert proc.returncode == 0 and not failed, f"exit {proc.returncode}: {failed}"
    h = doc["hybrid"]
    sc = h["scenarios"]
    assert list(sc) == ["a_below_base_capacity", "b_overflow_to_burst", "c_base_killed", "d_base_restored"]
    # a: every request attributed to base; b: both backends served, burst took the overflow
    assert set(sc["a_below_base_capacity"]["served_by"]) == {"base"}
    assert sc["b_overflow_to_burst"]["served_by"]["burst"] >= 1 and sc["b_overflow_to_burst"]["served_by"]["base"] >= 1
    # c: base died with streams in flight; burst answered afterwards; phases split around the fault; the
    # operators' numbers: in-flight vs. post-fault losses, first failure, failure window, time back to SLO
    c = sc["c_base_killed"]
    assert c["in_flight_at_fault"] >= 1 and c["time_to_first_burst_success_s"] >= 0
    assert c["lost_in_flight"] + c["lost_new"] == c["lost"] - c["phases"]["before"]["lost"]
    if c["lost"]:
        assert c["first_failure_s"] is not None and c["failure_window_s"] >= 0
    assert c["ttft_p95_back_within_slo_s"] is not None and c["ttft_slo_ms"] > 0
    assert set(c["phases"]) == {"before", "during", "after"}
    assert set(c["phases"]["before"]["served_by"]) == {"base"} and set(c["phases"]["after"]["served_by"]) == {"burst"}
    # d: traffic returned to base, measured against the cooldown the configuration states
    d = sc["d_base_restored"]
    assert d["time_to_fail_back_s"] >= 0 and d["phases"]["after"]["served_by"].get("base", 0) >= 1
    assert d["stated_fail_back_s"] == 2.0  # router/haproxy.cfg: rise 2 x inter 1s
    cost = h["cost_per_slo_request"]
    assert cost["base"]["usd"] > 0 and cost["burst"]["usd"] > 0 and "pinned catalog" in cost["burst"]["price"]
    assert h["router_cpu_seconds"] > 0 and h["router_peak_rss_bytes"] > 0
    assert h["router_off_loopback_connections"] == []  # sampled twice a second: the router never left loopback
    assert Path(h["artifacts"]["plot"]).stat().st_size > 0
    samples = Path(h["artifacts"]["samples"]).read_text().splitlines()
    assert len(samples) == sum(s["issued"] for s in sc.values())
    _assert_all_stopped(tmp_path, proc.stderr)
    with pytest.raises(httpx.HTTPError):
        httpx.get(h["topology"]["router_url"] + "/router-health", timeout=5)


def test_haproxy_config_that_never_fails_over_fails_scenario_c_saying_so(tmp_path):
    """router/haproxy.cfg without its failover lines (health checks, retries, redispatch): with base killed,
    HAProxy keeps sending every request to it and burst never answers."""
    keep = [ln for ln in REFERENCE_CONFIGS["haproxy"].read_text().splitlines()
            if not ln.strip().startswith(("retries", "option redispatch", "retry-on", "option httpchk", "http-check",
                                          "default-server"))]  # fmt: skip
    broken = tmp_path / "no-failover.cfg"
    broken.write_text("\n".join(re.sub(r" check\b", "", ln) if ln.strip().startswith("server") else ln
                                for ln in keep) + "\n")  # fmt: skip
    proc, doc = _run(tmp_path, "--router", "haproxy", HYBRID_ROUTER_CONFIG=str(broken), HYBRID_SCENARIOS="c",
                     HYBRID_SCENARIO_TIMEOUT="20")  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-800:]
    assert doc is not None
    (c,) = doc["tests"]
    assert c["name"] == "c_base_killed" and c["status"] == "failed"
    assert "a success on burst after base was killed did not happen within 20s" in c["error"], c["error"]
    assert doc["hybrid"]["topology"]["router_kind"] == "haproxy"
    _assert_all_stopped(tmp_path, proc.stderr)


def test_a_router_that_ends_a_cut_stream_with_a_clean_done_fails_scenario_g(tmp_path):
    """Base (real llama.cpp) behind the fault proxy behind a router that, when the answer breaks off, writes
    `data: [DONE]` and ends cleanly: g fails naming the clean end. The same router without that masking
    (the broken answer breaks the client's connection) passes g: the scenario can tell them apart."""
    settings = HybridSettings.from_env(environ={"HYBRID_ROUTER": "haproxy", "HYBRID_SCENARIO_TIMEOUT": "60"})
    key = "k" * 32
    base = _LocalBackend("base", 2, tmp_path / "base", key, lambda m: print(m, file=sys.stderr))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(base.stack.down)
        base.up()
        fault = cleanup.enter_context(FaultProxy(base.url))
        verdicts = {}
        for mask in (True, False):
            with MaskingRouter(fault.url, mask=mask) as router:
                backends = {"base": Backend("base", base.url, slots=2, fault=fault), "burst": Backend("burst", None)}
                topo = Topology(router.url, key, "llm", backends)
                result = asyncio.run(run_scenario("g", topo, settings, lambda m: print(m, file=sys.stderr)))
                verdicts[mask] = (result.status, result.error, sum(o.truncated_clean for o in result.outcomes))
    status, error, clean = verdicts[True]
    assert status == "failed" and "clean end of stream" in str(error) and clean >= 2, verdicts
    status, error, clean = verdicts[False]
    assert status == "passed" and clean == 0, verdicts


def test_router_that_never_overflows_fails_scenario_b_saying_so(tmp_path):
    """The reference config without base's concurrency cap: base queues everything, burst idles."""
    config = yaml.safe_load(REFERENCE_CONFIGS["litellm"].read_text())
    base = next(m for m in config["model_list"] if m["model_info"]["id"] == "base")
    del base["litellm_params"]["max_parallel_requests"]
    broken = tmp_path / "no-overflow.yaml"
    broken.write_text(yaml.safe_dump(config))
    proc, doc = _run(tmp_path, HYBRID_ROUTER_CONFIG=str(broken), HYBRID_SCENARIOS="b", HYBRID_REQUESTS="8")
    assert proc.returncode == 1, proc.stderr[-800:]
    assert doc is not None
    (b,) = doc["tests"]
    assert b["name"] == "b_overflow_to_burst" and b["status"] == "failed"
    assert "never sent traffic to burst" in b["error"], b["error"]
    assert set(doc["hybrid"]["scenarios"]["b_overflow_to_burst"]["served_by"]) == {"base"}
    _assert_all_stopped(tmp_path, proc.stderr)


@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGTERM, 130), (signal.SIGKILL, -signal.SIGKILL)])
def test_interrupted_or_killed_run_leaves_no_router_or_stack(tmp_path, sig, expected):
    """SIGTERM: the run stops what it started and exits 130. SIGKILL: it cannot clean up, so the
    router (parent-death signal) and the stacks (owner watchdog) must stop themselves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpyramid.hybrid"], env=_env(tmp_path, HYBRID_SCENARIOS="b"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: log.extend(proc.stderr or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + RUN_LIMIT_S
    while not _backend_answered(tmp_path) and proc.poll() is None:  # scenario b is sending load through it
        assert time.monotonic() < deadline, "no backend answered through the router"
        time.sleep(0.2)
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    reader.join(timeout=10)
    stderr = "".join(log)
    assert code == expected, stderr[-800:]
    assert len(PIDS.findall(stderr)) == 3, stderr  # router, base, burst
    _assert_all_stopped(tmp_path, stderr)


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def test_unreachable_router_or_backend_is_exit_2_naming_which(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    proc, _ = _run(tmp_path, "--router-url", dead)
    assert proc.returncode == 2 and f"router {dead} is not reachable" in proc.stderr, proc.stderr
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        router = f"http://127.0.0.1:{server.server_address[1]}"
        proc, _ = _run(tmp_path, "--router-url", router, "--base-url", dead)
        assert proc.returncode == 2 and f"base backend {dead} is not reachable" in proc.stderr, proc.stderr
        proc, _ = _run(tmp_path, "--router-url", router, "--burst-url", dead)
        assert proc.returncode == 2 and f"burst backend {dead} is not reachable" in proc.stderr, proc.stderr
    finally:
        server.shutdown()
