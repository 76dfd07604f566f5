"""Hybrid layer, pure parts: settings, router config checks, phase split, metrics flattening."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata

import psutil
import pytest

from llmpyramid import procs
from llmpyramid.errors import ConfigError, InfrastructureError
from llmpyramid.hybrid import router
from llmpyramid.hybrid.config import HybridSettings
from llmpyramid.hybrid.driver import Outcome
from llmpyramid.hybrid.report import flat_metrics, scenario_block
from llmpyramid.hybrid.scenarios import ScenarioResult, phase_stats, split_phases
from llmpyramid.load.metrics import Sample
from llmpyramid.ports import free_port
from llmpyramid.procs import ProcessIdentity, ServiceState


def outcome(start: float, seconds: float, backend: str | None, ok: bool = True, streamed: bool = True) -> Outcome:
    sample = Sample(start=start, kind="chat_stream", latency_ms=seconds * 1000, ok=ok, ttft_ms=100.0 if ok else None)
    return Outcome(sample, backend=backend, status=200, streamed=streamed)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HYBRID_REQUESTS": "x"}, "HYBRID_REQUESTS must be an integer"),
        ({"HYBRID_REQUESTS": "2"}, "HYBRID_REQUESTS must be"),
        ({"HYBRID_REQUEST_TIMEOUT": "inf"}, "HYBRID_REQUEST_TIMEOUT"),
        ({"HYBRID_SCENARIOS": "a,z"}, "HYBRID_SCENARIOS must be a comma-separated subset"),
        ({"HYBRID_ROUTER_URL": "ftp://x"}, "HYBRID_ROUTER_URL is not a valid URL"),
        ({"HYBRID_BASE_URL": "http://b:8080"}, "set it too"),
        ({"HYBRID_ROUTER_URL": "http://r", "HYBRID_BASE_STOP_CMD": "true"}, "go together"),
        ({"HYBRID_ROUTER_URL": "http://r", "HYBRID_BASE_STOP_CMD": "'", "HYBRID_BASE_START_CMD": "x"},
         "not a valid command line"),
        ({"HYBRID_BASE_ID": "same", "HYBRID_BURST_ID": "same"}, "must differ"),
        ({"HYBRID_ROUTER": "haproxy", "HYBRID_ROUTER_URL": "http://r"}, "give one of them"),
        ({"HYBRID_DEGRADED_DELAY": "1s"}, "HYBRID_DEGRADED_DELAY 1s must exceed HYBRID_DEGRADED_TTFT_P95_MS 2000ms"),
        ({"HYBRID_MIN_SAMPLES": "20", "HYBRID_REQUESTS": "10"}, "HYBRID_MIN_SAMPLES 20 > HYBRID_REQUESTS 10"),
    ],
)  # fmt: skip
def test_bad_settings_are_config_errors_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        HybridSettings.from_env(environ=env)


def test_defaults_build_the_reference_topology_and_run_every_scenario():
    s = HybridSettings.from_env(environ={})
    # f-h (the fault proxy's) run while both backends serve: before c kills base
    assert s.reference and s.scenarios == ("a", "b", "f", "g", "h", "c", "d", "e")
    assert HybridSettings.from_env(environ={"HYBRID_SCENARIOS": "e, b, g"}).scenarios == ("b", "g", "e")
    assert not HybridSettings.from_env(router_url="http://127.0.0.1:4000/v1").reference


def test_each_reference_router_has_its_file_and_attribution_header():
    lite, hap = HybridSettings.from_env(environ={}), HybridSettings.from_env(environ={"HYBRID_ROUTER": "haproxy"})
    assert lite.router_config_path.name == "litellm.yaml" and lite.attribution_header == "x-litellm-model-id"
    assert hap.router_config_path.name == "haproxy.cfg" and hap.attribution_header == "x-llmpyramid-backend"
    assert HybridSettings.from_env(environ={"HYBRID_BACKEND_HEADER": "x-b"}).attribution_header == "x-b"
    with pytest.raises(ConfigError, match="HYBRID_ROUTER must be one of litellm, haproxy"):
        HybridSettings.from_env(environ={"HYBRID_ROUTER": "nginx"})
    with pytest.raises(ConfigError, match="HYBRID_KNOWN_DEVIATIONS: unknown z"):
        HybridSettings.from_env(environ={"HYBRID_KNOWN_DEVIATIONS": "g,z"})


def test_a_compromised_litellm_is_refused(monkeypatch):
    monkeypatch.setattr(metadata, "version", lambda _name: "1.107.0")
    with pytest.raises(ConfigError, match="known-compromised"):
        router.litellm_version()


def test_router_config_without_model_list_is_a_config_error(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("router_settings: {}\n")
    with pytest.raises(ConfigError, match="has no model_list"):
        router.load_router_config(bad)
    bad.write_text("model_list: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        router.load_router_config(bad)
    with pytest.raises(ConfigError, match="router config"):
        router.load_router_config(tmp_path / "missing.yaml")


def test_reference_router_config_is_valid_and_attributes_base_and_burst():
    config = router.load_router_config(HybridSettings().router_config_path)
    ids = {m["model_info"]["id"]: m["litellm_params"] for m in config["model_list"]}
    assert ids["base"]["order"] < ids["burst"]["order"]
    assert ids["base"]["max_parallel_requests"] == HybridSettings().base_slots


def test_phases_split_on_fault_and_recovery():
    outs = [
        outcome(0.0, 1.0, "base"),  # ended before the fault
        outcome(1.5, 1.0, "base", ok=False),  # in flight at the fault (2.0): during
        outcome(2.1, 0.5, "burst"),  # started after the fault, before recovery (2.6): during
        outcome(3.0, 0.5, "burst"),  # after
    ]
    phases = split_phases(outs, fault=2.0, recovered=2.6)
    assert [len(phases[p]) for p in ("before", "during", "after")] == [1, 2, 1]
    assert split_phases(outs, None, None) == {"steady": outs}
    stats = phase_stats(phases["during"])
    assert (stats["issued"], stats["served"], stats["lost"], stats["broken_streams"]) == (2, 1, 1, 1)
    assert stats["served_by"] == {"burst": 1}


def test_scenario_block_counts_share_and_flattens_to_scalars():
    r = ScenarioResult("b", "passed", 3.0, users=4, outcomes=[outcome(0, 1, "base"), outcome(0, 1, "burst"),
                                                              outcome(0, 1, "burst")])  # fmt: skip
    block = scenario_block(r, t0=0.0)
    assert (block["issued"], block["served"], block["lost"]) == (3, 3, 0)
    assert block["share"] == {"base": 0.333, "burst": 0.667}
    flat = flat_metrics(block)
    assert flat["served_by_burst"] == 2 and flat["steady_issued"] == 3
    assert all(not isinstance(v, dict | list) for v in flat.values())


def test_a_request_that_failed_before_any_token_is_not_a_broken_stream():
    assert not outcome(0, 1, "base", ok=False, streamed=False).broken
    assert outcome(0, 1, "base", ok=False, streamed=True).broken


# --- the router as a managed service: identity and port -------------------------------------------

PARENT_WITH_CHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
)


def _router(tmp_path, monkeypatch) -> router.LiteLLMRouter:
    monkeypatch.setattr(router, "litellm_version", lambda: "test")
    monkeypatch.setattr(router, "load_router_config", lambda path: {})
    return router.LiteLLMRouter(tmp_path / "cfg.yaml", tmp_path / "run", startup_timeout=10, stop_grace=2)


def test_litellm_never_reuses_a_backend_connection_whatever_the_callers_environment(tmp_path, monkeypatch):
    """llama.cpp closes a connection after a streamed answer (tests/stack shows it): a pooled one would fail the
    next request with "Server disconnected"."""
    monkeypatch.setenv("AIOHTTP_KEEPALIVE_TIMEOUT", "15")
    env = _router(tmp_path, monkeypatch).environ(4000, "sk-x", {"HYBRID_BASE_API_BASE": "http://b"})
    assert env["AIOHTTP_KEEPALIVE_TIMEOUT"] == "0" and env["HYBRID_BASE_API_BASE"] == "http://b"


def test_down_never_signals_a_reused_pid_or_its_children(tmp_path, monkeypatch):
    """A stale state file whose pid now belongs to another process (other start time): nothing is signalled,
    neither that process nor its children; the state file is dropped."""
    stranger = subprocess.Popen([sys.executable, "-c", PARENT_WITH_CHILD])
    try:
        deadline = time.monotonic() + 30
        while not psutil.Process(stranger.pid).children():
            assert time.monotonic() < deadline, "the stranger never started its child"
            time.sleep(0.05)
        family = [psutil.Process(stranger.pid), *psutil.Process(stranger.pid).children()]
        r = _router(tmp_path, monkeypatch)
        real = ProcessIdentity.of(stranger.pid)
        r.service.write_state(ServiceState(stranger.pid, real.create_time - 100, list(real.argv), time.time(),
                                           extra={"port": free_port()}))  # fmt: skip
        monkeypatch.setattr(procs, "stop_process", lambda *a: pytest.fail("a reused pid was signalled"))
        monkeypatch.setattr(psutil.Process, "terminate", lambda self: pytest.fail(f"pid {self.pid} was signalled"))
        monkeypatch.setattr(psutil.Process, "kill", lambda self: pytest.fail(f"pid {self.pid} was signalled"))
        assert r.down() is False
        assert all(p.is_running() for p in family)
        assert r.service.read_state() is None
    finally:
        monkeypatch.undo()  # psutil's kill again
        for proc in psutil.Process(stranger.pid).children(recursive=True):
            proc.kill()
        stranger.kill()
        stranger.wait()


def test_a_taken_router_port_is_refused_before_anything_starts(tmp_path, monkeypatch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setattr(router, "free_port", lambda host: port)  # taken between the pick and the spawn
        r = _router(tmp_path, monkeypatch)
        monkeypatch.setattr(r.service, "spawn", lambda *a, **k: pytest.fail("the router was started"))
        with pytest.raises(
            InfrastructureError, match=rf"^port {port} on 127.0.0.1 is busy \(held by pid {os.getpid()}"
        ):
            r.start({})
    assert r.process is None and r.service.read_state() is None


def test_a_ready_answer_from_another_process_is_refused_before_the_master_key_is_used(tmp_path, monkeypatch):
    """The proxy binds seconds after the port was checked: whatever took it meanwhile answers /health/readiness,
    and must not be handed requests carrying the master key."""
    r = _router(tmp_path, monkeypatch)
    spawn = r.service.spawn
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]  # our "router": never binds its port
    monkeypatch.setattr(r.service, "spawn", lambda argv, **k: spawn(sleeper, **k))
    process = r.start({})
    port = int(process.url.rsplit(":", 1)[1])
    impostor = http.server.HTTPServer(("127.0.0.1", port), _Ready)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    try:
        with pytest.raises(InfrastructureError, match=rf"router port {port} .* answered by pid {os.getpid()} "):
            r.wait_ready(notify=lambda _: None)
    finally:
        impostor.shutdown()
        impostor.server_close()
        assert r.down() is True
    assert r.service.read_state() is None


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass
