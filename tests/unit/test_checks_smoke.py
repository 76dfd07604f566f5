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
    """Waiting on a slow server leaves the probe on time (within the starvation bound, whatever else the box
    runs); a client that cannot run makes it late by as long as it could not: here a C-level sort holds the GIL,
    so the probe's thread cannot wake until it ends."""
    import random
    import time

    from llmpyramid.client import percentile
    from llmpyramid.config import CLIENT_LAG_BOUND_MS

    with checks.SchedulingLag() as waiting:
        time.sleep(0.3)  # waiting on a slow server: this thread sleeps, the probe keeps its pace
    data = random.Random(0).sample(range(1_000_000), 1_000_000)
    with checks.SchedulingLag() as blocked:
        time.sleep(0.05)  # the probe is running
        started = time.perf_counter()
        data.sort()  # one C call: the GIL is not released until the list is sorted
        held_ms = (time.perf_counter() - started) * 1000
    assert len(waiting.lag_ms) >= 2 and percentile(waiting.lag_ms, 95) < CLIENT_LAG_BOUND_MS
    assert max(blocked.lag_ms) >= held_ms - 2 * 10, (held_ms, max(blocked.lag_ms))  # less its 10 ms sleep
