"""Reports of a load run: the results JSON and its verdict, the baseline comparison, PNG plots and
the self-contained LLM HTML report (`python -m llmpyramid.load.report RESULTS_DIR` re-renders them).

Plots cost more CPU than the test itself (matplotlib's import alone is seconds on a busy box), so
they are made after the verdict is out, when the run is over, in a child process (LOAD_PLOTS=0 or
--no-plots skips them).
"""

from __future__ import annotations

import base64
import html
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmpyramid.errors import ConfigError
from llmpyramid.load.metrics import Sample, summarize, time_series

RESULTS_FILE = "load_results.json"
SAMPLES_FILE = "llm_samples.jsonl"
HTML_FILE = "llm_report.html"
LOCUST_HTML_FILE = "locust_report.html"
RENDER_TIMEOUT_S = 300.0


class RunInProgress(ConfigError):
    """Another load run is writing into the results directory: this one must not touch its files."""


def inconclusive(completed: int, needed: int) -> str:
    return f"inconclusive: only {completed} requests completed (need {needed})"


def verdict_of(findings: Sequence[str]) -> str:
    """One line: passed, inconclusive: ..., or failed: <first finding> (+N more)."""
    if not findings:
        return "passed"
    if findings[0].startswith("inconclusive:"):
        return findings[0]
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    return f"failed: {findings[0]}{more}"


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


# --- plots and the LLM HTML report ------------------------------------------------------------


