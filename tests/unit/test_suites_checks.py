"""Every check of the smoke, integration and contract suites fails on its broken form.

The suites call `llmpyramid.checks.probe_*`; here the same probes run against a fake server
(tests/support/fake_openai.py) that is healthy by default — every probe must pass — and serves one
broken form per fault — the probe must fail with a one-line CheckFailed (metrics attached where
something was measured). A check that cannot be shown to fail does not count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from llmpyramid import checks
from llmpyramid.client import Client
from tests.support.fake_openai import MODEL, FakeOpenAI

KEY = "sk-unit"

Probe = Callable[[Client], Any]


def _memory(c: Client) -> Any:
    return checks.probe_memory(c, lambda: checks.metrics_rss(c), 10, 20.0, "fake /metrics")


def _auth(c: Client) -> Any:
    with Client(c.target, api_key=False) as anonymous:
        return checks.probe_auth(anonymous, KEY)


PROBES: dict[str, Probe] = {
    "health": checks.probe_health,
    "completion_accepted": checks.probe_completion_accepted,
    "completion_fields": lambda c: checks.probe_completion_fields(c, "completion"),
    "chat_fields": lambda c: checks.probe_completion_fields(c, "chat"),
    "models": lambda c: checks.probe_models(c, MODEL),
    "latency": lambda c: checks.probe_latency(c, checks.LATENCY_MIN_SAMPLES, 150.0),
    "concurrency": lambda c: checks.probe_concurrency(c, 4),
    "stream_completion": lambda c: checks.probe_stream(c, "completion"),
    "stream_chat": lambda c: checks.probe_stream(c, "chat"),
    **{f"invalid:{case}": (lambda c, case=case: checks.probe_invalid_input(c, case)) for case in checks.INVALID_INPUTS},
    "max_tokens_completion": lambda c: checks.probe_max_tokens(c, "completion", 5),
    "max_tokens_chat": lambda c: checks.probe_max_tokens(c, "chat", 5),
    "stop_completion": lambda c: checks.probe_stop(c, "completion"),
    "stop_chat": lambda c: checks.probe_stop(c, "chat"),
    "auth": _auth,
    "memory": _memory,
    "contract_completion": lambda c: checks.probe_contract_body(c, "completion"),
    "contract_chat": lambda c: checks.probe_contract_body(c, "chat"),
    "contract_models": checks.probe_contract_models,
    "contract_stream_completion": lambda c: checks.probe_contract_stream(c, "completion"),
    "contract_stream_chat": lambda c: checks.probe_contract_stream(c, "chat"),
    "contract_stream_usage": lambda c: checks.probe_contract_stream(c, "chat", include_usage=True),
    "content_types": checks.probe_content_types,
    "contract_error": checks.probe_contract_error,
    "openai_sync": checks.probe_openai_sync,
    "openai_stream": checks.probe_openai_stream,
    "openai_async": checks.probe_openai_async,
}

# (probe, fault) -> the broken form the probe must catch. Every probe appears at least once.
BROKEN: list[tuple[str, str]] = [
    ("health", "health_500"),
    ("completion_accepted", "completion_500"),
    ("completion_accepted", "json_as_text"),
    ("completion_accepted", "missing:choices"),
    *[("completion_fields", f"missing:{f}") for f in ("id", "object", "created", "model", "choices", "usage")],
    *[("completion_fields", f"wrong_type:{f}") for f in ("id", "object", "created", "model", "choices", "usage")],
    ("completion_fields", "bad_usage_sum"),
    ("completion_fields", "no_finish_reason"),
    ("completion_fields", "json_as_text"),
    ("chat_fields", "chat_empty"),
    ("chat_fields", "chat_role"),
    ("chat_fields", "missing:usage"),
    ("models", "models_other"),
    ("models", "models_empty"),
    ("models", "json_as_text"),
    ("latency", "slow"),
    ("concurrency", "swap_answers"),
    ("concurrency", "concurrent_500"),
    *[
        (s, f)
        for s in ("stream_completion", "stream_chat")
        for f in (
            "stream_no_done",
            "stream_json_content_type",
            "stream_single_chunk",
            "stream_text_differs",
            "stream_after_done",
            "stream_not_json",
            "stream_no_finish",
            "stream_text_after_finish",
        )
    ],
    *[(f"invalid:{case}", f) for case in checks.INVALID_INPUTS for f in ("invalid_200", "invalid_500")],
    *[
        (f"invalid:{case}", f)
        for case in ("malformed-json", "negative-max-tokens")
        for f in (
            "error_plain_text",
            "error_no_object",
            "invalid_crash",
        )
    ],
    ("max_tokens_completion", "ignore_max_tokens"),
    ("max_tokens_chat", "ignore_max_tokens"),
    ("max_tokens_completion", "missing:usage"),
    ("stop_completion", "ignore_stop"),
    ("stop_completion", "stop_keeps_sequence"),
    ("stop_completion", "stop_wrong_reason"),
    ("stop_chat", "ignore_stop"),
    ("auth", "auth_ignored"),
    ("auth", "wrong_key_accepted"),
    ("auth", "health_needs_auth"),
    ("memory", "leak"),
    ("memory", "flaky_500"),
    ("contract_completion", "missing:id"),
    ("contract_completion", "created_float"),
    ("contract_completion", "missing:usage"),
    ("contract_completion", "json_as_text"),
    ("contract_chat", "wrong_type:object"),
    ("contract_chat", "chat_role"),
    ("contract_models", "model_created_string"),
    ("contract_models", "json_as_text"),
    ("contract_stream_completion", "stream_chunk_missing_id"),
    ("contract_stream_chat", "stream_chunk_missing_id"),
    ("contract_stream_chat", "stream_no_done"),
    ("contract_stream_usage", "stream_usage_ignored"),
    ("content_types", "json_as_text"),
    ("content_types", "stream_json_content_type"),
    ("content_types", "error_plain_text"),
    ("contract_error", "error_code_int"),
    ("contract_error", "error_no_object"),
    ("contract_error", "error_plain_text"),
    ("openai_sync", "chat_empty"),
    ("openai_sync", "completion_500"),
    ("openai_stream", "stream_single_chunk"),
    ("openai_stream", "stream_no_finish"),
    ("openai_async", "chat_empty"),
]


def _client(fake: FakeOpenAI) -> Client:
    return Client(fake.target, timeout=10)


@pytest.mark.parametrize("probe", list(PROBES))
def test_probe_passes_on_a_healthy_server(probe: str) -> None:
    with FakeOpenAI(api_key=KEY if probe == "auth" else None) as fake, _client(fake) as c:
        PROBES[probe](c)


@pytest.mark.parametrize(("probe", "fault"), BROKEN, ids=[f"{p}-{f}" for p, f in BROKEN])
def test_probe_fails_on_broken_form(probe: str, fault: str) -> None:
    fake = FakeOpenAI(fault, api_key=KEY if probe == "auth" else None)
    with fake, _client(fake) as c, pytest.raises(AssertionError) as info:
        PROBES[probe](c)
    message = str(info.value)
    assert message and "\n" not in message, f"verdict must be one line: {message!r}"


def test_every_probe_is_proven_to_fail() -> None:
    assert {p for p, _ in BROKEN} == set(PROBES)


def test_every_probe_of_every_layer_is_exercised() -> None:
    """A new `probe_*` in llmpyramid.checks without an entry in PROBES (and so a broken form) fails here."""
    used = {name for probe in PROBES.values() for name in (probe.__name__, *probe.__code__.co_names)}
    assert {name for name in checks.__all__ if name.startswith("probe_")} <= used


def test_latency_failure_states_measured_vs_threshold() -> None:
    with FakeOpenAI("slow") as fake, _client(fake) as c, pytest.raises(checks.CheckFailed) as info:
        PROBES["latency"](c)
    assert "> threshold 150ms" in str(info.value) and "(client, end to end)" in str(info.value)
    assert info.value.metrics["p50_ms"] > 150 and info.value.metrics["threshold_ms"] == 150.0
    assert {"p50_ms", "p95_ms", "p99_ms", "samples"} <= set(info.value.metrics)


def test_memory_failure_carries_measurements() -> None:
    with FakeOpenAI("leak") as fake, _client(fake) as c, pytest.raises(checks.CheckFailed) as info:
        PROBES["memory"](c)
    assert info.value.metrics["growth_mb"] > 20 and info.value.metrics["bound_mb"] == 20.0


def test_stream_timing_is_measured() -> None:
    with FakeOpenAI() as fake, _client(fake) as c:
        result = c.stream("chat", [{"role": "user", "content": "hi"}], max_tokens=5)
    assert result.done and len(result.pieces) == 5
    assert result.ttft_ms is not None and len(result.itl_ms) == 4
    assert result.timing()["chunks"] == 6  # 5 text chunks + the finish chunk
