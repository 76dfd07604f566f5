"""Integration: end-to-end behaviour of the server (seed: "Integration Tests").

Concurrency, streaming, invalid input, max_tokens / stop, API keys and memory stability. The
requests and judgements live in llmpyramid.checks; tests/unit proves each one fails on its
broken form.
"""

from __future__ import annotations

import pytest

from llmpyramid import checks
from llmpyramid.client import Client

pytestmark = pytest.mark.integration


def test_concurrent_requests_each_get_their_own_answer(client, thresholds, metrics):
    """N simultaneous requests all succeed, and each answer matches its own request."""
    metrics.update(checks.probe_concurrency(client, thresholds.concurrency))


@pytest.mark.parametrize("kind", ["completion", "chat"])
def test_streaming(client, kind, metrics):
    """Incremental chunks, a final finish_reason, `data: [DONE]`, and the same text as non-streamed."""
    metrics.update(checks.probe_stream(client, kind))


@pytest.mark.parametrize("case", list(checks.INVALID_INPUTS))
def test_invalid_input_is_rejected(client, case, metrics):
    """Invalid input gets a 4xx with an OpenAI-style error object, and the server stays healthy."""
    metrics.update(checks.probe_invalid_input(client, case))


@pytest.mark.parametrize("kind", ["completion", "chat"])
@pytest.mark.parametrize("max_tokens", [1, 7])
def test_max_tokens_respected(client, kind, max_tokens, metrics):
    """usage.completion_tokens never exceeds max_tokens."""
    metrics.update(checks.probe_max_tokens(client, kind, max_tokens))


@pytest.mark.parametrize("kind", ["completion", "chat"])
def test_stop_sequence_honoured(client, kind, metrics):
    """Generation ends right before the stop sequence, with finish_reason 'stop'."""
    metrics.update(checks.probe_stop(client, kind))


def test_api_key_enforced(keyed_target, thresholds, metrics):
    """With a key configured: 401 without or with a wrong key, 200 with it; /health stays public."""
    target, key = keyed_target
    with Client(target, api_key=False, timeout=thresholds.request_timeout_s) as anonymous:
        metrics.update(checks.probe_auth(anonymous, key))


def test_memory_stable_under_requests(client, embedded_stack, thresholds, metrics):
    """Server memory grows less than MEMORY_GROWTH_MB over MEMORY_REQUESTS requests."""
    if embedded_stack is not None:
        rss, source = embedded_stack.rss_bytes, "embedded server RSS"
    else:
        if checks.metrics_rss(client) is None:
            pytest.skip("external target exports no process_resident_memory_bytes on /metrics")
        rss, source = (lambda: checks.metrics_rss(client)), "/metrics process_resident_memory_bytes"
    metrics.update(checks.probe_memory(client, rss, thresholds.memory_requests, thresholds.memory_growth_mb, source))
