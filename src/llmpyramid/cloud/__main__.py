"""`python -m llmpyramid.cloud ...`: the cloud layer's front door (invoke and nox call the same functions).

    python -m llmpyramid.cloud smoke --cloud aws [--skip-teardown] [--results-file F]
    python -m llmpyramid.cloud sweep --cloud aws [--run-id ID] [--dry-run] [--json]   # this run's + expired ones
    python -m llmpyramid.cloud estimate --cloud aws|gcp|azure
    python -m llmpyramid.cloud check --cloud aws          # SkyPilot's credential check: 0, or 3 + reason
    python -m llmpyramid.cloud netns -- pytest tests/cloud_emulated      # loopback-only namespace (root)

Exit codes: 0 passed, 1 failures, 2 cloud/SkyPilot unreachable, 3 configuration; 130 on Ctrl-C/SIGTERM
(after tearing down what was launched).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from llmpyramid.cli import ArgumentParser, guarded
from llmpyramid.cloud import CLOUDS
from llmpyramid.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m llmpyramid.cloud", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    smoke = sub.add_parser("smoke", help="spot launch -> health -> inference -> teardown")
    smoke.add_argument("--cloud", choices=CLOUDS, required=True)
    smoke.add_argument("--skip-teardown", action="store_true", help="keep the cluster; print how to remove it")
    smoke.add_argument("--results-file", type=Path, help="also write the document here")
    sweep = sub.add_parser("sweep", help="remove this run's wf-smoke-* clusters and any past their time to live")
    sweep.add_argument("--cloud", choices=CLOUDS, required=True)
    sweep.add_argument("--run-id", default=None, help="this run's id (default: $LLMPYRAMID_RUN_ID)")
    sweep.add_argument("--dry-run", action="store_true")
    sweep.add_argument("--json", action="store_true")
    est = sub.add_parser("estimate", help="hourly price from the catalog and the cost guard's worst case")
    est.add_argument("--cloud", choices=CLOUDS, required=True)
    check = sub.add_parser("check", help="SkyPilot's credential check for one cloud (exit 3 with its reason)")
    check.add_argument("--cloud", choices=CLOUDS, required=True)
    netns = sub.add_parser("netns", help="run a command in a loopback-only network namespace")
    netns.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    netns.add_argument("cmd", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    with guarded():
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
        if args.command == "netns":
            from llmpyramid.cloud import emulator

            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise ConfigError("netns needs a command: python -m llmpyramid.cloud netns -- CMD ...")
            return emulator.inside_netns(cmd) if args.inside else emulator.run_in_netns(cmd)
        from llmpyramid.cloud.settings import CloudSettings

        settings = CloudSettings.from_env(cloud=args.cloud)
        if args.command == "estimate":
            from llmpyramid.cloud import catalog

            est = catalog.estimate(settings)
            print(json.dumps({"estimate": est.describe(), **est.as_dict()}))
            catalog.guard(est)
            return 0
        if args.command == "check":
            from llmpyramid.cloud import api_server, skypilot

            with api_server.scope(settings.run_dir):
                caps = skypilot.check_credentials(args.cloud, settings.request_timeout)
            print(f"{args.cloud}: enabled for {', '.join(caps)}")
            return 0
        if args.command == "sweep":
            from llmpyramid.cloud import api_server, ownership
            from llmpyramid.cloud.sweeper import sweep

            given = args.run_id if args.run_id is not None else os.environ.get(ownership.RUN_ID_ENV)
            run = ownership.run_id(given) if given else None  # none given: only expired ones go
            with api_server.scope(settings.run_dir):
                report = sweep(args.cloud, run_id=run, dry_run=args.dry_run, regions=[settings.region_name])
            print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
            return 0
        from llmpyramid.cloud.suite import run_smoke, write_seed_results

        document, code = run_smoke(settings, skip_teardown=args.skip_teardown)
        write_seed_results(document)
        if args.results_file:
            write_seed_results(document, args.results_file)
        print(json.dumps(document, indent=2))
        return int(code)
    return 1  # pragma: no cover - guarded() exits on error


if __name__ == "__main__":
    sys.exit(main())
