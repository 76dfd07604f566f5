"""Benchmark of the pyramid itself (prints numbers; no assertions): per nox session, wall time,
CPU-seconds and how much of the machine's cores it kept busy.

    python -m llmpyramid.bench_pyramid                       # every default session, one after another
    python -m llmpyramid.bench_pyramid --sessions unit smoke --pipeline local
    python -m llmpyramid.bench_pyramid --burners 2           # the same with two CPU burners running

Each session runs as `python -m nox -s NAME`, as plain `nox` runs it. CPU-seconds are the session's
whole process tree (every descendant that was waited for: pytest, servers, emulators, terraform);
`machine_busy` is the share of all cores that was busy meanwhile (anything on the box, burners
included). The document goes to results/bench-pyramid.json (`--output`). Exit code: 0 when every
session passed, else 1 (the numbers are still written).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from llmpyramid import layers
from llmpyramid.cli import ArgumentParser, guarded
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.procs import die_with_parent, stop_process

BURNER = "while True: pass"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_busy() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def measure(name: str, argv: list[str]) -> dict[str, Any]:
    """Run one command to its end and return its wall time, tree CPU-seconds and core utilisation."""
    cores = psutil.cpu_count() or 1
    cpu0, busy0, t0 = _children_cpu(), _machine_busy(), time.monotonic()
    print(f"bench_pyramid: {' '.join(argv[2:])}", file=sys.stderr, flush=True)
    # the session's own output goes to stderr: stdout carries only the document
    proc = subprocess.run(
        argv, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=sys.stderr, preexec_fn=die_with_parent, check=False
    )
    wall = time.monotonic() - t0
    cpu = _children_cpu() - cpu0
    busy = _machine_busy() - busy0
    entry = {
        "name": name,
        "command": " ".join(argv[2:]),
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "core_utilisation": round(cpu / (wall * cores), 3) if wall else None,
        "machine_busy": round(busy / (wall * cores), 3) if wall else None,
    }
    print(
        f"bench_pyramid: {name}: exit {proc.returncode}, {wall:.0f} s wall, {cpu:.0f} CPU-s, "
        f"{entry['core_utilisation']:.0%} of {cores} cores",
        file=sys.stderr,
        flush=True,
    )
    return entry


@contextmanager
def burners(count: int) -> Iterator[None]:
    """`count` busy loops beside the run (a shared, busy box), stopped whatever happens."""
    procs = [
        subprocess.Popen([sys.executable, "-c", BURNER], preexec_fn=die_with_parent, stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for proc in procs:
            stop_process(proc.pid, grace=1.0)


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m llmpyramid.bench_pyramid", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--sessions", nargs="+", choices=layers.names(), metavar="NAME",
                    help="nox sessions to measure (default: the default ones, in table order)")  # fmt: skip
    ap.add_argument("--pipeline", nargs="*", default=[], choices=("local", "ci", "staging"), metavar="NAME",
                    help="invoke pipelines to measure after the sessions (e.g. local)")  # fmt: skip
    ap.add_argument("--burners", type=int, default=0, choices=range(9), metavar="N", help="CPU burners beside it")
    ap.add_argument("--output", type=Path, default=PROJECT_ROOT / "results" / "bench-pyramid.json")
    return ap


def run(args: argparse.Namespace) -> dict[str, Any]:
    sessions = args.sessions or layers.default_names()
    started = time.monotonic()
    entries = []
    with burners(args.burners):
        for name in sessions:
            entries.append(measure(name, [sys.executable, "-m", "nox", "-s", name]))
        for name in args.pipeline:
            entries.append(measure(f"invoke {name}", [sys.executable, "-m", "invoke", name]))
    session_entries = [e for e in entries if not e["name"].startswith("invoke ")]
    wall = sum(e["wall_seconds"] for e in session_entries)
    cpu = sum(e["cpu_seconds"] for e in session_entries)
    cores = psutil.cpu_count() or 1
    return {
        "machine": {"cores": cores, "memory_bytes": psutil.virtual_memory().total, "burners": args.burners},
        "sessions": entries,
        "nox_total": {
            "sessions": len(session_entries),
            "failed": [e["name"] for e in session_entries if e["exit_code"] != 0],
            "wall_seconds": round(wall, 1),
            "cpu_seconds": round(cpu, 1),
            "core_utilisation": round(cpu / (wall * cores), 3) if wall else None,
        },
        "bench_wall_seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    with guarded():
        args = build_parser().parse_args(argv)
        doc = run(args)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(doc, indent=2) + "\n")
        total = doc["nox_total"]
        print(json.dumps(doc, indent=2))
        print(
            f"bench_pyramid: {total['sessions']} sessions in {total['wall_seconds']:.0f} s, "
            f"{total['cpu_seconds']:.0f} CPU-s ({total['core_utilisation']:.0%} of the cores); "
            f"failed: {', '.join(total['failed']) or 'none'}; {args.output}",
            file=sys.stderr,
        )
        return 0 if all(e["exit_code"] == 0 for e in doc["sessions"]) else 1
    return 1  # pragma: no cover - guarded() exits


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
