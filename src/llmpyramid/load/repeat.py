"""The same load shape N times: mean and 95 % confidence interval per metric, and a regression gate that
knows the noise.

    run = run_repeated(replace(config, repeat=3), target, baseline="results/baseline.json", tolerance=0.10)
    python -m llmpyramid.load --repeat 3 --baseline results/baseline.json     # LOAD_REPEAT=3

Each run writes its own directory (RESULTS_DIR/repeat-K); RESULTS_DIR/load_results.json holds the
aggregate: `load_test` with the mean of each metric (so every reader of a single run works unchanged),
`repeat.intervals` with mean, interval and the runs' values, and the verdict. SLOs are judged on the means.

The baseline gate, per metric and direction (BASELINE_METRICS): the limit is the baseline's value (its
mean, for a repeated baseline) worsened by the tolerance. A regression is reported only when the whole
interval lies beyond the limit; when the interval straddles it, the verdict is "inconclusive: ... interval
too wide" (more runs, or a quieter machine, decide it); when the whole interval is within, it passes.
A single run (N=1) has no interval: it is compared point to point, as before.

A verdict depends on the service, not on what else the machine does: while each run lasts, the CPU the
machine spends on other work than the generator and a target on this machine is measured; when it
exceeds LOAD_MACHINE_BUSY_BOUND (25 %) of the cores, a regression is reported as "inconclusive" with that share (seen
here: two CPU burners took ~60 % of the 2 cores and the embedded server's ITL p95 rose 40 %).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from llmpyramid.load.config import LoadConfig, evaluate_slo
from llmpyramid.load.report import BASELINE_METRICS, RESULTS_FILE, load_baseline, verdict_of, write_json
from llmpyramid.load.runner import LoadRun, run_load
from llmpyramid.procs import port_listeners

CONFIDENCE = 0.95
EXTRA_METRICS = ("goodput_rps", "goodput_share", "generator_cpu_seconds_per_1k_tokens")


def interval(values: list[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean and Student-t confidence interval of the mean (None bounds for fewer than two values)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"n": len(values), "mean": round(mean, 4), "low": None, "high": None, "values": values}
    sem = statistics.stdev(values) / math.sqrt(len(values))
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1)) * sem
    return {"n": len(values), "mean": round(mean, 4), "low": round(mean - half, 4), "high": round(mean + half, 4),
            "values": values}  # fmt: skip


def intervals(load_tests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for key in (*BASELINE_METRICS, *EXTRA_METRICS):
        values = [float(lt[key]) for lt in load_tests if isinstance(lt.get(key), int | float)]
        if len(values) == len(load_tests) and values:
            out[key] = interval(values)
    return out


def gate(current: dict[str, dict[str, Any]], baseline: dict[str, Any], tolerance: float) -> tuple[list[str], list[str]]:
    """(regressions, undecided) from intervals against a baseline's values, each one line naming the metric."""
    regressions, undecided = [], []
    for key, (direction, label, unit) in BASELINE_METRICS.items():
        ci, base = current.get(key), baseline.get(key)
        if ci is None or base is None or ci["low"] is None:
            continue
        if key == "error_rate":
            limit = base + max(0.01, base * tolerance)  # ERROR_RATE_SLACK, as the single-run gate
        elif base == 0:
            continue
        else:
            limit = base * (1 + tolerance) if direction == "down" else base * (1 - tolerance)
        beyond = ci["low"] > limit if direction == "down" else ci["high"] < limit
        within = ci["high"] <= limit if direction == "down" else ci["low"] >= limit
        span = f"{label} {ci['mean']:g}{unit} (95% interval {ci['low']:g}..{ci['high']:g}{unit}, {ci['n']} runs)"
        where = f"baseline {base:g}{unit}, limit {limit:g}{unit} at tolerance {tolerance:.0%}"
        if beyond:
            regressions.append(f"baseline regression: {span} beyond the {where}")
        elif not within:
            undecided.append(f"{span} straddles the {where}")
    return regressions, undecided


class OtherWork:
    """CPU-seconds the machine spent on anything but this process tree and a target listening on this machine,
    as a share of all cores over the wall time (psutil's system-wide times, minus ours)."""

    def __init__(self, target_url: str | None) -> None:
        parts = urlsplit(target_url or "")
        local = parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.port
        self.servers = [p for p in port_listeners(parts.port) if p is not None] if local and parts.port else []
        self.share = 0.0

    def _ours(self) -> float:
        total = 0.0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True), *self.servers]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system + getattr(t, "children_user", 0) + getattr(t, "children_system", 0)
            except psutil.Error:
                continue
        return total

    def _busy(self) -> float:
        t = psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0) + getattr(t, "irq", 0) + getattr(t, "softirq", 0)

    def __enter__(self) -> OtherWork:
        self.t0, self.busy0, self.ours0 = time.monotonic(), self._busy(), self._ours()
        return self

    def __exit__(self, *_: object) -> None:
        wall = max(time.monotonic() - self.t0, 1e-9)
        others = (self._busy() - self.busy0) - (self._ours() - self.ours0)
        self.share = round(max(0.0, others) / (wall * (psutil.cpu_count() or 1)), 3)


def run_repeated(
    config: LoadConfig,
    target: Any,
    *,
    workers: int = 0,
    baseline: str | Path | None = None,
    tolerance: float = 0.10,
    notify: Callable[[str], None] | None = None,
) -> LoadRun:
    """config.repeat runs of the same shape and one verdict over them (see the module docstring)."""
    repeat = config.repeat
    base = load_baseline(baseline) if baseline else None  # a bad baseline is exit 3 before any load
    kwargs: dict[str, Any] = {"workers": workers} if notify is None else {"workers": workers, "notify": notify}
    if repeat == 1:
        return run_load(config, target, baseline=baseline, tolerance=tolerance, **kwargs)
    runs = []
    for k in range(1, repeat + 1):
        if notify:
            notify(f"load: run {k} of {repeat}")
        with OtherWork(target.base_url if target is not None else None) as other:
            runs.append(run_load(replace(config, results_dir=config.results_dir / f"repeat-{k}"), target, **kwargs))
        runs[-1].load_test["machine_other_work_share"] = other.share
    cis = intervals([r.load_test for r in runs])
    busy = max(r.load_test["machine_other_work_share"] for r in runs)
    mean_lt = {**runs[-1].load_test, **{k: v["mean"] for k, v in cis.items()}}
    mean_lt["repeat"] = repeat
    mean_lt["machine_other_work_share"] = busy
    findings = evaluate_slo(mean_lt, config.slo)
    short = [f"run {k}: {r.findings[0]}" for k, r in enumerate(runs, 1) if r.findings[:1]
             and r.findings[0].startswith("inconclusive")]  # fmt: skip
    if short:  # too few requests in a run: its numbers are no sample of the service
        findings.insert(0, f"inconclusive: {len(short)} of {repeat} runs had too few requests ({short[0]})")
    undecided: list[str] = []
    if base is not None:
        if any(isinstance(base.get(k), dict) for k in BASELINE_METRICS):  # a repeated baseline's intervals
            base = {k: v["mean"] for k, v in base.items() if isinstance(v, dict) and "mean" in v}
        regressions, undecided = gate(cis, base, tolerance)
        if regressions and busy > config.machine_busy_bound:  # a slower service on a busy machine: not the service's
            undecided = [f"{r.removeprefix('baseline regression: ')} while other work took {busy:.0%} of the cores"
                         for r in regressions] + undecided  # fmt: skip
            regressions = []
        findings += regressions
    if undecided and not findings:
        more = f" (+{len(undecided) - 1} more)" if len(undecided) > 1 else ""
        findings = [f"inconclusive: {undecided[0]}{more}; too uncertain to call a regression: more --repeat runs, "
                    "or a quieter machine, decide it"]  # fmt: skip
    exit_code = 1 if findings else 0
    artifacts = {"results": str(config.results_dir / RESULTS_FILE), "runs": [r.artifacts for r in runs]}
    doc: dict[str, Any] = {
        "verdict": verdict_of(findings),
        "load_test": mean_lt,
        "findings": findings,
        "repeat": {
            "n": repeat,
            "confidence": CONFIDENCE,
            "intervals": cis,
            "undecided": undecided,
            "runs": [str(r.artifacts.get("results")) for r in runs],
        },
        "slo": config.slo.active(),
        "baseline": {"file": str(baseline), "tolerance": tolerance} if baseline else None,
        "exit_code": exit_code,
        "artifacts": artifacts,
    }
    write_json(config.results_dir / RESULTS_FILE, doc)
    if notify:
        notify(f"load verdict over {repeat} runs: {doc['verdict']}")
    return LoadRun(mean_lt, findings, exit_code, artifacts,
                   round(sum(r.generator_cpu_seconds or 0 for r in runs), 3),
                   round(sum(r.wall_seconds or 0 for r in runs), 2))  # fmt: skip
