"""Smoke: is the deployment up and answering sensibly? (seed: "Smoke Tests")

Each test is one behaviour; the request and the judgement live in llmpyramid.checks (the same
probes are proven to fail on broken servers in tests/unit/test_suites_checks.py).
"""

from __future__ import annotations

import pytest

from llmpyramid import checks

pytestmark = pytest.mark.smoke


def test_health_endpoint(client, metrics):
    """Health check returns 200."""
    metrics.update(checks.probe_health(client))


def test_completion_basic(client, metrics):
    """/v1/completions accepts a request and answers with choices."""
    metrics.update(checks.probe_completion_accepted(client))


def test_completion_fields(client, metrics):
    """The completion carries id, object, created, model, choices[].text/finish_reason and usage."""
    metrics.update(checks.probe_completion_fields(client, "completion"))


def test_chat_completion(client, metrics):
    """/v1/chat/completions answers with an assistant message."""
    metrics.update(checks.probe_completion_fields(client, "chat"))


def test_models_lists_served_model(client, served_model, metrics):
    """/v1/models lists the model the server serves."""
    metrics.update(checks.probe_models(client, served_model))


def test_completion_latency(client, thresholds, metrics):
    """The median end-to-end latency of a short completion, and the time to the first token of a streamed
    one, stay under SMOKE_LATENCY_MS as the client measured them (split inside/outside the server when it
    reports llama.cpp `timings`). Fewer samples than the minimum is a failure; a slow verdict while the client
    itself was starved is "inconclusive": skipped with the numbers, never passed (llmpyramid.checks.smoke)."""
    try:
        metrics.update(checks.probe_latency(
            client, thresholds.smoke_latency_samples, thresholds.smoke_latency_ms, thresholds.smoke_client_lag_ms
        ))  # fmt: skip
    except checks.Inconclusive as exc:
        metrics.update(exc.metrics)
        pytest.skip(str(exc))
