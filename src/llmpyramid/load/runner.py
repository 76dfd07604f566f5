"""`run_load()`: one load run as locust subprocesses (local, or master + N workers on loopback).

Locust runs in its own processes: gevent's monkey-patching stays out of the caller (pytest,
scripts/run_tests.py), distributed mode needs processes anyway, and the generator's CPU cost
can be measured exactly (rusage of the reaped children). Each locust process is a
llmpyramid.procs.ManagedService in the run directory `RESULTS_DIR/run/` (0700; its state and log
files 0600: `locust.log`, `locust-worker-N.log`). It is stopped on the way out - on success,
failure, Ctrl-C or SIGTERM alike; SIGTERM first, so locust writes its reports - and gets SIGTERM
from the kernel if the process that started it dies without cleaning up (SIGKILL). A second run
into the same results directory while one is going on is refused (exit 3), never mixed in.

Credentials (API_KEY, `user:password@` in BASE_URL) reach locust through its environment, never
its command line, and every line shown or written names the target with them redacted. The
verdict is printed before the plots are made (report.render_reports: a child, after the run).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from llmpyramid.config import PROJECT_ROOT, parse_int
from llmpyramid.errors import ConfigError, ExitCode, InfrastructureError
from llmpyramid.load.config import LoadConfig
from llmpyramid.load.report import (
    HTML_FILE,
    LOCUST_HTML_FILE,
    RESULTS_FILE,
    SAMPLES_FILE,
    RunInProgress,
    compare_baseline,
    load_baseline,
    render_reports,
    verdict_of,
    write_json,
)
from llmpyramid.ports import free_port
from llmpyramid.procs import ManagedService

if TYPE_CHECKING:
    from llmpyramid.target import Target

DEFAULT_LOCUSTFILE = PROJECT_ROOT / "tests" / "locustfile.py"
STOP_GRACE_S = 10.0
STOP_IN_FLIGHT_S = 15.0  # at the end of a run, wait this long for in-flight requests to finish
# locust start-up (imports, workers connecting) on a busy 2-core box; only a safety net
START_SLACK_S = 120.0
STALE_FILES = (RESULTS_FILE, SAMPLES_FILE, HTML_FILE, LOCUST_HTML_FILE, "load_over_time.png", "sweep.png")
RUN_DIR = "run"  # under the results directory: the locust services' state, lock and log files


def _notify_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class LoadRun:
    """What a run produced: the seed's `load_test` block, one-line findings, the exit code."""

    load_test: dict[str, Any]
    findings: list[str]
    exit_code: int
    artifacts: dict[str, Any] = field(default_factory=dict)
    generator_cpu_seconds: float | None = None
    wall_seconds: float | None = None

    @property
    def verdict(self) -> str:
        return verdict_of(self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "load_test": self.load_test, "findings": self.findings,
                "exit_code": self.exit_code, "artifacts": self.artifacts,
                "generator_cpu_seconds": self.generator_cpu_seconds, "wall_seconds": self.wall_seconds}  # fmt: skip


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def locust_command(
    config: LoadConfig, locustfile: Path, *, workers: int, master_port: int | None
) -> tuple[list[str], list[list[str]]]:
    """argv of the master (or the single local process) and of each worker."""
    out = config.results_dir
    base = [sys.executable, "-m", "locust", "-f", str(locustfile)]
    # no --host (it may carry user:password@) and no -t: BASE_URL and LOAD_DURATION /
    # LOAD_MIN_REQUESTS / LOAD_MAX_DURATION come through the environment
    cmd = [*base, "--headless", "--only-summary", "--exit-code-on-error", "1",
           "--html", str(out / LOCUST_HTML_FILE), "--json-file", str(out / "locust_stats"),
           "--csv", str(out / "locust")]  # fmt: skip
    if config.shape != "rate":
        # closed-loop users finish the request in flight when the time is up, so it is counted
        cmd += ["--stop-timeout", f"{STOP_IN_FLIGHT_S:g}"]
    if config.shape == "constant":
        cmd += ["-u", str(config.users), "-r", f"{config.spawn_rate:g}"]
    elif config.shape == "rate":
        cmd += ["-u", str(config.users), "-r", str(config.users)]
    worker_cmds: list[list[str]] = []
    if workers:
        assert master_port is not None
        cmd += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
                "--expect-workers", str(workers), "--expect-workers-max-wait", "60"]  # fmt: skip
        worker_cmds = [
            [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)] for _ in range(workers)
        ]
    return cmd, worker_cmds


