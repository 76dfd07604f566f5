"""The agent entry point behind `scripts/run_tests.py`: flags -> preflight -> suite -> document.

    uv run python scripts/run_tests.py --suite smoke --output json
    uv run python scripts/run_tests.py --suite unit -- -x tests/unit/test_config.py   # after --: the layer's own

Order of verdicts: configuration (unknown suite, bad flag value, invalid URL, bad threshold env:
exit 3), then infrastructure (the given target does not answer: exit 2, checked before any test
runs), then the suite itself (0 passed, 1 failures). With `--output json` stdout carries only the
results document; every log line goes to stderr. The document is always written to
`--results-file` and validated against the published schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from llmpyramid import layers, results
from llmpyramid.cli import ArgumentParser, early_flag, guarded
from llmpyramid.cloud import CLOUDS
from llmpyramid.config import PROJECT_ROOT, Thresholds, parse_duration
from llmpyramid.errors import ConfigError, ExitCode, PyramidError, worst
from llmpyramid.runs import RunRequest, SuiteRun
from llmpyramid.suites import run_layer, suite_names
from llmpyramid.target import check_reachable, target_from_env

DEFAULT_RESULTS_FILE = "results/results.json"
ROUTER_FLAGS = {
    "--router": "the reference router to build and test: litellm (default) or haproxy (HYBRID_ROUTER)",
    "--router-url": "the router in front of base and burst (else the reference topology is built on loopback)",
    "--burst-url": "the burst backend, for attribution and health",
    "--base-stop-cmd": "command that stops the base backend (remote fault scenarios c-e)",
    "--base-start-cmd": "command that starts it again",
    "--burst-stop-cmd": "command that stops the burst backend (scenario e)",
}


def _duration(raw: str) -> float:
    return parse_duration("--duration", raw, minimum=1, maximum=24 * 3600)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="run_tests.py",
        usage="%(prog)s [options] [-- LAYER ARGUMENTS]",
        description="Run a layer of the test pyramid and report the seed's Test Results Schema. "
        "Exit codes: 0 passed, 1 test failures, 2 infrastructure error, 3 configuration error. "
        "After --: pytest arguments for a pytest layer, the load command's flags for --suite load.",
    )
    p.add_argument(
        "--suite",
        default="all",
        metavar="NAME",
        help="; ".join(f"{layer.name}: {layer.checks}" for layer in layers.LAYERS)
        + f"; {layers.ALL}: {', '.join(layer.name for layer in layers.LAYERS if layer.in_all)} against one target"
        " (default: all)",
    )
    p.add_argument(
        "--output",
        default="text",
        choices=["json", "text"],
        help="json: only the document on stdout",
    )
    p.add_argument(
        "--base-url",
        help="test this OpenAI-compatible server (else BASE_URL; else start the embedded stack)",
    )
    p.add_argument("--duration", type=_duration, help="60, 60s, 2m (load, cloud)")
    p.add_argument("--cloud", choices=CLOUDS, help="cloud for --suite cloud")
    p.add_argument(
        "--results-file",
        default=DEFAULT_RESULTS_FILE,
        help=f"where the JSON document is written (default: {DEFAULT_RESULTS_FILE})",
    )
    p.add_argument("-k", dest="keyword", help="pytest -k expression (pytest suites only)")
    hybrid = p.add_argument_group("hybrid (--suite hybrid; --base-url is then the base backend)")
    for flag, about in ROUTER_FLAGS.items():
        hybrid.add_argument(flag, help=about)
    return p


def _results_path(raw: str) -> Path:
    path = Path(raw)
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    if path.is_dir():
        raise ConfigError(f"--results-file {raw!r} is a directory; give a file name")
    return path


def _text_report(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    lines = []
    for t in doc["tests"]:
        if t["status"] in ("failed", "error", "xpassed"):
            lines.append(f"FAILED {t.get('nodeid', t['name'])}: {t.get('error', '')}")
            if t.get("metrics"):
                lines.append(f"       metrics: {json.dumps(t['metrics'])}")
    for note in doc.get("notes", []):
        lines.append(f"note: {note}")
    lines.append(
        f"{doc.get('suite', '?')}: {s['passed']} passed, {s['failed']} failed, "
        f"{s['skipped']} skipped, {s.get('xfailed', 0)} xfailed of {s['total']} "
        f"in {s['duration_seconds']:.1f}s -> exit {doc.get('exit_code')}"
    )
    return "\n".join(lines)


def _router_options(args: argparse.Namespace) -> dict[str, Any]:
    names = [f[2:].replace("-", "_") for f in ROUTER_FLAGS]
    return {"base_url": args.base_url, **{name: getattr(args, name) for name in names}}


def split_layer_args(argv: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """run_tests' own flags, and what follows `--` (handed to the layer)."""
    if "--" not in argv:
        return argv, ()
    i = argv.index("--")
    return argv[:i], tuple(argv[i + 1 :])


