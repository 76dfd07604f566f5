"""`python -m llmpyramid.iac {run,static,test,fixtures}`: one JSON report, one exit code."""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn

from llmpyramid.cli import fail, guarded
from llmpyramid.errors import ExitCode
from llmpyramid.iac.paths import MODULES
from llmpyramid.iac.runner import STATIC_LAYERS, run_iac

PARTS = {
    "run": ("static", "native", "fixtures"),
    "static": ("static", "fixtures"),
    "test": ("native",),
    "fixtures": ("fixtures",),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # a bad flag is a configuration error (exit 3)
        fail(f"{self.prog}: {message}", ExitCode.CONFIGURATION)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m llmpyramid.iac", description=__doc__)
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
    with guarded():
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
    return 2  # unreachable: guarded() exits on error


if __name__ == "__main__":
    sys.exit(main())