def run_load(
    config: LoadConfig,
    target: Target | None = None,
    *,
    workers: int = 0,
    baseline: str | Path | None = None,
    tolerance: float = 0.10,
    locustfile: str | Path | None = None,
    notify: Callable[[str], None] = _notify_stderr,
) -> LoadRun:
    """Run one load test and return its verdict. Raises ConfigError (3) / InfrastructureError (2)."""
    workers = parse_int("workers", workers, minimum=0, maximum=64)
    if config.shape == "rate":
        # one arrival user per worker process (or one locally); they share the rate
        config = replace(config, users=max(workers, 1))
    base = load_baseline(baseline) if baseline else None  # a bad baseline is exit 3 before any load
    if tolerance < 0:
        raise ConfigError(f"baseline tolerance must be >= 0, got {tolerance}")
    lf = Path(locustfile) if locustfile else DEFAULT_LOCUSTFILE
    if not lf.is_file():
        raise ConfigError(f"locustfile {lf} not found")

    t_start = time.monotonic()
    results_dir = config.results_dir
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"results directory {results_dir}: {exc.strerror or exc}") from None
    from llmpyramid.stack.embedded import target_session  # here: bad input stays fast

    locust = LocustProcesses(results_dir, workers)
    with contextlib.ExitStack() as run:
        with locust.master.locked():  # from "is a run going on here?" to "its processes are recorded"
            locust.refuse_if_running()
            clear_stale_reports(results_dir)
            # a given target is probed once here; else the running `invoke stack.up` stack, else one of our own
            tgt, _stack = run.enter_context(target_session(target, reuse_running=True, notify=notify))
            run.enter_context(locust)  # stopped (and its CPU counted) before the target session ends
            locust.start(config, tgt, lf, notify)
        rc = locust.wait(config.planned_seconds + STOP_IN_FLIGHT_S + START_SLACK_S, notify)

    log_path = locust.master.log_file
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith(("LLM load", "FAIL:", "error:")) and not line.startswith("LLM load verdict:"):
            notify(line)
    results_path = results_dir / RESULTS_FILE
    if not results_path.is_file():
        last = _last_error_line(log_path)
        if rc == ExitCode.CONFIGURATION:
            raise ConfigError(last or "locust rejected its configuration")
        if rc == ExitCode.INFRASTRUCTURE and last:
            raise InfrastructureError(last)  # e.g. the target does not answer
        raise InfrastructureError(f"load run produced no results (locust exit {rc}): {last or 'see ' + str(log_path)}")
    doc = json.loads(results_path.read_text())
    regressions = compare_baseline(doc["load_test"], base, tolerance) if base is not None else []
    for line in regressions:
        notify(f"FAIL: {line}")
    findings: list[str] = [*(doc.get("findings") or []), *regressions]
    if rc not in (0, 1, None) and not findings:
        findings.append(f"locust exited with code {rc}: {_last_error_line(log_path)}")
    exit_code = int(ExitCode.FAILURES) if findings else int(ExitCode.OK)
    artifacts = {**(doc.get("artifacts") or {}), "html": str(results_dir / "locust_report.html"),
                 "locust_json": str(results_dir / "locust_stats.json"), "log": str(log_path),
                 "worker_logs": [str(w.log_file) for w in locust.workers]}  # fmt: skip
    result = LoadRun(doc["load_test"], findings, exit_code, artifacts, round(locust.cpu_seconds, 3),
                     round(time.monotonic() - t_start, 2))  # fmt: skip
    doc.update(verdict=result.verdict, findings=findings, exit_code=exit_code, artifacts=artifacts,
               generator_cpu_seconds=result.generator_cpu_seconds, wall_seconds=result.wall_seconds,
               baseline={"file": str(baseline), "tolerance": tolerance} if baseline else None)  # fmt: skip
    write_json(results_path, doc)
    notify(f"load verdict: {result.verdict}")
    if config.plots:
        problem = render_reports(results_dir)
        if problem:
            notify(f"load: {problem}")
        with contextlib.suppress(OSError, ValueError):
            result.artifacts = json.loads(results_path.read_text()).get("artifacts") or artifacts
    return result