def execute(argv: list[str] | None = None) -> tuple[dict[str, Any], ExitCode, str]:
    """Parse, preflight and run: (document, exit code, output mode). Never raises PyramidError."""
    argv, layer_args = split_layer_args(list(argv or []))
    output = early_flag(argv or [], "--output", ("json", "text")) or "text"
    suite_name: str | None = None
    target_url: str | None = None
    results_file = PROJECT_ROOT / DEFAULT_RESULTS_FILE
    try:
        results_file = _results_path(early_flag(argv or [], "--results-file") or DEFAULT_RESULTS_FILE)
        args = build_parser().parse_args(argv)
        output, suite_name = args.output, args.suite
        results_file = _results_path(args.results_file)
        results.check_writable(results_file)  # before any server starts: no run without its verdict file
        if args.suite not in suite_names():
            raise ConfigError(f"unknown suite {args.suite!r}; choose one of: {', '.join(suite_names())}")
        layer = None if args.suite == layers.ALL else layers.get(args.suite)
        flags = layer.flags if layer else ()
        if args.duration is not None and "duration" not in flags:
            raise ConfigError(f"--duration does not apply to --suite {args.suite} (it is for load and cloud)")
        if args.cloud is not None and "cloud" not in flags:
            raise ConfigError(f"--cloud does not apply to --suite {args.suite} (it is for --suite cloud)")
        router_given = [f for f in ROUTER_FLAGS if getattr(args, f[2:].replace("-", "_")) is not None]
        if router_given and "router" not in flags:
            raise ConfigError(f"{router_given[0]} does not apply to --suite {args.suite} (it is for --suite hybrid)")
        if layer_args and not (layer is not None and layer.takes_args):
            raise ConfigError(f"--suite {args.suite} takes no arguments after --: {' '.join(layer_args)}")
        Thresholds.from_env()  # a bad threshold is a configuration error, found up front
        uses_target = layer is None or layer.target
        target = target_from_env(args.base_url) if uses_target else None
        target_url = target.display_url if target else None
        if target is not None:
            check_reachable(target)  # probed once, here; children are told (THE target rule)
        request = RunRequest(
            suite=args.suite,
            target=target,
            duration=args.duration,
            cloud=args.cloud,
            layer_args=(*(("-k", args.keyword) if args.keyword else ()), *layer_args),
            options=_router_options(args) if "router" in flags else None,
        )
        run: SuiteRun = run_layer(args.suite, request)
        document, code = run.document, run.exit_code
        document["exit_code"] = int(code)
    except PyramidError as exc:
        document = results.error_document(suite_name, target_url, exc.exit_code, str(exc))
        code = exc.exit_code
    results.validate(document)
    try:
        results.write_results(results_file, document)
    except PyramidError as exc:
        # No stale verdict may stand in for this run: the document's error and the exit code say so
        # (the worse of the run's verdict and 3); main() prints that error on stderr.
        previous = document.get("error")
        document["error"] = results.one_line(f"{previous}; {exc}" if previous else str(exc))
        code = worst(code, exc.exit_code)
        document["exit_code"] = int(code)
    return document, code, output


def main(argv: list[str] | None = None) -> int:
    with guarded():
        document, code, output = execute(sys.argv[1:] if argv is None else argv)
        if output == "json":
            print(json.dumps(document, indent=2), flush=True)
        else:
            print(_text_report(document), flush=True)
        if document.get("error") and code in (ExitCode.INFRASTRUCTURE, ExitCode.CONFIGURATION):
            print(f"error: {document['error']}", file=sys.stderr)
        return int(code)
    return int(ExitCode.FAILURES)  # pragma: no cover - guarded() exits on error


if __name__ == "__main__":
    sys.exit(main())
