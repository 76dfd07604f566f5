"""The smoke latency gate: what the client felt is judged, split inside/outside the server; too few samples fail;
a slow verdict on a starved client is inconclusive, never passed or failed."""

from __future__ import annotations

import pytest

from llmpyramid import checks
from llmpyramid.client import Client
from tests.support.fake_openai import FakeOpenAI


def test_too_few_samples_are_inconclusive_never_passed() -> None:
    with FakeOpenAI() as fake, Client(fake.target, timeout=10) as c, pytest.raises(checks.CheckFailed) as info:
        checks.probe_latency(c, checks.LATENCY_MIN_SAMPLES - 1, 10_000.0)
    need = checks.LATENCY_MIN_SAMPLES
    assert str(info.value).startswith(f"inconclusive: only {need - 1} samples (need {need})")
    assert info.value.metrics["samples"] == need - 1


def test_one_stall_among_the_samples_does_not_fail_the_gate() -> None:
    """A busy box stalls single requests (seen: ~10 s in 30); a service slow on every request still fails."""
    assert checks.check_latency([500.0] * 4 + [9600.0], [], 2000.0)["p95_ms"] > 2000
    with pytest.raises(checks.CheckFailed, match=r"^median completion latency 2500ms \(client, end to end\)"):
        checks.check_latency([2500.0] * 5, [], 2000.0)


def test_no_samples_at_all_are_inconclusive() -> None:
    with pytest.raises(checks.CheckFailed, match=r"^inconclusive: only 0 samples"):
        checks.check_latency([], [], 1000.0)


def test_time_outside_the_server_fails_the_gate_and_the_verdict_says_where_it_went() -> None:
    """A slow proxy or network in front of a healthy server is what users feel: it fails, and says so."""
    slow_hop = FakeOpenAI("llamacpp", "slow_transport")
    with slow_hop, Client(slow_hop.target, timeout=10) as c, pytest.raises(checks.CheckFailed) as info:
        checks.probe_latency(c, checks.LATENCY_MIN_SAMPLES, 150.0)
    assert not isinstance(info.value, checks.Inconclusive)
    message, m = str(info.value), info.value.metrics
    assert "(client, end to end) > threshold 150ms" in message and "outside it" in message
    assert m["outside_server_p50_ms"] >= 200 > 150 > m["server_p50_ms"]


def test_a_healthy_server_passes_with_its_split_reported() -> None:
    with FakeOpenAI("llamacpp") as fake, Client(fake.target, timeout=10) as c:
        metrics = checks.probe_latency(c, checks.LATENCY_MIN_SAMPLES, 150.0)
    assert metrics["measured_by"] == "client, end to end" and metrics["p50_ms"] < 150
    assert metrics["verdict"].startswith(f"median {metrics['p50_ms']:.0f}ms, of which ")
    assert metrics["ttft_samples"] == checks.LATENCY_MIN_SAMPLES and metrics["ttft_p50_ms"] < 150


def test_a_slow_server_fails_and_the_time_is_inside_it() -> None:
    slow = FakeOpenAI("llamacpp", "slow")
    with slow, Client(slow.target, timeout=10) as c, pytest.raises(checks.CheckFailed) as info:
        checks.probe_latency(c, checks.LATENCY_MIN_SAMPLES, 150.0)
    assert "> threshold 150ms" in str(info.value) and info.value.metrics["server_p50_ms"] >= 200


def test_a_late_first_token_fails_the_streamed_gate() -> None:
    late = FakeOpenAI("slow_first_token")
    first_token = r"^median time to first token of a streamed completion"
    with late, Client(late.target, timeout=10) as c, pytest.raises(checks.CheckFailed, match=first_token):
        checks.probe_latency(c, checks.LATENCY_MIN_SAMPLES, 150.0)


def test_a_starved_client_makes_a_slow_verdict_inconclusive_never_failed_or_passed() -> None:
    starved = [150.0] * 20
    with pytest.raises(checks.Inconclusive, match=r"^inconclusive: median .*scheduling lag p95 150ms > 100ms"):
        checks.check_latency([2500.0] * 5, [], 2000.0, client_lag_ms=starved, lag_bound_ms=100.0)
    # a fast verdict needs no excuse, and a slow one on a lively client is a failure
    assert checks.check_latency([500.0] * 5, [], 2000.0, client_lag_ms=starved)["p50_ms"] == 500.0
    with pytest.raises(checks.CheckFailed) as info:
        checks.check_latency([2500.0] * 5, [], 2000.0, client_lag_ms=[2.0] * 20)
    assert not isinstance(info.value, checks.Inconclusive)


def test_the_lag_probe_sees_a_blocked_client_and_not_a_slow_peer() -> None:
    import time

    with checks.SchedulingLag() as quiet:
        time.sleep(0.3)  # waiting on a slow server: this thread sleeps, the probe keeps its pace
    with checks.SchedulingLag() as blocked:
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:  # holding the GIL like a starved process holds nothing
            sum(range(10_000))
    assert len(quiet.lag_ms) >= 10
    assert max(blocked.lag_ms or [0]) >= max(quiet.lag_ms)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"timings": {"prompt_ms": 1.5, "predicted_ms": 2.5}}, 4.0),
        ({"timings": {"prompt_ms": 1.5}}, None),
        ({"timings": {"prompt_ms": True, "predicted_ms": 2}}, None),
        ({"timings": {"prompt_ms": -1, "predicted_ms": 2}}, None),
        ({"timings": "fast"}, None),
        ({}, None),
        ([], None),
    ],
)
def test_server_time_reads_only_well_formed_timings(body: object, expected: float | None) -> None:
    assert checks.server_time_ms(body) == expected