def clear_stale_reports(results_dir: Path) -> None:
    """A reader must never find the previous run's verdict: its reports go before this run starts."""
    try:
        for name in STALE_FILES:
            (results_dir / name).unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"results directory {results_dir}: cannot remove the last run's reports ({exc})") from None


class LocustProcesses:
    """Locust's master (or single local process) and its workers: one ManagedService each, in the
    run's private directory. Leaving the context stops them all (master first: on SIGTERM it writes its
    reports and tells the workers to quit), reaps them and counts their CPU seconds."""

    def __init__(self, results_dir: Path, workers: int) -> None:
        run_dir = results_dir / RUN_DIR
        self.results_dir = results_dir
        self.master = ManagedService("locust", run_dir, stop_grace=STOP_GRACE_S)
        self.workers = [ManagedService(f"locust-worker-{i}", run_dir, stop_grace=STOP_GRACE_S)
                        for i in range(1, workers + 1)]  # fmt: skip
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cpu_seconds = 0.0
        self._cpu_before = 0.0

    def refuse_if_running(self) -> None:
        """Call inside `master.locked()`: a live master means another run owns this results directory."""
        state = self.master.running()
        if state is not None:
            raise RunInProgress(
                f"a load run into {self.results_dir} is already running (locust pid {state.pid}); "
                "wait for it or choose another --results-dir / LOAD_RESULTS_DIR"
            )

    def start(self, config: LoadConfig, tgt: Target, lf: Path, notify: Callable[[str], None]) -> None:
        """Spawn master and workers (inside `master.locked()`, after `refuse_if_running`)."""
        from llmpyramid.target import handoff_env

        # LOAD_PLOTS=0: locust leaves the plots to us (after the verdict, at low priority)
        env = {**os.environ, **config.to_env(), **handoff_env(tgt), "PYTHONUNBUFFERED": "1", "LOAD_PLOTS": "0"}
        workers = len(self.workers)
        master_cmd, worker_cmds = locust_command(config, lf, workers=workers,
                                                 master_port=free_port() if workers else None)  # fmt: skip
        how_long = (f"{config.duration:g}s or until {config.min_requests} requests are done "
                    f"(at most {config.effective_max_duration:g}s)") if config.shape != "sweep" else (
                    f"up to {config.planned_seconds:g}s")  # fmt: skip
        notify(f"load: {config.shape} shape against {tgt.display_url}, {workers or 'no'} worker process(es), "
               f"{how_long}; reports in {self.results_dir}")  # fmt: skip
        self._cpu_before = _children_cpu()
        for service, argv in zip((self.master, *self.workers), (master_cmd, *worker_cmds), strict=True):
            service.log_file.unlink(missing_ok=True)  # the log holds this run only (spawn appends)
            proc, _state = service.spawn(argv, env=env, owner_pid=os.getpid())
            self.procs.append(proc)

    def wait(self, timeout: float, notify: Callable[[str], None]) -> int | None:
        """The master's exit code, or None if it had to be stopped."""
        try:
            return self.procs[0].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            notify(f"load: locust did not finish within {timeout:.0f}s; stopping it")
            return None

    def __enter__(self) -> LocustProcesses:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for service in (self.master, *self.workers):
            service.stop()
        for proc in self.procs:  # reaped, so RUSAGE_CHILDREN counts them
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if self.procs:
            self.cpu_seconds = _children_cpu() - self._cpu_before


def _last_error_line(log_path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        for ln in reversed(lines):
            if ln.startswith("error:"):
                return ln.removeprefix("error:").strip()
        for ln in reversed(lines):
            if "Error" in ln or "error" in ln:
                return ln[:200]
    return ""
