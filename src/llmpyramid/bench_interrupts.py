"""Interrupt stress benchmark (prints numbers; not part of the default run): Ctrl-C, SIGTERM and a second
signal at random points of each front door's run, repeated, with exit codes and leftovers counted.

    python -m llmpyramid.bench_interrupts                          # every front door, 50 runs per pattern
    python -m llmpyramid.bench_interrupts --doors stack.up run_tests --runs 10 --burners 2

Each run starts the front door as a user would, with its own run/results directories and a tag in its
environment that every process it starts inherits. Once the front door catches SIGINT and SIGTERM (before
that, at interpreter start-up, the kernel's default action ends a process that has started nothing yet),
after a random delay within the front door's usual run time, it gets the pattern's signal(s); then the
benchmark waits for it to exit and lists the tagged processes still alive (leftovers). A background door's
(`stack.up`) services first go to its `down`, which finds them by its state file: only what that leaves is
a leftover. The contract: exit 130 and 0 leftovers, every time. A run that ended before its signal took
effect (exit 0) is counted apart ("finished first"), never as a pass of the interrupt. Leftovers are
stopped after they are counted, so one bad run never spoils the next. The document goes to
results/bench-interrupts.json. Exit code: 0 when every interrupted run exited 130 with 0 leftovers.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from llmpyramid.bench_pyramid import burners
from llmpyramid.cli import INTERRUPTED_EXIT, ArgumentParser, guarded
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.procs import processes_with_env, stop_process

TAG_ENV = "LLMPYRAMID_BENCH_TAG"
EXIT_LIMIT_S = 420.0  # a front door's whole teardown is bounded below this (cli.TEARDOWN_BOUND_S)
SECOND_SIGNAL_WITHIN_S = 1.0
STDERR_TAIL_LINES = 15


@dataclass(frozen=True)
class Door:
    argv: tuple[str, ...]  # `python` is this interpreter; {tmp} is the run's own directory
    window_s: float  # signals land uniformly within this many seconds of the start
    down: tuple[str, ...] = ()  # a background service's stop command, run when the front door finished first


PY = "python"
DOORS: dict[str, Door] = {
    "stack.up": Door((PY, "-m", "invoke", "stack.up", "--port", "0"), 1.5, (PY, "-m", "invoke", "stack.down")),
    "run_tests": Door((PY, "scripts/run_tests.py", "--suite", "smoke", "--results-file", "{tmp}/results.json"), 8.0),
    "nox -s smoke": Door((PY, "-m", "nox", "-s", "smoke"), 12.0),
    "invoke local": Door((PY, "-m", "invoke", "local"), 45.0),
    "invoke staging": Door((PY, "-m", "invoke", "staging"), 60.0),
    "load": Door((PY, "-m", "llmpyramid.load", "-u", "2", "-t", "20", "--no-plots", "--results-dir", "{tmp}/ld"), 20.0),
    "emulators.up": Door((PY, "-m", "invoke", "emulators.up"), 2.0, (PY, "-m", "invoke", "emulators.down")),
}  # fmt: skip
PATTERNS: dict[str, tuple[int, ...]] = {
    "SIGINT": (signal.SIGINT,),
    "SIGTERM": (signal.SIGTERM,),
    "SIGINT+SIGTERM": (signal.SIGINT, signal.SIGTERM),  # a CI cancel
    "SIGTERM+SIGTERM": (signal.SIGTERM, signal.SIGTERM),  # uv run forwarding its own
}


def _argv(argv: tuple[str, ...], tmp: Path) -> list[str]:
    return [sys.executable if a == PY else a.format(tmp=tmp) for a in argv]


def _env(tmp: Path, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BASE_URL"}
    return {
        **env, TAG_ENV: tag, "STACK_RUN_DIR": str(tmp / "run-stack"), "EMULATORS_RUN_DIR": str(tmp / "run-emu"),
        "PIPELINE_RESULTS_DIR": str(tmp / "results"), "LOAD_RESULTS_DIR": str(tmp / "results-load"),
        "LLMPYRAMID_REPORT_DIR": str(tmp / "report"), "STAGING_PROVISIONER": "local", "TMPDIR": str(tmp),
        "SMOKE_LATENCY_SAMPLES": "50",  # a smoke suite long enough to be interrupted inside
    }  # fmt: skip


def one_run(name: str, door: Door, pattern: tuple[int, ...], rng: random.Random) -> dict[str, Any]:
    tag = uuid.uuid4().hex
    gap = None  # seconds between the first and the second signal
    with tempfile.TemporaryDirectory(prefix="llmpyramid-bench-int-") as tmp_dir:
        tmp = Path(tmp_dir)
        env = _env(tmp, tag)
        delay = rng.uniform(0.0, door.window_s)
        since = time.time()
        proc = subprocess.Popen(_argv(door.argv, tmp), cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        catching_after = _wait_until_catching(proc)
        try:
            proc.wait(timeout=delay)
            finished_first = True
        except subprocess.TimeoutExpired:
            finished_first = False
            for i, sig in enumerate(pattern):
                if i:
                    gap = rng.uniform(0.0, SECOND_SIGNAL_WITHIN_S)
                    time.sleep(gap)
                if proc.poll() is None:
                    proc.send_signal(sig)
        sent = time.monotonic()
        try:
            _, err = proc.communicate(timeout=EXIT_LIMIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        took = time.monotonic() - sent
        finished_first = finished_first or proc.returncode == 0  # the signal came as it exited: work done
        handed_over = 0  # services a background door left to its state file, stopped by its `down`
        if door.down:
            handed_over = len(processes_with_env(TAG_ENV, tag, since))
            subprocess.run(_argv(door.down, tmp), cwd=PROJECT_ROOT, env=env, capture_output=True, check=False)
        left = _settled_leftovers(tag, since)
        handed_over -= len(left)
        cmdlines = [" ".join(p.cmdline())[:160] for p in left if p.is_running()]
        for p in left:  # counted; now stopped, so the next run starts clean
            stop_process(p.pid, grace=2.0)
    ok = finished_first or (proc.returncode == INTERRUPTED_EXIT and not cmdlines)
    return {
        "door": name, "catching_after_s": round(catching_after, 2), "delay_s": round(delay, 2),
        "finished_first": finished_first, "exit_code": proc.returncode,
        "exit_after_signal_s": round(took, 2), "handed_to_state_file": handed_over, "leftovers": cmdlines,
        "second_signal_after_s": None if gap is None else round(gap, 3),
        # a failure keeps the end of its stderr (how it ended); a pass its last line
        "stderr": [ln[:200] for ln in err.strip().splitlines()[-1 if ok else -STDERR_TAIL_LINES:]],
    }  # fmt: skip


def _caught_signals(pid: int) -> int:
    """The process's caught-signal mask (SigCgt in /proc/PID/status; psutil does not expose it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return int(match.group(1), 16) if match else 0