def render_reports(out_dir: Path, timeout: float = RENDER_TIMEOUT_S) -> str | None:
    """Plots + HTML report in a child, after the run (and its own stack) ended; waits for it.
    Returns None, or why nothing was rendered (a report never changes the verdict).

    Normal priority on purpose: nothing is being measured any more, and at nice 19 two CPU burners
    starved the renderer for minutes."""
    from llmpyramid.procs import die_with_parent

    cmd = [sys.executable, "-m", "llmpyramid.load.report", str(out_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)  # fmt: skip
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"no plots: rendering did not finish within {timeout:.0f}s"
    except BaseException:  # Ctrl-C, SIGTERM: the child goes with us
        proc.kill()
        proc.wait()
        raise
    if proc.returncode:
        last = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        return f"no plots: {last[-1] if last else f'renderer exited {proc.returncode}'}"
    return None


def render(out_dir: Path) -> list[str]:
    """Write load_over_time.png (+ sweep.png) and llm_report.html from a finished run's files; record
    them in the results document. Returns the files written."""
    results_path = out_dir / RESULTS_FILE
    doc = json.loads(results_path.read_text())
    samples = read_samples(out_dir / SAMPLES_FILE)
    pngs = plot_run(samples, out_dir, (doc.get("load_test") or {}).get("sweep"))
    pngs += plot_server(samples, out_dir, doc.get("server_metrics") or {}, doc.get("started_at"))
    page = write_html(out_dir / HTML_FILE, doc, samples, pngs)
    doc.setdefault("artifacts", {}).update(plots=pngs, llm_report=str(page))
    write_json(results_path, doc)
    return [*pngs, str(page)]


def plot_run(samples: Sequence[Sample], out_dir: Path, sweep: dict[str, Any] | None = None) -> list[str]:
    """PNG plots (matplotlib's object API, Agg): rolling-window latency, TTFT, ITL percentiles and
    throughput over time; for a sweep also throughput and TTFT vs concurrency."""
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    ts = time_series(samples)
    if ts.get("t"):
        fig = Figure(figsize=(9, 10))
        axes = fig.subplots(4, 1, sharex=True)
        panels = [
            (axes[0], "end-to-end latency (ms)", [("p50_ms", "p50"), ("p95_ms", "p95")]),
            (axes[1], "TTFT (ms)", [("ttft_p50_ms", "p50"), ("ttft_p95_ms", "p95")]),
            (axes[2], "ITL (ms)", [("itl_p50_ms", "p50"), ("itl_p95_ms", "p95")]),
        ]
        for ax, label, lines in panels:
            for key, name in lines:
                ax.plot(ts["t"], [float("nan") if v is None else v for v in ts[key]], label=name)
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.legend(loc="upper left")
            ax.grid(alpha=0.3)
        ax = axes[3]
        ax.plot(ts["t"], ts["tokens_per_s"], label="output tokens/s", color="tab:green")
        ax.set_ylabel("output tokens/s")
        ax.set_ylim(bottom=0)
        twin = ax.twinx()
        twin.plot(ts["t"], ts["rps"], label="requests/s", color="tab:blue", alpha=0.7)
        twin.plot(ts["t"], ts["errors_per_s"], label="errors/s", color="tab:red", alpha=0.8)
        twin.set_ylabel("requests/s")
        twin.set_ylim(bottom=0)
        ax.set_xlabel("seconds since the first request")
        ax.legend(loc="upper left")
        twin.legend(loc="upper right")
        ax.grid(alpha=0.3)
        fig.suptitle(f"Load run over time (rolling {ts['window_s']:.0f} s window)")
        fig.tight_layout()
        path = out_dir / "load_over_time.png"
        fig.savefig(path, dpi=80)
        written.append(str(path))
    if sweep and sweep.get("levels"):
        levels = [lv for lv in sweep["levels"] if lv.get("requests")]
        users = [lv["users"] for lv in levels]
        fig = Figure(figsize=(8, 4.5))
        ax1 = fig.subplots()
        ax1.plot(users, [lv["output_tokens_per_second"] for lv in levels], "o-", color="tab:green",
                 label="output tokens/s")  # fmt: skip
        ax1.set_xscale("log", base=2)
        ax1.set_xlabel("concurrent users")
        ax1.set_ylabel("output tokens/s")
        ax2 = ax1.twinx()
        ttft = [float("nan") if lv["ttft_p95_ms"] is None else lv["ttft_p95_ms"] for lv in levels]
        ax2.plot(users, ttft, "s--", color="tab:orange", label="TTFT p95 (ms)")
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
        fig.savefig(path, dpi=80)
        written.append(str(path))
    return written


def plot_server(
    samples: Sequence[Sample], out_dir: Path, server: dict[str, Any], started_at: float | None
) -> list[str]:
    """server_vs_client.png: the client's TTFT p95 over time above what the server said at the same moments
    (requests deferred for want of a slot, requests processing, KV-cache use): did latency come from queueing?"""
    series = server.get("series") or {}
    if server.get("status") != "exposed" or not series.get("t") or not samples:
        return []
    from matplotlib.figure import Figure

    ts = time_series(samples)
    offset = (started_at or 0.0) - min(s.start for s in samples) if started_at else 0.0
    t_server = [t + offset for t in series["t"]]  # on the client plot's clock: seconds since the first request
    fig = Figure(figsize=(9, 6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(ts["t"], [float("nan") if v is None else v for v in ts["ttft_p95_ms"]], label="client TTFT p95")
    top.set_ylabel("TTFT p95 (ms)")
    top.set_ylim(bottom=0)
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    for name, label in (("requests_deferred", "deferred (no free slot)"), ("requests_processing", "processing")):
        if name in series:
            bottom.step(t_server, [float("nan") if v is None else v for v in series[name]], where="post", label=label)
    bottom.set_ylabel("server requests")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper left")
    if "kv_cache_usage_ratio" in series:
        twin = bottom.twinx()
        kv = [float("nan") if v is None else 100 * v for v in series["kv_cache_usage_ratio"]]
        twin.plot(t_server, kv, label="KV cache used (%)", color="tab:purple", alpha=0.7)
        twin.set_ylabel("KV cache used (%)")
        twin.set_ylim(0, 100)
        twin.legend(loc="upper right")
    bottom.set_xlabel("seconds since the first request")
    bottom.grid(alpha=0.3)
    fig.suptitle(f"Server metrics ({server.get('source')}, every {server.get('interval_s')} s) against client TTFT")
    fig.tight_layout()
    path = out_dir / "server_vs_client.png"
    fig.savefig(path, dpi=80)
    return [str(path)]


_SUMMARY_ROWS = (
    ("completed", "completed requests", ""), ("requests", "requests (incl. failed)", ""),
    ("error_rate", "error rate", ""), ("requests_per_second", "requests/s", ""),
    ("output_tokens_per_second", "output tokens/s", ""), ("p50_latency_ms", "latency p50", "ms"),
    ("p95_latency_ms", "latency p95", "ms"), ("p99_latency_ms", "latency p99", "ms"),
    ("ttft_p50_ms", "TTFT p50", "ms"), ("ttft_p95_ms", "TTFT p95", "ms"), ("ttft_p99_ms", "TTFT p99", "ms"),
    ("itl_p50_ms", "ITL p50", "ms"), ("itl_p95_ms", "ITL p95", "ms"), ("itl_p99_ms", "ITL p99", "ms"),
    ("tpot_p50_ms", "TPOT p50", "ms"), ("tpot_p95_ms", "TPOT p95", "ms"),
    ("goodput_rps", "goodput (requests/s meeting every SLO limit)", ""),
    ("goodput_share", "goodput share (failed requests miss)", ""),
    ("p95_latency_with_failures_ms", "latency p95, failed counted at the timeout", "ms"),
    ("p99_latency_with_failures_ms", "latency p99, failed counted at the timeout", "ms"),
    ("ttft_p95_with_failures_ms", "TTFT p95, failed streams counted at the timeout", "ms"),
    ("duration_seconds", "duration", "s"),
    ("ended_by", "ended by", ""), ("workers", "worker processes", ""),
    ("generator_cpu_seconds", "generator CPU during the test", "s"),
    ("generator_cpu_seconds_per_1k_tokens", "generator CPU per 1,000 output tokens", "s"),
)  # fmt: skip


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str] | None = None) -> str:
    def cell(v: Any) -> str:
        return html.escape("-" if v is None else f"{v:g}" if isinstance(v, float) else str(v))

    th = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table>{th}{body}</table>"


def write_html(path: Path, doc: dict[str, Any], samples: Sequence[Sample], pngs: Sequence[str]) -> Path:
    """One self-contained page (plots inlined) with the LLM metrics locust's own report lacks."""
    lt = doc.get("load_test") or {}
    verdict = doc.get("verdict") or "?"
    colour = "#1a7f37" if verdict == "passed" else "#b35900" if verdict.startswith("inconclusive") else "#cf222e"
    parts = [f"<h1>LLM load report</h1><p class=verdict style='color:{colour}'>{html.escape(verdict)}</p>",
             f"<p>target {html.escape(str(lt.get('target')))} &middot; shape "
             f"{html.escape(json.dumps(lt.get('shape')))} &middot; locust's own report: "
             f"<a href='{LOCUST_HTML_FILE}'>{LOCUST_HTML_FILE}</a></p>"]  # fmt: skip
    if lt.get("percentile_note"):
        parts.append(f"<p>{html.escape(lt['percentile_note'])}</p>")
    if doc.get("findings"):
        parts.append("<h2>Findings</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in doc["findings"]) + "</ul>")
    rows = [(label, lt.get(key), unit) for key, label, unit in _SUMMARY_ROWS]
    parts.append("<h2>Summary</h2>" + _table(rows, ("metric", "value", "unit")))
    server = doc.get("server_metrics") or {}
    peaks = [(name, value) for name, value in (server.get("peaks") or {}).items()]
    parts.append(f"<h2>Server metrics</h2><p>{html.escape(str(server.get('source') or '/metrics'))}: "
                 f"{html.escape(str(server.get('status') or 'not scraped'))}; {server.get('samples', 0)} samples "
                 f"every {server.get('interval_s', '-')} s</p>")  # fmt: skip
    if peaks:
        parts.append(_table(peaks, ("peak of", "value")))
    if doc.get("slo"):
        parts.append("<h2>SLO thresholds</h2>" + _table(sorted(doc["slo"].items()), ("gate", "threshold")))
    kinds = sorted({s.kind for s in samples})
    per_kind = []
    for kind in kinds:
        m = summarize([s for s in samples if s.kind == kind])
        per_kind.append((kind, m["requests"], m["failures"], m.get("p50_latency_ms"), m.get("p95_latency_ms"),
                         m.get("ttft_p50_ms"), m.get("itl_p50_ms")))  # fmt: skip
    if per_kind:
        head = ("request kind", "requests", "failures", "latency p50 ms", "latency p95 ms", "TTFT p50 ms", "ITL p50 ms")
        parts.append("<h2>By request kind</h2>" + _table(per_kind, head))
    if lt.get("arrivals"):
        parts.append("<h2>Arrival schedule (open loop)</h2>" + _table(sorted(lt["arrivals"].items())))
    if lt.get("sweep"):
        knee = lt["sweep"].get("knee") or {}
        parts.append(f"<h2>Scaling sweep</h2><p>{html.escape(str(knee.get('reason')))}</p>")
        levels = lt["sweep"].get("levels") or []
        sweep_head = ("users", "requests", "error rate", "output tokens/s", "TTFT p95 ms", "latency p95 ms")
        parts.append(_table([(lv["users"], lv["requests"], lv["error_rate"], lv["output_tokens_per_second"],
                              lv["ttft_p95_ms"], lv["p95_latency_ms"]) for lv in levels], sweep_head))  # fmt: skip
    if lt.get("errors"):
        parts.append("<h2>Errors</h2>" + _table(list(lt["errors"].items()), ("error", "count")))
    for png in pngs:
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        name = Path(png)
        parts.append(f"<h2>{html.escape(name.stem.replace('_', ' '))}</h2><img alt='{html.escape(name.name)}' "
                     f"src='data:image/png;base64,{data}'>")  # fmt: skip
    style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
             ".verdict{font-size:1.4em;font-weight:bold}img{max-width:100%}")  # fmt: skip
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>LLM load report</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m llmpyramid.load.report RESULTS_DIR", file=sys.stderr)
        return 3
    try:
        render(Path(args[0]))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
