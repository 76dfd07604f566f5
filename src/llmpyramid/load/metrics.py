"""Per-request LLM samples and what they add up to: the seed's `load_test` block and more.

A Sample is recorded once per request by the locust users (see users.py). Token counts come
from the server (`usage.completion_tokens`, else llama.cpp `timings.predicted_n`); the harness
never re-tokenises. Percentiles are exact (numpy over the raw samples), not histogram buckets.

Definitions (as in `vllm bench serve` / guidellm):
  latency  end-to-end: request sent -> last byte
  TTFT     request sent -> first chunk carrying generated text (streaming only)
  ITL      gap between consecutive text-carrying chunks, pooled over all requests
  TPOT     per request (latency - TTFT) / (output_tokens - 1)
  goodput  requests per second that met every per-request SLO limit (latency, TTFT, TPOT), a failed
           request being a miss, and their share of all requests (as in `vllm bench serve --goodput`)
Latency percentiles are given over completed requests and, separately, with each failed request
counted at the run's request timeout (`*_with_failures_ms`): many errors cannot hide behind a
healthy p95 of the requests that happened to complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal


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


class Arrivals:
    """The open-loop schedule as the generator kept it: slots due, requests issued (or dropped at
    the in-flight cap), how late each was issued, and what was still in flight at the end."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.scheduled = self.issued = self.dropped = self.in_flight_at_end = 0
        self.lags_ms: list[float] = []  # how late each slot was issued

    def to_dict(self) -> dict[str, Any]:
        return {"scheduled": self.scheduled, "issued": self.issued, "dropped": self.dropped,
                "in_flight_at_end": self.in_flight_at_end, "lags_ms": self.lags_ms}  # fmt: skip

    def merge(self, other: dict[str, Any]) -> None:
        for key in ("scheduled", "issued", "dropped", "in_flight_at_end"):
            setattr(self, key, getattr(self, key) + other.get(key, 0))
        self.lags_ms.extend(other.get("lags_ms") or [])

    def summary(self) -> dict[str, Any]:
        lags = sorted(self.lags_ms)

        def pct(q: float) -> float | None:
            return round(lags[min(len(lags) - 1, int(q * len(lags)))], 2) if lags else None

        return {"scheduled": self.scheduled, "issued": self.issued, "dropped": self.dropped,
                "in_flight_at_end": self.in_flight_at_end, "issue_lag_p50_ms": pct(0.5),
                "issue_lag_p95_ms": pct(0.95), "issue_lag_max_ms": pct(1.0)}  # fmt: skip


def percentile(
    values: Sequence[float], q: float, *, method: Literal["linear", "inverted_cdf"] = "linear"
) -> float | None:
    """numpy's percentile, rounded; `inverted_cdf` (nearest rank) where values may be infinite (a failure)."""
    import numpy as np  # here, not at import: the front door and locust's start-up do not need it

    arr = np.asarray(values, dtype=float)
    return None if arr.size == 0 else round(float(np.percentile(arr, q, method=method)), 2)


def meets(sample: Sample, limits: dict[str, float]) -> bool:
    """Whether one request met every per-request limit ("latency_ms", "ttft_ms", "tpot_ms"); a failed one
    never does. A limit the request cannot be judged by (no TTFT on a non-streamed request) does not count."""
    if not sample.ok:
        return False
    measured = {"latency_ms": sample.latency_ms, "ttft_ms": sample.ttft_ms, "tpot_ms": sample.tpot_ms}
    return all(measured[k] is None or measured[k] <= limit for k, limit in limits.items())  # type: ignore[operator]


def summarize(
    samples: Sequence[Sample],
    duration_s: float | None = None,
    *,
    limits: dict[str, float] | None = None,
    failure_ms: float | None = None,
) -> dict[str, Any]:
    """The seed's `load_test` metrics for these samples, plus goodput against `limits` and the latency
    percentiles with each failure counted at `failure_ms` (the request timeout), when given.
    duration_s defaults to first start -> last end."""
    n = len(samples)
    if n == 0:
        return {"requests": 0, "completed": 0, "failures": 0, "error_rate": None, "requests_per_second": 0.0,
                "output_tokens_per_second": 0.0, "goodput_rps": 0.0, "goodput_share": None}  # fmt: skip
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
    good = sum(1 for s in samples if meets(s, limits or {}))
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            key = (s.error or "unknown error")[:120]
            errors[key] = errors.get(key, 0) + 1
    out: dict[str, Any] = {
        "requests": n,
        "completed": len(ok),
        "failures": failures,
        "error_rate": round(failures / n, 4),
        "requests_per_second": round(len(ok) / duration_s, 3),
        "goodput_rps": round(good / duration_s, 3),
        "goodput_share": round(good / n, 4),
        "goodput_limits": dict(limits or {}),
        "p50_latency_ms": percentile(lat, 50),
        "p95_latency_ms": percentile(lat, 95),
        "p99_latency_ms": percentile(lat, 99),
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p95_ms": percentile(ttft, 95),
        "ttft_p99_ms": percentile(ttft, 99),
        "itl_p50_ms": percentile(itl, 50),
        "itl_p95_ms": percentile(itl, 95),
        "itl_p99_ms": percentile(itl, 99),
        "tpot_p50_ms": percentile(tpot, 50),
        "tpot_p95_ms": percentile(tpot, 95),
        "output_tokens": out_tokens,
        "output_tokens_per_second": round(out_tokens / duration_s, 2),
        "duration_seconds": round(duration_s, 2),
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:10]),
    }
    if failure_ms is not None:
        failed_at_timeout = [failure_ms] * failures
        failed_streams = [failure_ms for s in samples if not s.ok and s.kind.endswith("_stream")]
        for q in (50, 95, 99):
            out[f"p{q}_latency_with_failures_ms"] = percentile(lat + failed_at_timeout, q)
        out["ttft_p95_with_failures_ms"] = percentile(ttft + failed_streams, 95)
    return out