def _wait_until_catching(proc: subprocess.Popen[str], limit_s: float = 120.0) -> float:
    """Seconds until the front door catches SIGINT and SIGTERM, or exits, or `limit_s` passes (then the
    signals still go, and a door that never caught them shows as a failure)."""
    wanted = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    started = time.monotonic()
    while _caught_signals(proc.pid) & wanted != wanted:
        if proc.poll() is not None or time.monotonic() - started > limit_s:
            break
        time.sleep(0.005)
    return time.monotonic() - started


def _settled_leftovers(tag: str, since: float, settle_s: float = 10.0) -> list[psutil.Process]:
    """Tagged processes still alive once children had `settle_s` to finish their own bounded exit."""
    deadline = time.monotonic() + settle_s
    left = processes_with_env(TAG_ENV, tag, since)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_with_env(TAG_ENV, tag, since)
    return left


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    interrupted = [r for r in runs if not r["finished_first"]]
    bad = [r for r in interrupted if r["exit_code"] != INTERRUPTED_EXIT or r["leftovers"]]
    return {
        "runs": len(runs),
        "interrupted": len(interrupted),
        "finished_first": len(runs) - len(interrupted),
        "exit_codes": dict(collections.Counter(str(r["exit_code"]) for r in interrupted)),
        "runs_with_leftovers": sum(bool(r["leftovers"]) for r in runs),
        "max_exit_after_signal_s": max((r["exit_after_signal_s"] for r in interrupted), default=None),
        "failures": bad[:5],
    }


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m llmpyramid.bench_interrupts", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--doors", nargs="+", choices=list(DOORS), default=list(DOORS), metavar="NAME",
                    help=f"front doors to interrupt (default: all: {', '.join(DOORS)})")  # fmt: skip
    ap.add_argument("--patterns", nargs="+", choices=list(PATTERNS), default=list(PATTERNS), metavar="NAME")
    ap.add_argument("--runs", type=int, default=50, choices=range(1, 1001), metavar="N", help="per door and pattern")
    ap.add_argument("--burners", type=int, default=0, choices=range(9), metavar="N", help="CPU burners beside it")
    ap.add_argument("--seed", type=int, default=None, help="random seed (printed, so a run can be repeated)")
    ap.add_argument("--output", type=Path, default=PROJECT_ROOT / "results" / "bench-interrupts.json")
    return ap


def main(argv: list[str] | None = None) -> int:
    with guarded():
        args = build_parser().parse_args(argv)
        seed = args.seed if args.seed is not None else random.randrange(2**32)
        rng = random.Random(seed)
        started = time.monotonic()
        table: dict[str, dict[str, Any]] = {}
        doc = {"seed": seed, "runs_per_pattern": args.runs, "burners": args.burners, "results": table}
        with burners(args.burners):
            for name in args.doors:
                for pattern in args.patterns:
                    runs = [one_run(name, DOORS[name], PATTERNS[pattern], rng) for _ in range(args.runs)]
                    table[f"{name} / {pattern}"] = summary = summarize(runs)
                    print(f"bench_interrupts: {name} / {pattern}: {summary['interrupted']} interrupted, exit codes "
                          f"{summary['exit_codes']}, {summary['runs_with_leftovers']} with leftovers, "
                          f"{summary['finished_first']} finished first", file=sys.stderr, flush=True)  # fmt: skip
                    doc["wall_seconds"] = round(time.monotonic() - started, 1)
                    _write(args.output, doc)  # after each pattern: a long run stopped early keeps what it measured
        print(json.dumps(doc, indent=2))
        ok = all(not s["failures"] and not s["runs_with_leftovers"] for s in table.values())
        return 0 if ok else 1
    return 1  # pragma: no cover - guarded() exits


if __name__ == "__main__":
    sys.exit(main())
