"""Scaling-sweep math (no locust import, so unit tests stay free of gevent monkey-patching).

A level's throughput is output tokens/s (requests/s when the server reports no tokens). The knee
is the last level whose next step up stopped paying off: the next level's throughput gained less
than `min_gain`, or errors appeared. Beyond it, more users only add queueing (TTFT rises).
"""

from __future__ import annotations

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


def find_knee(
    levels: Sequence[dict[str, Any]], min_gain: float = 0.10, max_error_rate: float = 0.0, *, finished: bool = False
) -> dict[str, Any]:
    """The knee of a sweep: the fewest users that already get (1 - min_gain) of the peak throughput.

    levels: [{"users", "output_tokens_per_second" (or "requests_per_second"), "error_rate"}, ...]
    in increasing users. Levels from the first one with an error rate above max_error_rate on are
    out (the server is past its limit there). Comparing with the peak rather than with the previous
    level keeps one noisy level from ending the climb early. `plateau` says whether the sweep saw
    throughput stop rising: the last two valid levels gained less than min_gain over the best
    before them, or the top level fell more than min_gain below the peak (more users cost
    throughput: past the knee, seen at 32 users on this box with 8 slots, 24 requests deferred).
    Once the sweep has `finished` its levels, the top level alone gaining less than min_gain over the best
    before it is enough: the climb stopped where the sweep ended (measured here: 16 users 109 tok/s, 32
    users 105). Mid-sweep (the early stop) one such level is not: it may be noise.
    Without a plateau (or errors) the knee is only a lower bound: still scaling.
    """
    if any("requests" in lv for lv in levels):
        levels = [lv for lv in levels if lv.get("requests")]
    if not levels:
        return {"users": None, "plateau": False, "reason": "no completed requests in any level"}
    valid: list[dict[str, Any]] = []
    error_note = ""
    for lv in levels:
        if (lv.get("error_rate") or 0) > max_error_rate:
            error_note = f"; errors from {lv['users']} users on (error rate {lv['error_rate']:.2%})"
            break
        valid.append(lv)
    if not valid:
        return {"users": None, "plateau": False, "reason": f"errors already at {levels[0]['users']} user(s)"}
    peak = max(valid, key=_throughput)
    peak_t = _throughput(peak)
    knee = next(lv for lv in valid if _throughput(lv) >= (1 - min_gain) * peak_t)
    declined = _throughput(valid[-1]) < (1 - min_gain) * peak_t
    top_flat = (
        finished and len(valid) >= 2 and _throughput(valid[-1]) < (1 + min_gain) * max(map(_throughput, valid[:-1]))
    )
    plateau = has_plateau(valid, min_gain) or declined or top_flat or bool(error_note)
    if not plateau:
        return {"users": None, "plateau": False, "throughput": _throughput(valid[-1]),
                "reason": f"throughput still rising at {valid[-1]['users']} users (the sweep's top level)"}  # fmt: skip
    return {
        "users": knee["users"],
        "plateau": True,
        "throughput": _throughput(knee),
        "peak_throughput": peak_t,
        "peak_users": peak["users"],
        "reason": f"{knee['users']} users reach {_throughput(knee) / peak_t:.0%} of the peak {peak_t:.1f}/s "
        f"(at {peak['users']} users); more users mostly add queueing{error_note}",
    }


def has_plateau(levels: Sequence[dict[str, Any]], min_gain: float) -> bool:
    """True when each of the last two levels gained less than min_gain over the best level before it."""
    if len(levels) < 3:
        return False
    for i in (len(levels) - 2, len(levels) - 1):
        best_before = max(_throughput(lv) for lv in levels[:i])
        if _throughput(levels[i]) >= best_before * (1 + min_gain):
            return False
    return True