def percentile_note(summary: dict[str, Any], timeout_s: float) -> str | None:
    """One line naming both p95s when failures move it, e.g. for the verdict; None when they agree."""
    done, honest = summary.get("p95_latency_ms"), summary.get("p95_latency_with_failures_ms")
    if not summary.get("failures") or honest is None or done == honest:
        return None
    over = "no completed request" if done is None else f"{done:g} ms over the {summary['completed']} completed"
    return (
        f"p95 latency: {over}; {honest:g} ms counting the {summary['failures']} failed at the {timeout_s:g} s timeout"
    )


def rolling_window(samples: Sequence[Sample]) -> float:
    """A window that holds ~10 completions at the run's mean rate (5-60 s): 1 s bins of a ~2 req/s
    LLM run are mostly empty and draw zig-zags to zero."""
    if not samples:
        return 5.0
    span = max(s.end for s in samples) - min(s.start for s in samples)
    return min(60.0, max(5.0, 10 * span / len(samples)))


def time_series(samples: Sequence[Sample], window_s: float | None = None, points: int = 120) -> dict[str, Any]:
    """Rolling-window throughput and percentiles over time, for the plots.

    At each of `points` times t, the window (t - window_s, t] holds the requests that completed in
    it (throughput, latency), the first tokens that arrived in it (TTFT) and the token gaps that
    ended in it (ITL, timed from each request's start + TTFT + its gaps). Windows cut by the start
    of the run are divided by the part they cover, not by window_s."""
    import numpy as np

    series: dict[str, Any] = {"window_s": window_s or rolling_window(samples)}
    if not samples:
        return series
    window = series["window_s"]
    t0 = min(s.start for s in samples)

    def by_time(pairs: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        arr = np.array(sorted(pairs), dtype=float).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    ok = [s for s in samples if s.ok]
    done_t, done_ok = by_time([(s.end - t0, float(s.ok)) for s in samples])
    lat_t, lat = by_time([(s.end - t0, s.latency_ms) for s in ok])
    tok_t, tok = by_time([(s.end - t0, float(s.output_tokens or 0)) for s in ok])
    firsts = [(s, s.ttft_ms) for s in ok if s.ttft_ms is not None]
    ttft_t, ttft = by_time([(s.start - t0 + ms / 1000, ms) for s, ms in firsts])
    gap_pairs = []
    for s, ms in firsts:
        at = s.start - t0 + ms / 1000
        for g in s.itl_ms:
            at += g / 1000
            gap_pairs.append((at, g))
    itl_t, itl = by_time(gap_pairs)
    users_t, users = by_time([(s.end - t0, float(s.users or 0)) for s in samples])

    def window_of(times: np.ndarray, values: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return values[np.searchsorted(times, lo, side="right") : np.searchsorted(times, hi, side="right")]

    def pct(values: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(values, q)), 2) if values.size else None

    t_end = float(done_t[-1])
    cols: dict[str, list[float | None]] = {k: [] for k in (
        "t", "rps", "tokens_per_s", "errors_per_s", "p50_ms", "p95_ms", "ttft_p50_ms", "ttft_p95_ms",
        "itl_p50_ms", "itl_p95_ms", "users")}  # fmt: skip
    for i in range(1, points + 1):
        t = t_end * i / points
        lo, covered = t - window, max(min(window, t), 1e-9)
        done = window_of(done_t, done_ok, lo, t)
        n_ok = float(done.sum())
        cols["t"].append(round(t, 2))
        cols["rps"].append(n_ok / covered)
        cols["tokens_per_s"].append(float(window_of(tok_t, tok, lo, t).sum()) / covered)
        cols["errors_per_s"].append((done.size - n_ok) / covered)
        latencies = window_of(lat_t, lat, lo, t)
        cols["p50_ms"].append(pct(latencies, 50))
        cols["p95_ms"].append(pct(latencies, 95))
        first = window_of(ttft_t, ttft, lo, t)
        cols["ttft_p50_ms"].append(pct(first, 50))
        cols["ttft_p95_ms"].append(pct(first, 95))
        gaps = window_of(itl_t, itl, lo, t)
        cols["itl_p50_ms"].append(pct(gaps, 50))
        cols["itl_p95_ms"].append(pct(gaps, 95))
        active = window_of(users_t, users, lo, t)
        cols["users"].append(float(active.max()) if active.size else None)
    return {**series, **cols}
