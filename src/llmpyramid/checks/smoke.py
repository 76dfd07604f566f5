"""Smoke probes: is the deployment up and answering sensibly?

The latency gate (SMOKE_LATENCY_MS) is meant to catch a server that is slow on every request
(stuck, swapping, a debug build, the wrong model), not to measure performance — tail latency is the
load layer's job, with its SLOs. So it judges the median of the samples, and what the server measured
when it says so (llama.cpp's `timings`: prompt_ms + predicted_ms), because the client's wall time also
counts the network, proxies and the client's own scheduling. p95 and max are reported, not judged:
on a 2-core box with two CPU burners a healthy server took 290-690 ms per short completion, and about
one request in 30 stalled ~10 s inside llama.cpp (its threads wait for a descheduled peer), which a
p95 of five samples would turn into a red smoke run. Measured (SmolLM2-135M, 8 tokens): quiet median
100 ms, busy median 505 ms — the 2000 ms default leaves 4x room on a busy box.
Fewer samples than `LATENCY_MIN_SAMPLES` give no verdict: it is "inconclusive", a failure.
"""

from __future__ import annotations

import time
from typing import Any

from llmpyramid.checks.shared import (
    DETERMINISTIC,
    PROMPT,
    Metrics,
    check_completion_body,
    check_health,
    check_models,
    check_status,
    check_usage,
    json_object,
    require,
    short,
)
from llmpyramid.client import KINDS, Client, Kind, message_text, percentile

LATENCY_MIN_SAMPLES = 5  # a median that two stalls cannot move


def probe_health(client: Client) -> Metrics:
    started = time.perf_counter()
    check_health(client.get("/health"))
    return {"latency_ms": (time.perf_counter() - started) * 1000}


def probe_completion_accepted(client: Client) -> Metrics:
    response, ms = client.timed("completion", "Hello", max_tokens=10)
    check_status(response, 200, "POST /v1/completions")
    body = json_object(response, "POST /v1/completions")
    require("choices" in body, f"POST /v1/completions: no 'choices' in {short(body)}")
    return {"latency_ms": ms}


def probe_completion_fields(client: Client, kind: Kind = "completion") -> Metrics:
    spec = KINDS[kind]
    response, ms = client.timed(kind, spec.payload(PROMPT), max_tokens=8, **DETERMINISTIC)
    what = spec.what
    check_status(response, 200, what)
    body = json_object(response, what)
    check_completion_body(body, kind)
    require(message_text(body, kind).strip(), f"{what}: the answer's text is empty")
    return {"latency_ms": ms, **check_usage(body, what)}


def probe_models(client: Client, expected_model: str | None) -> Metrics:
    response = client.get("/v1/models")
    check_status(response, 200, "GET /v1/models")
    ids = check_models(json_object(response, "GET /v1/models"), expected_model)
    return {"models": len(ids)}


def server_time_ms(body: Any) -> float | None:
    """The time the server says it spent on the request (llama.cpp `timings`), or None."""
    timings = body.get("timings") if isinstance(body, dict) else None
    if not isinstance(timings, dict):
        return None
    parts = [timings.get("prompt_ms"), timings.get("predicted_ms")]
    ms = [float(p) for p in parts if isinstance(p, int | float) and not isinstance(p, bool) and p >= 0]
    return sum(ms) if len(ms) == len(parts) else None


def check_latency(
    wall_ms: list[float],
    server_ms: list[float],
    threshold_ms: float,
    *,
    min_samples: int = LATENCY_MIN_SAMPLES,
    what: str = "completion",
) -> Metrics:
    """Median of the server-measured times when every request reported one, else of the wall times."""
    by_server = bool(wall_ms) and len(server_ms) == len(wall_ms)
    judged = server_ms if by_server else wall_ms
    metrics: Metrics = {
        "samples": len(judged),
        "min_samples": min_samples,
        "measured_by": "server timings" if by_server else "client wall time",
        "p50_ms": percentile(judged, 50),
        "p95_ms": percentile(judged, 95),
        "p99_ms": percentile(judged, 99),
        "max_ms": max(judged) if judged else None,
        "wall_p50_ms": percentile(wall_ms, 50),
        "wall_p95_ms": percentile(wall_ms, 95),
        "threshold_ms": threshold_ms,
    }
    require(
        len(judged) >= min_samples,
        f"inconclusive: only {len(judged)} samples (need {min_samples}) for the median {what} latency; "
        "raise SMOKE_LATENCY_SAMPLES",
        metrics,
    )
    p50 = metrics["p50_ms"]
    require(
        p50 <= threshold_ms,
        f"median {what} latency {p50:.0f}ms ({metrics['measured_by']}) > threshold {threshold_ms:.0f}ms over "
        f"{len(judged)} requests (p95 {metrics['p95_ms']:.0f}ms); raise SMOKE_LATENCY_MS or find what slows the server",
        metrics,
    )
    return metrics


def probe_latency(client: Client, samples: int, threshold_ms: float) -> Metrics:
    client.completion("Hi", max_tokens=1)  # warm-up, not measured
    wall, server = [], []
    for i in range(samples):
        response, ms = client.timed("completion", f"Latency probe {i}:", max_tokens=8, **DETERMINISTIC)
        check_status(response, 200, "POST /v1/completions")
        wall.append(ms)
        measured = server_time_ms(json_object(response, "POST /v1/completions"))
        if measured is not None:
            server.append(measured)
    return check_latency(wall, server, threshold_ms)


__all__ = [
    "LATENCY_MIN_SAMPLES", "check_latency", "probe_completion_accepted",
    "probe_completion_fields", "probe_health", "probe_latency", "probe_models", "server_time_ms",
]  # fmt: skip
