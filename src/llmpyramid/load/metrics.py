"""Per-request LLM samples and what they add up to: the seed's `load_test` block and more.

A Sample is recorded once per request by the locust users (see users.py). Token counts come
from the server (`usage.completion_tokens`, else llama.cpp `timings.predicted_n`); the harness
never re-tokenises. Percentiles are exact (numpy over the raw samples), not histogram buckets.

Definitions (as in `vllm bench serve` / guidellm):
  latency  end-to-end: request sent -> last byte
  TTFT     request sent -> first chunk carrying generated text (streaming only)
  ITL      gap between consecutive text-carrying chunks, pooled over all requests
  TPOT     per request (latency - TTFT) / (output_tokens - 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Sample:
    start: float  # epoch seconds when the request was sent
    kind: str  # chat_stream | completion_stream | chat | completion
    latency_ms: float
    ok: bool
    error: str | None = None
    ttft_ms: float | None = None
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    tokens_source: str | None = None  # usage | timings | chunks
    itl_ms: list[float] = field(default_factory=list)
    server_prompt_ms: float | None = None  # llama.cpp timings, for the fidelity benchmark
    server_predicted_ms: float | None = None
    users: int | None = None  # active users when the request started (for sweeps)

    @property
    def end(self) -> float:
        return self.start + self.latency_ms / 1000.0

    @property
    def tpot_ms(self) -> float | None:
        if self.ttft_ms is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.latency_ms - self.ttft_ms) / (self.output_tokens - 1)

    # Compact wire form for locust's worker -> master reports (msgpack-friendly lists).
    def to_wire(self) -> list[Any]:
        return [self.start, self.kind, self.latency_ms, self.ok, self.error, self.ttft_ms, self.output_tokens,
                self.prompt_tokens, self.tokens_source, self.itl_ms, self.server_prompt_ms,
                self.server_predicted_ms, self.users]  # fmt: skip

    @classmethod
    def from_wire(cls, w: Sequence[Any]) -> Sample:
        return cls(*w)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Collector:
    """Samples of one process; a locust master also merges the workers' samples into it."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._unsent = 0  # index of the first sample not yet reported to the master

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def drain_wire(self) -> list[list[Any]]:
        out = [s.to_wire() for s in self.samples[self._unsent :]]
        self._unsent = len(self.samples)
        return out

    def extend_wire(self, wire: Iterable[Sequence[Any]]) -> None:
        self.samples.extend(Sample.from_wire(w) for w in wire)

    def clear(self) -> None:
        self.samples.clear()
        self._unsent = 0


def _pct(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    arr = np.asarray(values, dtype=float)
    return None if arr.size == 0 else round(float(np.percentile(arr, q)), 2)


def summarize(samples: Sequence[Sample], duration_s: float | None = None) -> dict[str, Any]:
    """The seed's `load_test` metrics for these samples. duration_s defaults to first start -> last end."""
    n = len(samples)
    if n == 0:
        return {"requests": 0, "failures": 0, "error_rate": None, "requests_per_second": 0.0,
                "output_tokens_per_second": 0.0}  # fmt: skip
    if duration_s is None:
        duration_s = max(s.end for s in samples) - min(s.start for s in samples)
    duration_s = max(duration_s, 1e-9)
    ok = [s for s in samples if s.ok]
    failures = n - len(ok)
    lat = [s.latency_ms for s in ok]
    ttft = [s.ttft_ms for s in ok if s.ttft_ms is not None]
    itl = [g for s in ok for g in s.itl_ms]
    tpot = [t for s in ok if (t := s.tpot_ms) is not None]
    out_tokens = sum(s.output_tokens or 0 for s in ok)
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            key = (s.error or "unknown error")[:120]
            errors[key] = errors.get(key, 0) + 1
    return {
        "requests": n,
        "failures": failures,
        "error_rate": round(failures / n, 4),
        "requests_per_second": round(len(ok) / duration_s, 3),
        "p50_latency_ms": _pct(lat, 50),
        "p95_latency_ms": _pct(lat, 95),
        "p99_latency_ms": _pct(lat, 99),
        "ttft_p50_ms": _pct(ttft, 50),
        "ttft_p95_ms": _pct(ttft, 95),
        "ttft_p99_ms": _pct(ttft, 99),
        "itl_p50_ms": _pct(itl, 50),
        "itl_p95_ms": _pct(itl, 95),
        "itl_p99_ms": _pct(itl, 99),
        "tpot_p50_ms": _pct(tpot, 50),
        "tpot_p95_ms": _pct(tpot, 95),
        "output_tokens": out_tokens,
        "output_tokens_per_second": round(out_tokens / duration_s, 2),
        "duration_seconds": round(duration_s, 2),
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:10]),
    }


def time_series(samples: Sequence[Sample], bucket_s: float = 1.0) -> dict[str, list[float | None]]:
    """Per-bucket throughput and latency percentiles (by completion time), for the plots."""
    if not samples:
        return {"t": [], "rps": [], "tokens_per_s": [], "p50_ms": [], "p95_ms": [], "ttft_p50_ms": [],
                "errors_per_s": [], "users": []}  # fmt: skip
    t0 = min(s.start for s in samples)
    nb = int((max(s.end for s in samples) - t0) // bucket_s) + 1
    buckets: list[list[Sample]] = [[] for _ in range(nb)]
    for s in samples:
        buckets[int((s.end - t0) // bucket_s)].append(s)
    series: dict[str, list[float | None]] = {k: [] for k in
              ("t", "rps", "tokens_per_s", "p50_ms", "p95_ms", "ttft_p50_ms", "errors_per_s", "users")}  # fmt: skip
    for i, b in enumerate(buckets):
        ok = [s for s in b if s.ok]
        series["t"].append(round((i + 1) * bucket_s, 3))
        series["rps"].append(len(ok) / bucket_s)
        series["tokens_per_s"].append(sum(s.output_tokens or 0 for s in ok) / bucket_s)
        series["p50_ms"].append(_pct([s.latency_ms for s in ok], 50))
        series["p95_ms"].append(_pct([s.latency_ms for s in ok], 95))
        series["ttft_p50_ms"].append(_pct([s.ttft_ms for s in ok if s.ttft_ms is not None], 50))
        series["errors_per_s"].append((len(b) - len(ok)) / bucket_s)
        series["users"].append(max((s.users or 0 for s in b), default=None))
    return series
