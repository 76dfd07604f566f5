"""The smoke latency gate: too few samples is inconclusive, and the server's own measurement wins."""

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
    """A busy box stalls single requests (seen: ~10 s in 30); a server slow on every request still fails."""
    assert checks.check_latency([500.0] * 4 + [9600.0], [], 2000.0)["p95_ms"] > 2000
    with pytest.raises(checks.CheckFailed, match=r"^median completion latency 2500ms \(client wall time\)"):
        checks.check_latency([2500.0] * 5, [], 2000.0)


def test_no_samples_at_all_are_inconclusive() -> None:
    with pytest.raises(checks.CheckFailed, match=r"^inconclusive: only 0 samples"):
        checks.check_latency([], [], 1000.0)


def test_server_timings_are_judged_when_every_answer_has_them() -> None:
    """Time spent outside the server (network, proxy, a busy client) does not fail the gate."""
    with FakeOpenAI("llamacpp", "slow_transport") as fake, Client(fake.target, timeout=10) as c:
        metrics = checks.probe_latency(c, checks.LATENCY_MIN_SAMPLES, 150.0)
    assert metrics["measured_by"] == "server timings"
    assert metrics["p50_ms"] < 150 < metrics["wall_p50_ms"]


def test_a_slow_server_fails_by_its_own_timings() -> None:
    slow = FakeOpenAI("llamacpp", "slow")
    with slow, Client(slow.target, timeout=10) as c, pytest.raises(checks.CheckFailed) as info:
        checks.probe_latency(c, checks.LATENCY_MIN_SAMPLES, 150.0)
    assert "(server timings) > threshold 150ms" in str(info.value)
    assert info.value.metrics["p50_ms"] >= 200


def test_wall_time_is_judged_when_some_answers_lack_timings() -> None:
    metrics = checks.check_latency([10.0] * 5, [1.0] * 4, 50.0)
    assert metrics["measured_by"] == "client wall time" and metrics["p50_ms"] == 10.0


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
