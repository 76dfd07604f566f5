"""Load shapes beyond constant users: the scaling sweep (1, 2, 4, 8, ... users) and its knee.

The sweep holds each level for `step` seconds. After a level ends (plus one worker-report
interval so distributed samples have arrived) the finished levels are scored from the collected
samples; the sweep stops early once throughput has plateaued (two levels without a real gain) or
errors appeared, since higher levels only add queueing. The math lives in knee.py (no locust).
"""

from __future__ import annotations

import time
from typing import Any

from locust import LoadTestShape

from llmpyramid.load.config import LoadConfig
from llmpyramid.load.knee import find_knee, score_levels

REPORT_LAG_S = 3.5  # locust workers report every 3 s


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
        # score the finished levels once their samples are in; stop when throughput has plateaued
        # (two levels without a real gain over the best, or a level that lost throughput) or errors appeared
        if i >= 3 and run_time - i * cfg.sweep_step > REPORT_LAG_S and self.samples_source is not None:
            scored = score_levels(self.samples_source.samples, levels[:i], self.level_starts[:i], cfg.sweep_step)
            knee = find_knee(scored, cfg.sweep_min_gain)
            if knee.get("plateau") or "errors already" in knee["reason"]:
                self.stopped_early = knee["reason"]
                return None
        users = levels[i]
        return users, max(float(users), 1.0) * 4  # jump to the level within ~0.25 s
