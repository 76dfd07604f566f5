"""Compare two load runs side by side: metrics, deltas (B - A) with bootstrap intervals, curves overlaid.

    python -m llmpyramid.load.compare A B [--output results/load-compare]
    invoke load.compare A B [--output DIR]

A and B are each a results directory (load_results.json + llm_samples.jsonl) or a load_results.json
(its samples are looked for next to it). Writes compare.json, compare.html (plot inlined) and
compare_over_time.png. Values, deltas and verdicts are as the runs' documents wrote them; intervals and
curves need both runs' samples and are left out, with a note, when they are missing: never invented.

Intervals: 95 % percentile bootstrap of the delta, each run resampled on its own (fixed seed, 1000
resamples). Latency and TTFT percentiles resample requests; ITL resamples requests whole (a request's
token gaps move together, so they do not count as independent draws); throughput resamples ~1 s slices
of the run, because resampling a fixed number of requests cannot move a rate. "B is slower/faster beyond
noise" only when the interval excludes 0, else "within noise". A comparison judges, it does not gate: exit 0.
"""

from __future__ import annotations

import base64
import html
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmpyramid.cli import ArgumentParser, guarded
from llmpyramid.config import parse_path
from llmpyramid.errors import ConfigError
from llmpyramid.load.metrics import Sample, rolling_window, time_series
from llmpyramid.load.report import BASELINE_METRICS, RESULTS_FILE, SAMPLES_FILE, _table, read_samples, write_json

if TYPE_CHECKING:
    import numpy as np

DEFAULT_OUTPUT = Path("results/load-compare")
JSON_FILE = "compare.json"
HTML_FILE = "compare.html"
PNG_FILE = "compare_over_time.png"
RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 20240517  # fixed: the same two runs give the same intervals every time

# metric -> (direction, label, unit), as BASELINE_METRICS; compared when either document has it
EXTRA_METRICS: dict[str, tuple[str, str, str]] = {
    "goodput_rps": ("up", "goodput requests/s", ""),
    "goodput_share": ("up", "goodput share", ""),
}
# bootstrap groups: one set of resamples per group, shared by its metrics
QUANTILE_GROUPS: dict[str, dict[float, str]] = {
    "latency": {50: "p50_latency_ms", 95: "p95_latency_ms", 99: "p99_latency_ms"},
    "ttft": {50: "ttft_p50_ms", 95: "ttft_p95_ms"},
    "itl": {50: "itl_p50_ms", 95: "itl_p95_ms"},
}
RATE_METRICS = ("requests_per_second", "output_tokens_per_second")
METHODS = {
    "latency": "requests resampled",
    "ttft": "requests resampled",
    "itl": "requests resampled whole (their token gaps together)",
    "rates": "~1 s slices of the run resampled",
}
CHUNK_VALUES = 2_000_000  # resampled values held at once: memory stays ~50 MB for any run size


@dataclass
class Run:
    name: str  # "A" or "B"
    results: Path
    doc: dict[str, Any]
    samples: list[Sample] | None
    note: str | None = None  # why there are no samples

    @property
    def load_test(self) -> dict[str, Any]:
        return self.doc["load_test"]


