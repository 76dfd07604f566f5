"""Load shapes beyond constant users: the scaling sweep (1, 2, 4, 8, ... users) and its knee.

The sweep holds each level for `step` seconds. After a level ends (plus one worker-report
interval so distributed samples have arrived) it is scored from the collected samples; the sweep
stops early when throughput stopped rising or errors appeared, since higher levels only add
queueing. `find_knee` is a pure function so it is unit-tested without locust.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

from locust import LoadTestShape

from llmpyramid.load.config import LoadConfig
from llmpyramid.load.metrics import Sample, summarize

REPORT_LAG_S = 3.5  # locust workers report every 3 s


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


class ScalingSweep(LoadTestShape):
    """Users 1, 2, 4, ... up to LOAD_SWEEP_MAX_USERS, `step` seconds each, stopping at the knee."""

    abstract = True  # the locustfile makes a concrete subclass only when LOAD_SHAPE=sweep
    config: LoadConfig
    samples_source: Any = None  # a Collector (the master's, with workers' samples merged)

    def __init__(self) -> None:
        super().__init__()
        self.level_starts: list[float] = []
        self.stopped_early: str | None = None

    def tick(self) -> tuple[int, float] | None:
        cfg = self.config
        levels = cfg.sweep_levels
        run_time = self.get_run_time()
        i = int(run_time // cfg.sweep_step)
        if i >= len(levels):
            return None
        epoch0 = time.time() - run_time  # start_time is a perf_counter value; samples use epoch
        while len(self.level_starts) <= i:
            self.level_starts.append(epoch0 + len(self.level_starts) * cfg.sweep_step)
        # score the previous level once its samples are in, and stop at the knee
        if i >= 2 and run_time - i * cfg.sweep_step > REPORT_LAG_S and self.samples_source is not None:
            scored = score_levels(self.samples_source.samples, levels[:i], self.level_starts[:i], cfg.sweep_step)
            knee = find_knee(scored, cfg.sweep_min_gain)
            if knee["users"] is not None or "errors already" in knee["reason"]:
                self.stopped_early = knee["reason"]
                return None
        users = levels[i]
        return users, max(float(users), 1.0) * 4  # jump to the level within ~0.25 s
