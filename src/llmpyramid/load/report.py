"""Reports of a load run: the results JSON, PNG plots, and the comparison with a baseline run."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmpyramid.errors import ConfigError
from llmpyramid.load.metrics import Sample, time_series

RESULTS_FILE = "load_results.json"
SAMPLES_FILE = "llm_samples.jsonl"

# metric -> (direction, label, unit); "up" means higher is better
BASELINE_METRICS: dict[str, tuple[str, str, str]] = {
    "requests_per_second": ("up", "requests/s", ""),
    "output_tokens_per_second": ("up", "output tokens/s", ""),
    "p50_latency_ms": ("down", "p50 latency", "ms"),
    "p95_latency_ms": ("down", "p95 latency", "ms"),
    "p99_latency_ms": ("down", "p99 latency", "ms"),
    "ttft_p50_ms": ("down", "TTFT p50", "ms"),
    "ttft_p95_ms": ("down", "TTFT p95", "ms"),
    "itl_p50_ms": ("down", "ITL p50", "ms"),
    "itl_p95_ms": ("down", "ITL p95", "ms"),
    "error_rate": ("down", "error rate", ""),
}
ERROR_RATE_SLACK = 0.01  # error rate may rise by this much (absolute) before it counts as a regression


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_samples(path: Path, samples: Sequence[Sample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for s in samples:
            f.write(json.dumps(s.to_dict(), separators=(",", ":")) + "\n")


def read_samples(path: Path) -> list[Sample]:
    with path.open() as f:
        return [Sample(**json.loads(line)) for line in f if line.strip()]


# --- baseline --------------------------------------------------------------------------------


def load_baseline(path: str | Path) -> dict[str, Any]:
    """The `load_test` block of a stored run (a load_results.json, or a run_tests.py results file)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"baseline {p}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"baseline {p} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("load_test"), dict):
        data = data["load_test"]
    if not isinstance(data, dict) or not any(k in data for k in BASELINE_METRICS):
        raise ConfigError(f"baseline {p} has no load_test metrics (expected e.g. requests_per_second)")
    return data


def compare_baseline(current: dict[str, Any], baseline: dict[str, Any], tolerance: float = 0.10) -> list[str]:
    """Regressions beyond `tolerance` (a fraction), one line each, naming metric, values and change."""
    if tolerance < 0:
        raise ConfigError(f"baseline tolerance must be >= 0, got {tolerance}")
    findings = []
    for key, (direction, label, unit) in BASELINE_METRICS.items():
        cur, base = current.get(key), baseline.get(key)
        if cur is None or base is None:
            continue
        if key == "error_rate":
            if cur - base > max(ERROR_RATE_SLACK, base * tolerance):
                findings.append(f"baseline regression: {label} {cur:.2%} vs baseline {base:.2%}")
            continue
        if base == 0:
            continue
        change = (cur - base) / base
        worse = -change if direction == "up" else change
        if worse > tolerance:
            findings.append(
                f"baseline regression: {label} {cur:.1f}{unit} vs baseline {base:.1f}{unit} "
                f"({change:+.1%}, tolerance {tolerance:.0%})"
            )
    return findings


# --- plots -----------------------------------------------------------------------------------


def plot_run(samples: Sequence[Sample], out_dir: Path, sweep: dict[str, Any] | None = None) -> list[str]:
    """PNG plots (matplotlib, Agg backend): latency percentiles and throughput over time; for a
    sweep also throughput and TTFT vs concurrency. Returns the file paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    ts = time_series(samples, bucket_s=1.0 if len(samples) < 20_000 else 5.0)
    if ts["t"]:
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
        ax1.plot(ts["t"], ts["p50_ms"], label="latency p50")
        ax1.plot(ts["t"], ts["p95_ms"], label="latency p95")
        ax1.plot(ts["t"], ts["ttft_p50_ms"], label="TTFT p50")
        ax1.set_ylabel("ms")
        ax1.legend(loc="upper left")
        ax1.grid(alpha=0.3)
        ax2.plot(ts["t"], ts["tokens_per_s"], label="output tokens/s", color="tab:green")
        ax2.set_ylabel("tokens/s")
        ax2b = ax2.twinx()
        ax2b.plot(ts["t"], ts["rps"], label="requests/s", color="tab:blue", alpha=0.6)
        ax2b.plot(ts["t"], ts["errors_per_s"], label="errors/s", color="tab:red", alpha=0.8)
        ax2b.set_ylabel("requests/s")
        ax2.set_xlabel("seconds since start (by completion)")
        ax2.legend(loc="upper left")
        ax2b.legend(loc="upper right")
        ax2.grid(alpha=0.3)
        fig.suptitle("Load run: latency and throughput over time")
        fig.tight_layout()
        path = out_dir / "load_over_time.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path))
    if sweep and sweep.get("levels"):
        levels = [lv for lv in sweep["levels"] if lv.get("requests")]
        users = [lv["users"] for lv in levels]
        fig, ax1 = plt.subplots(figsize=(8, 4.5))
        ax1.plot(users, [lv["output_tokens_per_second"] for lv in levels], "o-", color="tab:green",
                 label="output tokens/s")  # fmt: skip
        ax1.set_xscale("log", base=2)
        ax1.set_xlabel("concurrent users")
        ax1.set_ylabel("output tokens/s")
        ax2 = ax1.twinx()
        ax2.plot(users, [lv["ttft_p95_ms"] for lv in levels], "s--", color="tab:orange", label="TTFT p95 (ms)")
        ax2.set_ylabel("TTFT p95 (ms)")
        knee = (sweep.get("knee") or {}).get("users")
        if knee:
            ax1.axvline(knee, color="grey", linestyle=":", label=f"knee: {knee} users")
        ax1.legend(loc="upper left")
        ax2.legend(loc="lower right")
        ax1.grid(alpha=0.3)
        fig.suptitle("Scaling sweep: throughput and TTFT vs concurrency")
        fig.tight_layout()
        path = out_dir / "sweep.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path))
    return written
