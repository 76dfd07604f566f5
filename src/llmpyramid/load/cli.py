"""`python -m llmpyramid.load`: the load layer's command line (invoke, nox and run_tests.py call it).

    python -m llmpyramid.load --users 10 --duration 60
    python -m llmpyramid.load --shape sweep --sweep-max-users 32
    python -m llmpyramid.load --shape rate --rate 4 --duration 60 --workers 2
    python -m llmpyramid.load --baseline results/load-baseline.json --tolerance 0.15
    python -m llmpyramid.load --repeat 3 --baseline results/load-baseline.json   # 95 % intervals, noise-aware gate

Flags override LOAD_* / SLO_* environment variables. Exit codes: 0 pass, 1 SLO violation,
baseline regression or failed requests, 2 target unreachable, 3 bad configuration (or another
run still writing into the results directory). Locust's own logs: RESULTS_DIR/run/.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmpyramid.cli import ArgumentParser, early_flag, guarded
from llmpyramid.config import env_value, parse_duration, parse_float, parse_path, parse_url
from llmpyramid.errors import ConfigError, PyramidError
from llmpyramid.load.config import SHAPES, LoadConfig
from llmpyramid.load.report import RESULTS_FILE, RunInProgress, write_json

if TYPE_CHECKING:
    from llmpyramid.target import Target


def build_parser(prog: str = "python -m llmpyramid.load") -> argparse.ArgumentParser:
    ap = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", help=f"one of {', '.join(SHAPES)} (LOAD_SHAPE; default constant)")
    ap.add_argument("-u", "--users", help="concurrent users for the constant shape (LOAD_USERS; default 10)")
    ap.add_argument("-r", "--spawn-rate", help="users started per second (LOAD_SPAWN_RATE; default 2)")
    ap.add_argument("-t", "--duration", help="minimum run time: 60, 60s, 2m (LOAD_DURATION; default 60s)")
    ap.add_argument("--min-requests", help="completed requests a verdict needs (LOAD_MIN_REQUESTS; default 20)")
    ap.add_argument("--max-duration", help="run on to reach --min-requests, up to this (LOAD_MAX_DURATION)")
    ap.add_argument("--rate", help="requests/s for the rate shape (LOAD_RATE)")
    ap.add_argument("--max-inflight", help="in-flight cap for the rate shape (LOAD_MAX_INFLIGHT)")
    ap.add_argument("--sweep-max-users", help="top level of the sweep (LOAD_SWEEP_MAX_USERS; default 32)")
    ap.add_argument("--sweep-step", help="seconds per sweep level (LOAD_SWEEP_STEP; default 15)")
    ap.add_argument("--max-tokens", help="max_tokens choices, e.g. 32,64,128 (LOAD_MAX_TOKENS)")
    ap.add_argument("--mix", help="request mix, e.g. chat_stream=6,completion=1 (LOAD_MIX)")
    ap.add_argument("--slo-file", help="TOML/JSON file with an [slo] table (LOAD_SLO_FILE)")
    ap.add_argument("--results-dir", help="where reports go (LOAD_RESULTS_DIR; default results/load)")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots and LLM HTML report (LOAD_PLOTS=0)")
    ap.add_argument("--base-url", help="target server (BASE_URL; API_KEY from the environment); default: embedded")
    ap.add_argument("--workers", help="locust worker processes on loopback (0 = single process)")
    ap.add_argument("--baseline", help="a stored load_results.json (or run_tests.py results) to compare with")
    ap.add_argument("--tolerance", help="allowed regression vs the baseline (fraction; default 0.10)")
    ap.add_argument("--repeat", help="run the shape N times: mean, 95%% interval, noise-aware gate (LOAD_REPEAT)")
    ap.add_argument("--output", choices=("text", "json"), default="text", help="json: the results on stdout")
    return ap


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> LoadConfig:
    overrides: dict[str, Any] = {
        "shape": args.shape, "users": args.users, "spawn_rate": args.spawn_rate,
        "duration": parse_duration("--duration", args.duration, minimum=None) if args.duration else None,
        "min_requests": args.min_requests, "max_duration": args.max_duration,
        "rate": args.rate, "max_inflight": args.max_inflight, "sweep_max_users": args.sweep_max_users,
        "sweep_step": args.sweep_step, "max_tokens": args.max_tokens, "mix": args.mix,
        "results_dir": args.results_dir, "plots": False if args.no_plots else None, "repeat": args.repeat,
    }  # fmt: skip
    given = {k: v for k, v in overrides.items() if v is not None}
    return LoadConfig.from_env(environ, slo_file=args.slo_file, **given)


def target_from_args(raw_flag: str | None) -> Target | None:
    """--base-url / BASE_URL (+ API_KEY, MODEL), or None for the embedded stack. A malformed URL is
    exit 3 naming the variable, with any password redacted."""
    raw = raw_flag or env_value("BASE_URL")
    if not raw:
        return None
    url = parse_url("--base-url" if raw_flag else "BASE_URL", raw)
    from llmpyramid.target import Target

    return Target(url, env_value("API_KEY"), env_value("MODEL"))


def _results_file(args: argparse.Namespace | None, argv: list[str] | None = None) -> Path | None:
    # Before argparse succeeded, --results-dir still counts (a rejected flag must not leave a stale file).
    given = args.results_dir if args is not None else early_flag(argv or [], "--results-dir")
    raw = given or env_value("LOAD_RESULTS_DIR")
    try:
        return (parse_path("LOAD_RESULTS_DIR", raw) if raw else LoadConfig().results_dir) / RESULTS_FILE
    except ConfigError:
        return None


def _record(path: Path | None, verdict: str, exit_code: int, message: str) -> str:
    """Write this run's results file for a run that ended before locust produced one; say where (or why not)."""
    if path is None:
        return "no results file written (no usable results directory)"
    doc = {"verdict": verdict, "exit_code": exit_code, "findings": [message], "load_test": None, "artifacts": {}}
    try:
        write_json(path, doc)
    except OSError as exc:
        return f"no results file written ({path}: {exc.strerror or exc})"
    return f"results {path}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with guarded():
        args: argparse.Namespace | None = None
        try:
            args = build_parser().parse_args(argv)
            return _run(args)
        except RunInProgress:
            raise  # its results file belongs to the run in progress
        except PyramidError as exc:
            where = _record(_results_file(args, argv), f"error: {exc}", int(exc.exit_code), str(exc))
            exc.args = (f"{exc}; {where}",)
            raise
        except KeyboardInterrupt:
            _record(_results_file(args, argv), "interrupted", 130, "interrupted before the run finished")
            raise
    return 130  # pragma: no cover - guarded() exits


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    tolerance = parse_float("--tolerance", args.tolerance or "0.10")
    target = target_from_args(args.base_url)
    from llmpyramid.load.repeat import run_repeated  # here: --help and bad input stay fast

    run = run_repeated(config, target, workers=args.workers or 0, baseline=args.baseline, tolerance=tolerance)
    if args.output == "json":
        print(json.dumps(run.to_dict(), indent=2))
    else:
        lt = run.load_test
        print(f"load: {lt.get('completed')} of {lt.get('requests')} requests completed, "
              f"{lt.get('requests_per_second')} req/s, error rate {lt.get('error_rate')}; "
              f"results {run.artifacts.get('results')}")  # fmt: skip
        print(run.verdict)  # the last line: passed | inconclusive: ... | failed: ...
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
