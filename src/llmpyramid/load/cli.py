"""`python -m llmpyramid.load`: the load layer's command line (invoke, nox and run_tests.py call it).

    python -m llmpyramid.load --users 10 --duration 60
    python -m llmpyramid.load --shape sweep --sweep-max-users 32
    python -m llmpyramid.load --shape rate --rate 4 --duration 60 --workers 2
    python -m llmpyramid.load --baseline results/load-baseline.json --tolerance 0.15

Flags override LOAD_* / SLO_* environment variables. Exit codes: 0 pass, 1 SLO violation,
baseline regression or failed requests, 2 target unreachable, 3 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, NoReturn

from llmpyramid.cli import guarded
from llmpyramid.errors import ConfigError
from llmpyramid.load.config import SHAPES, LoadConfig
from llmpyramid.load.runner import run_load
from llmpyramid.stack import target_from_env

_SPAN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(raw: str) -> float:
    """Seconds from '60', '60s', '2m', '1h30m'; negative or malformed -> ConfigError."""
    text = str(raw).strip()
    m = _SPAN.match(text)
    if not text or m is None or not any(m.groups()):
        raise ConfigError(f"duration must be a positive time span like 60, 60s or 2m, got {raw!r}")
    h, mi, s = m.groups()
    seconds = int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
    if seconds <= 0:
        raise ConfigError(f"duration must be positive, got {raw!r}")
    return seconds


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # bad flags are configuration errors (exit 3)
        raise ConfigError(f"{self.prog}: {message}")


def build_parser(prog: str = "python -m llmpyramid.load") -> argparse.ArgumentParser:
    ap = _Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", help=f"one of {', '.join(SHAPES)} (LOAD_SHAPE; default constant)")
    ap.add_argument("-u", "--users", help="concurrent users for the constant shape (LOAD_USERS; default 10)")
    ap.add_argument("-r", "--spawn-rate", help="users started per second (LOAD_SPAWN_RATE; default 2)")
    ap.add_argument("-t", "--duration", help="run time: 60, 60s, 2m (LOAD_DURATION; default 60s)")
    ap.add_argument("--rate", help="requests/s for the rate shape (LOAD_RATE)")
    ap.add_argument("--max-inflight", help="in-flight cap for the rate shape (LOAD_MAX_INFLIGHT)")
    ap.add_argument("--sweep-max-users", help="top level of the sweep (LOAD_SWEEP_MAX_USERS; default 32)")
    ap.add_argument("--sweep-step", help="seconds per sweep level (LOAD_SWEEP_STEP; default 15)")
    ap.add_argument("--max-tokens", help="max_tokens choices, e.g. 32,64,128 (LOAD_MAX_TOKENS)")
    ap.add_argument("--mix", help="request mix, e.g. chat_stream=6,completion=1 (LOAD_MIX)")
    ap.add_argument("--slo-file", help="TOML/JSON file with an [slo] table (LOAD_SLO_FILE)")
    ap.add_argument("--results-dir", help="where reports go (LOAD_RESULTS_DIR; default results/load)")
    ap.add_argument("--base-url", help="target server (BASE_URL); default: the embedded stack")
    ap.add_argument("--workers", default="0", help="locust worker processes on loopback (0 = single process)")
    ap.add_argument("--baseline", help="a stored load_results.json (or run_tests.py results) to compare with")
    ap.add_argument("--tolerance", default="0.10", help="allowed regression vs the baseline (fraction)")
    ap.add_argument("--output", choices=("text", "json"), default="text", help="json: the results on stdout")
    return ap


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    overrides: dict[str, Any] = {
        "shape": args.shape, "users": args.users, "spawn_rate": args.spawn_rate,
        "duration": parse_duration(args.duration) if args.duration is not None else None,
        "rate": args.rate, "max_inflight": args.max_inflight, "sweep_max_users": args.sweep_max_users,
        "sweep_step": args.sweep_step, "max_tokens": args.max_tokens, "mix": args.mix,
        "results_dir": args.results_dir,
    }  # fmt: skip
    return LoadConfig.from_env(slo_file=args.slo_file, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    with guarded():
        args = build_parser().parse_args(argv)
        config = config_from_args(args)
        from llmpyramid.config import parse_float

        tolerance = parse_float("--tolerance", args.tolerance)
        target = target_from_env(args.base_url)
        run = run_load(config, target, workers=args.workers, baseline=args.baseline, tolerance=tolerance)
        if args.output == "json":
            print(json.dumps(run.to_dict(), indent=2))
        else:
            lt = run.load_test
            print(f"load {'PASSED' if run.exit_code == 0 else 'FAILED'}: {lt.get('requests')} requests, "
                  f"{lt.get('requests_per_second')} req/s, error rate {lt.get('error_rate')}; "
                  f"results {run.artifacts.get('results')}")  # fmt: skip
        return run.exit_code
    return 130  # pragma: no cover - guarded() exits


if __name__ == "__main__":
    sys.exit(main())
