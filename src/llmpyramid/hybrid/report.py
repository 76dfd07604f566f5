"""The `hybrid` block of the results document, the per-request samples file and the timeline plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmpyramid.hybrid.scenarios import FAULTS, ScenarioResult, phase_stats, split_phases

PLOT_FILE = "hybrid_timeline.png"
SAMPLES_FILE = "hybrid_samples.jsonl"
COLOURS = {"base": "tab:blue", "burst": "tab:orange", "failed": "tab:red", "other": "tab:gray"}


def _recovery_event(r: ScenarioResult) -> tuple[float | None, float | None]:
    """(fault, recovered) epoch times that split this scenario into phases."""
    ev = r.events
    if r.key == "c":
        return ev.get("base killed"), ev.get("first burst success")
    if r.key == "d":
        return ev.get("base restored"), ev.get("first base success")
    if r.key == "e":
        return ev.get("burst killed"), ev.get("first base success")
    if r.key in ("f", "g", "h"):  # during = in flight when the proxy switched; after = started since
        return ev.get(FAULTS[r.key]), ev.get(FAULTS[r.key])
    return None, None


def scenario_block(r: ScenarioResult, t0: float) -> dict[str, Any]:
    fault, recovered = _recovery_event(r)
    total = phase_stats(r.outcomes)
    served = total["served"] or 0
    share = {k: round(v / served, 3) for k, v in total["served_by"].items()} if served else {}
    block: dict[str, Any] = {
        "name": r.name,
        "status": r.status,
        "users": r.users,
        "issued": total["issued"],
        "served": total["served"],
        "lost": total["lost"],
        "broken_streams": total["broken_streams"],
        "timed_out": total["timed_out"],
        "served_by": total["served_by"],
        "share": share,
        "phases": {name: phase_stats(outs) for name, outs in split_phases(r.outcomes, fault, recovered).items()},
        "events_s": {name: round(at - t0, 3) for name, at in sorted(r.events.items(), key=lambda kv: kv[1])},
        **r.extra,
    }
    if r.error:
        block["error"] = r.error
    if r.reason:
        block["reason"] = r.reason
    return block


def flat_metrics(block: dict[str, Any]) -> dict[str, Any]:
    """The scalars of a scenario block, for the test entry's `metrics` (scalars only)."""
    out: dict[str, Any] = {}
    for key, value in block.items():
        if key in ("name", "status", "error", "reason"):
            continue
        if isinstance(value, dict):
            if key == "phases":
                for phase, stats in value.items():
                    for k in ("issued", "served", "lost", "ttft_p95_ms"):
                        out[f"{phase}_{k}"] = stats.get(k)
            elif key in ("served_by", "share"):
                out.update({f"{key}_{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def write_samples(path: Path, results: Sequence[ScenarioResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in results:
            for o in r.outcomes:
                f.write(json.dumps({"scenario": r.name, "backend": o.backend, "status": o.status, "broken": o.broken,
                                    "timed_out": o.timed_out, **o.sample.to_dict()}) + "\n")  # fmt: skip


def plot_timeline(path: Path, results: Sequence[ScenarioResult], t0: float) -> Path:
    """Requests over time coloured by backend (failures red), scenarios shaded, faults marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 5))
    for i, r in enumerate(results):
        if not r.outcomes:
            continue
        lo = min(o.start for o in r.outcomes) - t0
        hi = max(o.end for o in r.outcomes) - t0
        ax.axvspan(lo, hi, color="0.93" if i % 2 else "0.88", zorder=0)
        ax.text((lo + hi) / 2, 1.01, r.key, transform=ax.get_xaxis_transform(), ha="center", fontsize=11)
        for name, at in r.events.items():
            fault = name in FAULTS.values()
            ax.axvline(at - t0, color="black" if fault else "green", linestyle="--" if fault else ":", linewidth=1.2)
            if fault or name in ("base restored", "first failure", "p95 TTFT back within SLO"):
                ax.text(at - t0, 0.97, f" {name}", transform=ax.get_xaxis_transform(), fontsize=8, va="top",
                        rotation=90)  # fmt: skip
    seen: set[str] = set()
    for r in results:
        for o in r.outcomes:
            key = "failed" if not o.ok else (o.backend if o.backend in ("base", "burst") else "other")
            label = None if key in seen else key
            seen.add(key)
            ax.plot([o.start - t0, o.end - t0], [o.sample.latency_ms / 1000] * 2, color=COLOURS[key], linewidth=1.5,
                    marker="x" if key == "failed" else None, markevery=[1], label=label, alpha=0.8)  # fmt: skip
    ax.set_xlabel("seconds since the layer started (each line: one request, start to end)")
    ax.set_ylabel("latency (s)")
    ax.set_title("hybrid layer: requests by serving backend; dashed = fault injected, dotted = measured events", pad=20)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