def load_run(path: Path, name: str) -> Run:
    """A results directory or load_results.json; ConfigError (exit 3) for anything that is not a load run."""
    if path.is_dir():
        results = path / RESULTS_FILE
        if not results.is_file():
            raise ConfigError(f"{name} {path}: no {RESULTS_FILE} in this directory (give a load results directory)")
    elif path.exists():
        results = path
    else:
        raise ConfigError(f"{name} {path}: no such file or directory")
    try:
        doc = json.loads(results.read_text())
    except OSError as exc:
        raise ConfigError(f"{name} {results}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # also UnicodeDecodeError: a binary file
        raise ConfigError(f"{name} {results} is not a load results document (not JSON: {exc})") from None
    lt = doc.get("load_test") if isinstance(doc, dict) else None
    if not isinstance(lt, dict) or not any(lt.get(k) is not None for k in BASELINE_METRICS):
        why = f"; its verdict: {doc['verdict']}" if isinstance(doc, dict) and doc.get("verdict") else ""
        raise ConfigError(f"{name} {results} is not a load results document (no load_test metrics{why})")
    samples, note = _samples_of(results.parent / SAMPLES_FILE, lt, doc)
    return Run(name, results, doc, samples, note)


def _samples_of(path: Path, lt: dict[str, Any], doc: dict[str, Any]) -> tuple[list[Sample] | None, str | None]:
    if not path.is_file():
        where = " (a repeated run keeps them in its repeat-N/ directories)" if doc.get("repeat") else ""
        return None, f"no {SAMPLES_FILE} next to {path.parent / RESULTS_FILE}{where}"
    try:
        samples = read_samples(path)
    except (OSError, ValueError, TypeError) as exc:
        return None, f"{path} is unreadable ({type(exc).__name__}: {exc})"
    if not samples:
        return None, f"{path} holds no requests"
    if isinstance(lt.get("requests"), int) and lt["requests"] != len(samples):  # another run's samples
        return (
            None,
            f"{path} holds {len(samples)} requests, its results document says {lt['requests']}: not its samples",
        )
    return samples, None


# --- bootstrap --------------------------------------------------------------------------------


def _chunks(total: int, per_row: int) -> list[int]:
    size = max(1, CHUNK_VALUES // max(per_row, 1))
    return [min(size, total - start) for start in range(0, total, size)]


def _boot_percentiles(rng: np.random.Generator, values: np.ndarray, qs: list[float]) -> np.ndarray:
    """(RESAMPLES x len(qs)): percentiles (numpy's, as summarize) of each resample of per-request values."""
    import numpy as np

    parts = [np.percentile(values[rng.integers(0, values.size, size=(k, values.size))], qs, axis=1).T
             for k in _chunks(RESAMPLES, values.size)]  # fmt: skip
    return np.vstack(parts)


def _boot_pooled_percentiles(rng: np.random.Generator, groups: list[list[float]], qs: list[float]) -> np.ndarray:
    """(RESAMPLES x len(qs)): percentiles of values pooled over requests (ITL gaps), requests resampled whole.

    A resample is a weight per request (how often it was drawn); the pooled percentile is then a weighted
    one (numpy's inverted-CDF definition). np.percentile takes one weight vector per call and sorts each time:
    1000 calls over 10^5-10^6 gaps take seconds. So the gaps are sorted once, the running weight is read at
    K checkpoints for all resamples in one matrix product, and the exact gap found inside the one segment
    that crosses the percentile."""
    import numpy as np

    n = len(groups)
    lengths = np.array([len(g) for g in groups])
    values = np.concatenate([np.asarray(g, dtype=float) for g in groups])
    order = np.argsort(values, kind="stable")
    v, owner = values[order], np.repeat(np.arange(n), lengths)[order]
    m = v.size
    k = min(m, 256)
    seg = np.arange(m) * k // m  # segment of each sorted gap
    seg_start, seg_end = np.searchsorted(seg, np.arange(k)), np.searchsorted(seg, np.arange(k), side="right")
    width = int((seg_end - seg_start).max())
    # checkpoints[i, j]: gaps of request i in segments 0..j
    checkpoints = np.cumsum(np.bincount(owner * k + seg, minlength=n * k).reshape(n, k), axis=1).astype(float)
    out = []
    for size in _chunks(RESAMPLES, max(n, width * len(qs))):
        drawn = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n).astype(float)
        running = weights @ checkpoints  # (size x k): weight of the gaps up to each segment's end
        rows = np.arange(size)
        cols = []
        for q in qs:
            target = q / 100 * running[:, -1]
            j = np.minimum((running < target[:, None]).sum(axis=1), k - 1)
            before = np.where(j > 0, running[rows, np.maximum(j - 1, 0)], 0.0)
            pos = seg_start[j][:, None] + np.arange(width)
            inside = pos < seg_end[j][:, None]
            pos = np.minimum(pos, m - 1)
            cum = before[:, None] + np.cumsum(weights[rows[:, None], owner[pos]] * inside, axis=1)
            first = np.minimum((cum < target[:, None]).sum(axis=1), width - 1)
            cols.append(v[pos[rows, first]])
        out.append(np.column_stack(cols))
    return np.vstack(out)


def _boot_rates(rng: np.random.Generator, samples: Sequence[Sample], duration_s: float) -> np.ndarray:
    """(RESAMPLES x 2): requests/s and output tokens/s, ~1 s slices of the run resampled. Over the same
    duration as the document's rates, so the bootstrap is centred on them."""
    import numpy as np

    t0 = min(s.start for s in samples)
    span = max(max(s.end for s in samples) - t0, 1e-9)
    bins = int(np.clip(round(span), 10, 200))
    ok = [s for s in samples if s.ok]
    slot = np.minimum((np.array([s.end - t0 for s in ok]) / span * bins).astype(int), bins - 1)
    done = np.bincount(slot, minlength=bins).astype(float)
    tokens = np.bincount(slot, weights=[float(s.output_tokens or 0) for s in ok], minlength=bins)
    drawn = rng.integers(0, bins, size=(RESAMPLES, bins))
    return np.column_stack([done[drawn].sum(axis=1), tokens[drawn].sum(axis=1)]) / max(duration_s, 1e-9)


def _bootstrap(run: Run, group: str, index: int) -> dict[str, np.ndarray]:
    """metric -> RESAMPLES bootstrap values of that run, for the metrics of one group it has data for."""
    import numpy as np

    rng = np.random.default_rng([SEED, index, 0 if run.name == "A" else 1])
    ok = [s for s in run.samples or [] if s.ok]
    if group == "rates":
        span = max(s.end for s in run.samples or []) - min(s.start for s in run.samples or [])
        duration = run.load_test.get("duration_seconds") or span
        draws = _boot_rates(rng, run.samples or [], float(duration))
        return dict(zip(RATE_METRICS, draws.T, strict=True))
    keys = QUANTILE_GROUPS[group]
    if group == "itl":
        groups = [s.itl_ms for s in ok if s.itl_ms]
        if not groups:
            return {}
        draws = _boot_pooled_percentiles(rng, groups, list(keys))
    else:
        values = np.array([s.latency_ms if group == "latency" else s.ttft_ms for s in ok], dtype=float)
        values = values[~np.isnan(values)]  # TTFT: streamed requests only
        if not values.size:
            return {}
        draws = _boot_percentiles(rng, values, list(keys))
    return dict(zip(keys.values(), draws.T, strict=True))


def intervals(a: Run, b: Run) -> dict[str, dict[str, Any]]:
    """metric -> the 95 % interval of B - A and how it was found; empty when either run lacks samples."""
    import numpy as np

    if not a.samples or not b.samples:
        return {}
    out = {}
    tail = (1 - CONFIDENCE) / 2 * 100
    for index, group in enumerate([*QUANTILE_GROUPS, "rates"]):
        draws_a, draws_b = _bootstrap(a, group, index), _bootstrap(b, group, index)
        for key in draws_a.keys() & draws_b.keys():
            low, high = np.percentile(draws_b[key] - draws_a[key], [tail, 100 - tail])
            out[key] = {"low": round(float(low), 3), "high": round(float(high), 3), "confidence": CONFIDENCE,
                        "resamples": RESAMPLES, "method": METHODS[group]}  # fmt: skip
    return out


# --- the comparison ---------------------------------------------------------------------------


def _judgement(direction: str, interval: dict[str, Any] | None) -> str | None:
    if interval is None:
        return None
    if interval["low"] <= 0 <= interval["high"]:
        return "within noise"
    worse = (interval["low"] > 0) == (direction == "down")  # higher latency, or lower throughput
    return f"B is {'slower' if worse else 'faster'} beyond noise"


def _run_info(run: Run) -> dict[str, Any]:
    lt = run.load_test
    return {"results": str(run.results), "verdict": run.doc.get("verdict"), "findings": run.doc.get("findings") or [],
            "started_at": run.doc.get("started_at"), "shape": lt.get("shape"), "target": lt.get("target"),
            "requests": lt.get("requests"), "samples": len(run.samples) if run.samples else 0,
            "samples_note": run.note}  # fmt: skip


def _metric_rows(a: Run, b: Run, cis: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    keys = {**BASELINE_METRICS, **{k: v for k, v in EXTRA_METRICS.items() if k in a.load_test or k in b.load_test}}
    rows = []
    for key, (direction, label, unit) in keys.items():
        va, vb = a.load_test.get(key), b.load_test.get(key)
        delta = relative = change = interval = None
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
            delta = round(vb - va, 6)
            relative = round(delta / va, 4) if va else None
            change = "same" if delta == 0 else "better" if (delta > 0) == (direction == "up") else "worse"
            interval = cis.get(key)
        rows.append({"metric": key, "label": label, "unit": unit, "direction": direction, "a": va, "b": vb,
                     "delta": delta, "relative": relative, "change": change, "interval": interval,
                     "judgement": _judgement(direction, interval)})  # fmt: skip
    return rows


def compare(a: Path, b: Path, out_dir: Path) -> dict[str, Any]:
    """Compare run B against run A; writes compare.json, compare.html (+ the PNG) into out_dir and
    returns the JSON document."""
    run_a, run_b = load_run(Path(a), "A"), load_run(Path(b), "B")
    notes = [f"{r.name}: {r.note}" for r in (run_a, run_b) if r.note]
    if notes:
        notes.append("intervals need both runs' samples: omitted; curves are drawn for the runs that have samples")
    cis = intervals(run_a, run_b)
    doc: dict[str, Any] = {
        "a": _run_info(run_a),
        "b": _run_info(run_b),
        "delta": "B - A",
        "metrics": _metric_rows(run_a, run_b, cis),
        "notes": notes,
        "artifacts": {},
    }
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        png = plot_compare(run_a, run_b, out_dir / PNG_FILE)
        page = write_compare_html(out_dir / HTML_FILE, doc, png)
        doc["artifacts"] = {"json": str(out_dir / JSON_FILE), "html": str(page), "plot": str(png) if png else None}
        write_json(out_dir / JSON_FILE, doc)
    except OSError as exc:
        raise ConfigError(f"--output {out_dir}: cannot write ({exc.strerror or exc})") from None
    return doc


# --- plot and page ----------------------------------------------------------------------------


def plot_compare(a: Run, b: Run, path: Path) -> Path | None:
    """Rolling p95 latency, TTFT p95 and output tokens/s of both runs over time (matplotlib's object API,
    Agg), one window for both so their curves are alike; None when neither run has samples."""
    runs = [r for r in (a, b) if r.samples]
    if not runs:
        return None
    from matplotlib.figure import Figure

    window = max(rolling_window(r.samples or []) for r in runs)
    series = {r.name: time_series(r.samples or [], window_s=window) for r in runs}
    fig = Figure(figsize=(9, 8))
    axes = fig.subplots(3, 1, sharex=True)
    panels = [("p95_ms", "latency p95 (ms)"), ("ttft_p95_ms", "TTFT p95 (ms)"), ("tokens_per_s", "output tokens/s")]
    styles = {"A": {"color": "tab:blue"}, "B": {"color": "tab:orange", "linestyle": "--"}}
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, ts in series.items():
            ax.plot(ts["t"], [float("nan") if v is None else v for v in ts[key]], label=name, **styles[name])
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("seconds since each run's first request")
    fig.suptitle(f"A and B over time (rolling {window:.0f} s window)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


def _when(epoch: Any) -> str | None:
    if not isinstance(epoch, (int, float)):
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _num(v: Any, unit: str = "", sign: str = "") -> str:
    return "-" if v is None else f"{v:{sign}g}{unit}" if isinstance(v, (int, float)) else str(v)


def write_compare_html(path: Path, doc: dict[str, Any], png: Path | None) -> Path:
    """One self-contained page (plot inlined), styled like the run's own llm_report.html."""
    a, b = doc["a"], doc["b"]
    parts = ["<h1>Load runs compared</h1>",
             f"<p>A: {html.escape(a['results'])}<br>B: {html.escape(b['results'])}<br>delta = B - A; "
             f"interval: {CONFIDENCE:.0%} bootstrap of the delta ({RESAMPLES} resamples of each run)</p>"]  # fmt: skip
    fields = [("verdict", "verdict"), ("started", "started_at"), ("shape", "shape"), ("target", "target"),
              ("requests", "requests"), ("samples", "samples")]  # fmt: skip
    rows = []
    for label, key in fields:
        va, vb = a.get(key), b.get(key)
        if key == "started_at":
            va, vb = _when(va), _when(vb)
        elif key == "shape":
            va, vb = json.dumps(va), json.dumps(vb)
        rows.append((label, va, vb))
    parts.append("<h2>Runs</h2>" + _table(rows, ("", "A", "B")))
    for name, run in (("A", a), ("B", b)):
        if run["findings"]:
            items = "".join(f"<li>{html.escape(str(f))}</li>" for f in run["findings"])
            parts.append(f"<h3>Findings of {name}</h3><ul>{items}</ul>")
    metric_rows = []
    for m in doc["metrics"]:
        ci = m["interval"]
        interval = f"[{ci['low']:+g}, {ci['high']:+g}]{m['unit']}" if ci else None
        relative = f"{m['relative']:+.1%}" if m["relative"] is not None else None
        metric_rows.append((m["label"], _num(m["a"], m["unit"]), _num(m["b"], m["unit"]),
                            _num(m["delta"], m["unit"], "+"), relative, m["change"], interval,
                            m["judgement"] or ("no interval" if m["change"] else None)))  # fmt: skip
    head = ("metric", "A", "B", "delta", "change", "B is", f"{CONFIDENCE:.0%} interval of delta", "judgement")
    parts.append("<h2>Metrics</h2>" + _table(metric_rows, head))
    if doc["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in doc["notes"]) + "</ul>")
    if png is not None:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<h2>Over time</h2><img alt='{html.escape(png.name)}' src='data:image/png;base64,{data}'>")
    style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
             "img{max-width:100%}")  # fmt: skip
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Load runs compared</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")  # fmt: skip
    path.write_text(page)
    return path


# --- front door -------------------------------------------------------------------------------


def build_parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m llmpyramid.load.compare",
                        description="Compare load run B against run A: metrics, deltas with 95% bootstrap "
                                    "intervals, curves overlaid (compare.json, compare.html).")  # fmt: skip
    ap.add_argument("a", metavar="A", help="run A: a load results directory or its load_results.json")
    ap.add_argument("b", metavar="B", help="run B: the same; deltas are B - A")
    ap.add_argument("--output", default=str(DEFAULT_OUTPUT), help=f"output directory (default {DEFAULT_OUTPUT})")
    return ap


def summary_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for m in doc["metrics"]:
        if m["delta"] is None:
            continue
        rel = f" ({m['relative']:+.1%})" if m["relative"] is not None else ""
        ci = m["interval"]
        judged = f"; {m['judgement']} [{ci['low']:+g}, {ci['high']:+g}]" if ci else ""
        lines.append(f"{m['label']}: {_num(m['a'], m['unit'])} -> {_num(m['b'], m['unit'])}{rel}{judged}")
    lines += [f"note: {n}" for n in doc["notes"]]
    lines.append(f"compare: {doc['artifacts']['json']}, {doc['artifacts']['html']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with guarded():
        args = build_parser().parse_args(argv)
        doc = compare(parse_path("A", args.a), parse_path("B", args.b), parse_path("--output", args.output))
        print("\n".join(summary_lines(doc)))
        return 0
    return 130  # pragma: no cover - guarded() exits


if __name__ == "__main__":
    sys.exit(main())
