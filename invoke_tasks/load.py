"""Invoke tasks for the load layer; tasks.py mounts the `load` collection (its default task is the run):

    from invoke_tasks.load import load
    ns = Collection(..., load, ...)

    invoke load                                  # 10 users, 60 s, embedded stack unless BASE_URL
    invoke load --workers 2 --duration 30        # locust master + 2 workers on loopback
    invoke load --shape sweep                    # 1, 2, 4, ... users until the knee
    invoke load --shape rate --rate 4            # constant arrival rate
    invoke load --baseline results/baseline.json --tolerance 0.15
    invoke load.compare A B [--output DIR]       # two runs side by side: deltas, 95% intervals, curves

Thin: flags stay strings (the load CLI parses them: bad values are exit 3, never invoke's
traceback); it builds the argv of `python -m llmpyramid.load` and calls it (errors: one line + exit code).
"""

from __future__ import annotations

from invoke import Collection, Context, task

HELP = {
    "users": "concurrent users, constant shape (LOAD_USERS, default 10)",
    "duration": "run time: 60, 60s, 2m (LOAD_DURATION, default 60s)",
    "shape": "constant | sweep | rate (LOAD_SHAPE)",
    "rate": "requests/s for --shape rate (LOAD_RATE)",
    "workers": "locust worker processes on loopback (0 = one process)",
    "baseline": "stored load_results.json to compare with; fails on regression",
    "tolerance": "allowed regression vs the baseline, a fraction (default 0.10)",
    "slo_file": "TOML/JSON file with an [slo] table (LOAD_SLO_FILE)",
    "base_url": "target server (BASE_URL); default: the embedded stack",
    "results_dir": "where reports go (LOAD_RESULTS_DIR, default results/load)",
    "json": "print the results as JSON on stdout",
}


@task(name="run", help=HELP, default=True)
def run(
    c: Context,
    users: str | None = None,
    duration: str | None = None,
    shape: str | None = None,
    rate: str | None = None,
    workers: str | None = None,
    baseline: str | None = None,
    tolerance: str | None = None,
    slo_file: str | None = None,
    base_url: str | None = None,
    results_dir: str | None = None,
    json: bool = False,
) -> None:
    """LLM load test with locust: TTFT/ITL/latency percentiles, SLO gates, plots, HTML report."""
    from llmpyramid.load.cli import main as load_main  # imported here: `invoke --list` needs no load deps

    flags = {"--users": users, "--duration": duration, "--shape": shape, "--rate": rate, "--workers": workers,
             "--baseline": baseline, "--tolerance": tolerance, "--slo-file": slo_file, "--base-url": base_url,
             "--results-dir": results_dir}  # fmt: skip
    argv = [x for k, v in flags.items() if v is not None for x in (k, str(v))]
    code = load_main([*argv, *(["--output", "json"] if json else [])])
    if code:
        raise SystemExit(code)


@task(
    help={
        "a": "run A: a load results directory or its load_results.json",
        "b": "run B: the same; deltas are B - A",
        "output": "output directory (default results/load-compare)",
    }
)
def compare(c: Context, a: str, b: str, output: str | None = None) -> None:
    """Two load runs side by side: metrics, deltas with 95% bootstrap intervals, curves overlaid (JSON + HTML)."""
    from llmpyramid.cli import guarded
    from llmpyramid.errors import ConfigError
    from llmpyramid.load.compare import main as compare_main  # imported here: `invoke --list` needs no numpy

    if {a, b} & {"-h", "--help"}:  # invoke 3.0.3 hands a flag after the task name to a positional (invoke#982)
        with guarded():
            raise ConfigError("for this task's help: invoke --help load.compare")
    code = compare_main([*(["--output", output] if output is not None else []), "--", a, b])  # `--`: A may start with -
    if code:
        raise SystemExit(code)


load = Collection("load", run, compare)
