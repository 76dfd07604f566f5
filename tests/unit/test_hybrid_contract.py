"""The hybrid layer's failover contract, pure parts: how the client saw a stream end, declared deviations,
operators' numbers, cost per SLO-meeting request, HAProxy's binary and configuration helpers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from llmpyramid.hybrid import haproxy, scenarios
from llmpyramid.hybrid.config import HybridSettings
from llmpyramid.hybrid.cost import cost_per_slo_request
from llmpyramid.hybrid.driver import LoadDriver, Outcome
from llmpyramid.hybrid.scenarios import ScenarioResult, back_within_slo, contract_breach
from llmpyramid.hybrid.topology import Backend, Topology
from llmpyramid.load.metrics import Sample


def _chunk(text: str = "", finish: str | None = None) -> bytes:
    body = {"choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


STREAMS = {
    "complete": [_chunk("Hi"), _chunk(" there"), _chunk(finish="length"), b"data: [DONE]\n\n"],
    "done_after_cut": [_chunk("Hi"), b"data: [DONE]\n\n"],  # a router hiding a backend that died mid-stream
    "eof_after_cut": [_chunk("Hi")],
    "error_event": [_chunk("Hi"), b'data: {"error": {"message": "upstream died"}}\n\n'],
}


def _drive(stream: str, status: int = 200) -> Outcome:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"x-llmpyramid-backend": "base", "content-type": "text/event-stream"}
        return httpx.Response(status, headers=headers, content=b"".join(STREAMS[stream]) if status == 200 else b"{}")

    driver = LoadDriver("http://router", None, "llm", 8, 5.0, "x-llmpyramid-backend", {"base": "base"})

    async def one() -> Outcome:
        async with httpx.AsyncClient(base_url="http://router", transport=httpx.MockTransport(handler)) as client:
            return await driver.one(client, "hello")

    return asyncio.run(one())


@pytest.mark.parametrize(
    ("stream", "ok", "ending"),
    [("complete", True, "completed"), ("done_after_cut", False, "clean_truncated"),
     ("eof_after_cut", False, "clean_truncated"), ("error_event", False, "error_event")],
)  # fmt: skip
def test_a_cut_answer_that_ends_cleanly_is_the_contract_breach_an_error_event_is_honest(stream, ok, ending):
    out = _drive(stream)
    assert (out.ok, out.ending, out.backend, out.streamed) == (ok, ending, "base", True)
    assert out.truncated_clean == (ending == "clean_truncated")
    if ending == "clean_truncated":
        assert "truncated answer ended cleanly" in str(out.sample.error)
        assert "clean end of stream" in str(contract_breach([out]))
    else:
        assert contract_breach([out]) is None


def test_a_non_2xx_answer_is_an_http_error_not_a_broken_stream():
    out = _drive("complete", status=503)
    assert (out.ok, out.ending, out.streamed, out.broken) == (False, "http_error", False, False)


def _o(start: float, end: float, ok: bool = True, ttft: float | None = 100.0, backend: str = "base") -> Outcome:
    latency = (end - start) * 1000
    sample = Sample(start=start, kind="chat_stream", latency_ms=latency, ok=ok, ttft_ms=ttft if ok else None)
    return Outcome(sample, backend=backend, status=200, streamed=True)


def test_time_back_within_slo_counts_a_failure_as_an_infinite_ttft():
    outs = [_o(9, 10.5, ok=False), _o(9, 11), _o(10, 12), _o(11, 13), _o(12, 14, ttft=5000), _o(13, 15), _o(14, 16)]
    # windows of 2 by end time: (fail, 11) no; (11, 12) yes -> 2 s after the fault at 10
    assert back_within_slo(outs, since=10.0, slo_ms=1000, window=2) == 2.0
    assert back_within_slo(outs, since=10.0, slo_ms=50, window=2) is None  # never within the SLO


def _topology(fault: object | None = None) -> Topology:
    base = Backend("base", None, slots=2, fault=fault)  # type: ignore[arg-type]
    return Topology("http://router", None, "llm", {"base": base, "burst": Backend("burst", None)})


@pytest.mark.parametrize(
    ("raised", "declared", "status"),
    [(None, False, "passed"), (scenarios.GateFailed("x"), False, "failed"),
     (scenarios.GateFailed("x"), True, "xfailed"), (None, True, "xpassed"),
     (scenarios.Inconclusive("too few"), True, "failed")],
)  # fmt: skip
def test_a_declared_deviation_is_xfailed_when_it_shows_and_xpassed_when_the_router_does_better(
    monkeypatch, raised, declared, status
):
    async def script(sc: scenarios.Scenario) -> dict[str, object]:
        if raised is not None:
            raise raised
        return {}

    monkeypatch.setitem(scenarios.SCRIPTS, "a", script)
    settings = HybridSettings.from_env(environ={"HYBRID_KNOWN_DEVIATIONS": "a" if declared else "none"})
    result = asyncio.run(scenarios.run_scenario("a", _topology(), settings, lambda _m: None))
    assert result.status == status
    if status == "xfailed":
        assert result.error == "declared deviation (declared in HYBRID_KNOWN_DEVIATIONS): x"
    if raised is not None and isinstance(raised, scenarios.Inconclusive):
        assert result.error == "inconclusive: too few"  # too few samples is never excused by a declaration


def test_fault_proxy_scenarios_skip_without_a_fault_proxy_and_reference_routers_declare_h():
    assert "fault proxy" in str(scenarios.skip_reason("g", _topology()))
    assert scenarios.skip_reason("g", _topology(fault=object())) is None
    for router in ("litellm", "haproxy"):
        settings = HybridSettings.from_env(environ={"HYBRID_ROUTER": router})
        assert scenarios.declared("h", settings) and not scenarios.declared("g", settings)
    external = HybridSettings.from_env(environ={"HYBRID_ROUTER_URL": "http://r", "HYBRID_KNOWN_DEVIATIONS": "g"})
    assert scenarios.declarations(external) == {"g": "declared in HYBRID_KNOWN_DEVIATIONS"}
    assert scenarios.declarations(HybridSettings.from_env(environ={"HYBRID_ROUTER_URL": "http://r"})) == {}


def test_cost_per_slo_request_spreads_each_price_over_measured_capacity():
    outs = [_o(0, 0.5), _o(0, 1.5), _o(0, 2.0, backend="burst"), _o(0, 9.0, ttft=60_000, backend="burst")]
    settings = HybridSettings.from_env(environ={"HYBRID_BASE_MONTHLY_USD": "73"})
    cost = cost_per_slo_request([ScenarioResult("b", "passed", 1.0, outcomes=outs)], {"base": 2, "burst": 4}, settings)
    # base: $73/730 h = $0.1/h; mean SLO-meeting latency 1 s over 2 slots -> 0.1/3600 * 1 / 2
    assert cost["base"]["usd"] == pytest.approx(0.1 / 3600 / 2, rel=1e-3) and cost["base"]["capacity_rps"] == 2.0
    assert cost["burst"]["slo_met"] == 1 and cost["burst"]["served"] == 2  # the 60 s TTFT missed the SLO
    assert "pinned catalog" in cost["burst"]["price"] and cost["burst"]["usd"] > 0
    none = cost_per_slo_request([], {"base": 2, "burst": 4}, settings)
    assert none["base"]["usd"] is None and "no SLO-meeting request" in none["base"]["reason"]


def test_haproxy_stated_fail_back_is_rise_checks_inter_apart(tmp_path):
    cfg = tmp_path / "h.cfg"
    cfg.write_text("backend b\n    default-server inter 500ms fall 2 rise 3 observe layer7\n")
    assert haproxy.HAProxyRouter(cfg, tmp_path, startup_timeout=1).stated_fail_back_s() == 1.5
    cfg.write_text("backend b\n    server s 127.0.0.1:1 check\n")
    assert haproxy.HAProxyRouter(cfg, tmp_path, startup_timeout=1).stated_fail_back_s() is None
    ref = haproxy.HAProxyRouter(HybridSettings.from_env(environ={"HYBRID_ROUTER": "haproxy"}).router_config_path,
                                tmp_path, startup_timeout=1)  # fmt: skip
    assert ref.stated_fail_back_s() == 2.0


def test_haproxy_binary_is_the_given_one_then_path_then_debians_package(tmp_path, monkeypatch):
    exe = tmp_path / "haproxy"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert haproxy.haproxy_command(exe) == (exe, {})
    with pytest.raises(haproxy.ConfigError, match="not an executable file"):
        haproxy.haproxy_command(tmp_path / "missing")
    monkeypatch.setattr(haproxy.shutil, "which", lambda name: str(exe) if name == "haproxy" else None)
    assert haproxy.haproxy_command() == (exe, {})
    monkeypatch.setattr(haproxy.shutil, "which", lambda name: None)  # no haproxy, no apt-get
    with pytest.raises(haproxy.ConfigError, match=r"haproxy not found .*HYBRID_HAPROXY_BIN"):
        haproxy.haproxy_command()


def test_library_depends_are_the_lib_packages_apt_lists(monkeypatch):
    listing = "haproxy\n  Depends: libc6\n  Depends: adduser\n  Depends: liblua5.3-0\n  Depends: <libfoo>\n"
    monkeypatch.setattr(haproxy, "_run", lambda argv, cwd=None: type("Done", (), {"stdout": listing})())
    assert haproxy._library_depends("haproxy") == ["libc6", "liblua5.3-0"]


def test_the_reference_haproxy_file_names_every_variable_the_topology_sets():
    text = Path(HybridSettings.from_env(environ={"HYBRID_ROUTER": "haproxy"}).router_config_path).read_text()
    for var in ("HYBRID_ROUTER_BIND", "HYBRID_ROUTER_KEY", "HYBRID_BACKEND_API_KEY", "HYBRID_BASE_ADDR",
                "HYBRID_BURST_ADDR", "HYBRID_BASE_SLOTS", "HYBRID_BURST_SLOTS"):  # fmt: skip
        assert "${" + var + "}" in text
    assert "balance first" in text and "retry-on" in text and "option httpchk GET /health" in text
