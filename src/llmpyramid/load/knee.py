"""Scaling-sweep math (no locust import, so unit tests stay free of gevent monkey-patching).

A level's throughput is output tokens/s (requests/s when the server reports no tokens). The knee
is the last level whose next step up stopped paying off: the next level's throughput gained less
than `min_gain`, or errors appeared. Beyond it, more users only add queueing (TTFT rises).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from llmpyramid.load.metrics import Sample, summarize


def level_windows(starts: Sequence[float], step: float) -> list[tuple[float, float]]:
    """(measure_from, until) epoch windows per level, skipping a settle period after each change."""
    settle = min(3.0, step * 0.2)
    return [(s + settle, s + step) for s in starts]


def score_levels(
    samples: Sequence[Sample], levels: Sequence[int], starts: Sequence[float], step: float
) -> list[dict[str, Any]]:
    """Per-level metrics from the requests that completed inside each level's window."""
    out = []
    for users, (lo, hi) in zip(levels, level_windows(starts, step), strict=False):
        in_window = [s for s in samples if lo <= s.end < hi]
        m = summarize(in_window, duration_s=hi - lo)
        out.append({"users": users, **{k: m.get(k) for k in (
            "requests", "error_rate", "requests_per_second", "output_tokens_per_second", "p50_latency_ms",
            "p95_latency_ms", "ttft_p50_ms", "ttft_p95_ms", "itl_p50_ms", "itl_p95_ms")}})  # fmt: skip
    return out


def _throughput(level: dict[str, Any]) -> float:
    tps = level.get("output_tokens_per_second") or 0.0
    return float(tps) if tps > 0 else float(level.get("requests_per_second") or 0.0)


def find_knee(levels: Sequence[dict[str, Any]], min_gain: float = 0.10, max_error_rate: float = 0.0) -> dict[str, Any]:
    """The knee of a sweep: the last level whose next step up stopped paying off.

    levels: [{"users", "output_tokens_per_second" (or "requests_per_second"), "error_rate"}, ...]
    in increasing users. Walking up, level i+1 ends the climb when its error rate exceeds
    max_error_rate or its throughput is less than (1 + min_gain) x level i's; the knee is level i.
    If neither happens, there is no knee within the sweep (still scaling at the top level).
    """
    levels = [lv for lv in levels if lv.get("requests")] if any("requests" in lv for lv in levels) else list(levels)
    if not levels:
        return {"users": None, "reason": "no completed requests in any level"}
    if (levels[0].get("error_rate") or 0) > max_error_rate:
        return {"users": None, "reason": f"errors already at {levels[0]['users']} user(s)",
                "throughput": _throughput(levels[0])}  # fmt: skip
    for prev, cur in itertools.pairwise(levels):
        t_prev, t_cur = _throughput(prev), _throughput(cur)
        if (cur.get("error_rate") or 0) > max_error_rate:
            return {"users": prev["users"], "throughput": t_prev,
                    "reason": f"error rate {cur['error_rate']:.2%} at {cur['users']} users"}  # fmt: skip
        if t_cur < t_prev * (1 + min_gain):
            gain = (t_cur / t_prev - 1) if t_prev else 0.0
            return {"users": prev["users"], "throughput": t_prev,
                    "reason": f"throughput {gain:+.1%} from {prev['users']} to {cur['users']} users "
                              f"(< {min_gain:.0%} gain)"}  # fmt: skip
    return {"users": None, "throughput": _throughput(levels[-1]),
            "reason": f"throughput still rising at {levels[-1]['users']} users (the sweep's top level)"}  # fmt: skip
