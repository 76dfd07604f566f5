"""`python -m llmpyramid.iac {run,static,test,fixtures}`: one JSON report, one exit code."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from llmpyramid.cli import ArgumentParser, early_flag, guarded
from llmpyramid.errors import ConfigError
from llmpyramid.iac.paths import MODULES
from llmpyramid.iac.runner import STATIC_LAYERS, run_iac

PARTS = {
    "run": ("static", "native", "fixtures"),
    "static": ("static", "fixtures"),
    "test": ("native",),
    "fixtures": ("fixtures",),
}


def _drop_stale_report(argv: list[str]) -> None:
    """A run that never starts must not leave the previous run's iac.json standing in for it."""
    results_dir = Path(early_flag(argv, "--results-dir") or "results")
    stale = results_dir / "iac.json"
    with contextlib.suppress(OSError):  # an unusable results dir is reported by the error itself
        stale.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with guarded():
        try:
            return _run(argv)
        except ConfigError:
            _drop_stale_report(argv)
            raise
    return 2  # unreachable: guarded() exits on error


def _run(argv: list[str]) -> int:
    parser = ArgumentParser(prog="python -m llmpyramid.iac", description=__doc__)
    parser.add_argument(
        "command",
        choices=sorted(PARTS),
        help="run = everything; static = fmt, "
        "tflint, checkov, Rego + fixtures; test = terraform test; fixtures = proofs only",
    )
    parser.add_argument("--module", action="append", choices=MODULES, help="limit to module(s)")
    parser.add_argument("--layer", action="append", choices=STATIC_LAYERS, help="limit static layers")
    parser.add_argument("--results-dir", default="results", help="where iac.json and SARIF go")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    report = run_iac(
        args.results_dir,
        parts=PARTS[args.command],
        modules=args.module or MODULES,
        static_layers=args.layer or STATIC_LAYERS,
    )
    if args.output == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.to_text())
    return int(report.exit_code)


if __name__ == "__main__":
    sys.exit(main())
