"""Smoke probes: is the deployment up and answering sensibly?

The latency gate (SMOKE_LATENCY_MS) judges what users feel: the client's end-to-end time of a short
completion, and the time to the first token of a streamed one. Everything in front of the server (a
saturated load balancer, a slow network path, a mis-sized proxy) counts, because staging and the cloud
nodes sit behind exactly such layers. Where the server reports its own time (llama.cpp's `timings`:
prompt_ms + predicted_ms) the verdict splits the median into the time inside the server and outside it
("median 3410 ms, of which 3020 ms outside the server").

The gate is about a service slow on every request, not tail latency (the load layer's job, with its
SLOs): it judges the median. p95 and max are reported, not judged: on a 2-core box with two CPU burners a
healthy server took 290-690 ms per short completion, and about one request in 30 stalled ~10 s inside
llama.cpp. A slow verdict is "inconclusive" (the test is skipped with the numbers) only when the client
machine itself is measurably starved: a thread of this process that sleeps 10 ms at a time woke up late
by more than SMOKE_CLIENT_LAG_MS at the 95th percentile while the samples ran — a slow server or proxy
never moves that probe. Fewer samples than `LATENCY_MIN_SAMPLES` give no verdict: a failure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from llmpyramid.checks.shared import (
    DETERMINISTIC,
    PROMPT,
    CheckFailed,
    Inconclusive,
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
from llmpyramid.config import CLIENT_LAG_BOUND_MS

LATENCY_MIN_SAMPLES = 5  # a median that two stalls cannot move
LAG_INTERVAL_S = 0.01


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


class SchedulingLag:
    """How late this process's threads wake up while a probe runs: a daemon thread sleeps LAG_INTERVAL_S at
    a time and records each oversleep. A starved client (the machine running the checks has no CPU for it,
    or swaps) shows here; a slow server or proxy does not, since the probe thread waits on nothing but the
    scheduler."""

    def __init__(self) -> None:
        self.lag_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduling-lag", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            time.sleep(LAG_INTERVAL_S)
            self.lag_ms.append(max(0.0, (time.perf_counter() - started - LAG_INTERVAL_S) * 1000))

    def __enter__(self) -> SchedulingLag:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def check_latency(
    wall_ms: list[float],
    server_ms: list[float],
    threshold_ms: float,
    *,
    client_lag_ms: list[float] | None = None,
    lag_bound_ms: float = CLIENT_LAG_BOUND_MS,
    min_samples: int = LATENCY_MIN_SAMPLES,
    what: str = "completion",
) -> Metrics:
    """The median of what the client measured against the threshold; split inside/outside the server when
    every answer carried the server's own time; "inconclusive" only for a starved client."""
    split = bool(wall_ms) and len(server_ms) == len(wall_ms)
    lag_p95 = percentile(client_lag_ms or [], 95)
    metrics: Metrics = {
        "samples": len(wall_ms),
        "min_samples": min_samples,
        "measured_by": "client, end to end",
        "p50_ms": percentile(wall_ms, 50),
        "p95_ms": percentile(wall_ms, 95),
        "p99_ms": percentile(wall_ms, 99),
        "max_ms": max(wall_ms) if wall_ms else None,
        "threshold_ms": threshold_ms,
        "client_lag_p95_ms": lag_p95,
        "client_lag_bound_ms": lag_bound_ms,
    }
    if split:
        metrics["server_p50_ms"] = percentile(server_ms, 50)
        metrics["outside_server_p50_ms"] = percentile([w - s for w, s in zip(wall_ms, server_ms, strict=True)], 50)
    require(
        len(wall_ms) >= min_samples,
        f"inconclusive: only {len(wall_ms)} samples (need {min_samples}) for the median {what} latency; "
        "raise SMOKE_LATENCY_SAMPLES",
        metrics,
    )
    p50 = metrics["p50_ms"]
    where = ""
    if split:
        inside, outside = metrics["server_p50_ms"], metrics["outside_server_p50_ms"]
        where = f", of which {inside:.0f}ms inside the server and {outside:.0f}ms outside it (proxy, network, client)"
    metrics["verdict"] = f"median {p50:.0f}ms{where}"
    if p50 <= threshold_ms:
        return metrics
    slow = (f"median {what} latency {p50:.0f}ms ({metrics['measured_by']}) > threshold {threshold_ms:.0f}ms over "
            f"{len(wall_ms)} requests{where}")  # fmt: skip
    if lag_p95 is not None and lag_p95 > lag_bound_ms:
        raise Inconclusive(
            f"inconclusive: {slow}; but the client itself was starved (scheduling lag p95 {lag_p95:.0f}ms > "
            f"{lag_bound_ms:.0f}ms), so the time cannot be blamed on the service",
            metrics,
        )
    raise CheckFailed(f"{slow}; p95 {metrics['p95_ms']:.0f}ms; raise SMOKE_LATENCY_MS or find what slows it", metrics)


def probe_latency(
    client: Client, samples: int, threshold_ms: float, lag_bound_ms: float = CLIENT_LAG_BOUND_MS
) -> Metrics:
    """`samples` short completions (end to end, with the server's split) and as many streamed ones (time to
    first token), each median judged against `threshold_ms`, with the client's scheduling lag watched."""
    client.completion("Hi", max_tokens=1)  # warm-up, not measured
    wall, server, ttft = [], [], []
    with SchedulingLag() as lag:
        for i in range(samples):
            response, ms = client.timed("completion", f"Latency probe {i}:", max_tokens=8, **DETERMINISTIC)
            check_status(response, 200, "POST /v1/completions")
            wall.append(ms)
            measured = server_time_ms(json_object(response, "POST /v1/completions"))
            if measured is not None:
                server.append(measured)
        for i in range(samples):
            streamed = client.stream("completion", f"Latency probe {i}:", max_tokens=8, **DETERMINISTIC)
            require(streamed.status_code == 200, f"streamed POST /v1/completions: HTTP {streamed.status_code}")
            if streamed.ttft_ms is not None:
                ttft.append(streamed.ttft_ms)
    metrics = check_latency(wall, server, threshold_ms, client_lag_ms=lag.lag_ms, lag_bound_ms=lag_bound_ms)
    first = check_latency(ttft, [], threshold_ms, client_lag_ms=lag.lag_ms, lag_bound_ms=lag_bound_ms,
                          what="time to first token of a streamed completion")  # fmt: skip
    metrics.update({f"ttft_{k}": v for k, v in first.items() if k in ("samples", "p50_ms", "p95_ms", "max_ms")})
    return metrics


__all__ = [
    "CLIENT_LAG_BOUND_MS", "LATENCY_MIN_SAMPLES", "SchedulingLag", "check_latency", "probe_completion_accepted",
    "probe_completion_fields", "probe_health", "probe_latency", "probe_models", "server_time_ms",
]  # fmt: skip
