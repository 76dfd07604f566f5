"""The suite table: what `scripts/run_tests.py --suite NAME` runs, and how.

A suite is one entry in `SUITES`. Pytest-based suites name their selection; other suites (load,
cloud, ...) give a function `run(request) -> SuiteRun`. Plugging a new suite in is a one-entry
change, e.g. for load:

    "load": Suite("load", "locust load test", run=llmpyramid.load.run_suite, uses=("base_url",
                  "duration")),

where `run_suite(request: RunRequest) -> SuiteRun` typically does

    with target_session(request.target, log=request.log) as (target, stack):
        load_test, findings = run_load(target, duration=request.duration or 60)
    tests = [results.test_entry(f["name"], f["status"], 0.0, error=..., metrics=...)
             for f in findings]
    doc = results.build_document(tests, elapsed, suite="load", target=..., load_test=load_test,
                                 findings=findings)
    return SuiteRun(doc, results.exit_code_for(0, doc))

`target_session` is the single rule for "which server do we test": the given target, or an
embedded llama.cpp stack started for the run and stopped afterwards (tests/conftest.py uses it too).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmpyramid import results
from llmpyramid.config import PROJECT_ROOT, StackSettings, _env, parse_float, parse_int
from llmpyramid.errors import ConfigError, ExitCode, InfrastructureError, PyramidError
from llmpyramid.model import ensure_model
from llmpyramid.stack import EmbeddedStack, Target

ABORT_FILE_ENV = "LLMPYRAMID_ABORT_FILE"  # where conftest records an infra/config abort for the runner
CLOUDS = ("aws", "gcp", "azure")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- thresholds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Knobs of the smoke / integration / contract suites, from the environment.

    A bad value is a configuration error (exit 3)."""

    smoke_latency_ms: float = 2000.0  # SMOKE_LATENCY_MS: p95 of a short completion must stay below
    smoke_latency_samples: int = 5  # SMOKE_LATENCY_SAMPLES: requests measured for the latency check
    concurrency: int = 8  # INTEGRATION_CONCURRENCY: simultaneous requests in the concurrency test
    memory_requests: int = 24  # MEMORY_REQUESTS: requests sent between the two memory samples
    memory_growth_mb: float = 64.0  # MEMORY_GROWTH_MB: allowed RSS growth over those requests
    request_timeout_s: float = 60.0  # REQUEST_TIMEOUT_S: per HTTP request

    @classmethod
    def from_env(cls) -> Thresholds:
        def num(name: str, default: float, parse: Any, **bounds: Any) -> Any:
            return parse(name, _env(name, str(default)), **bounds)

        return cls(
            smoke_latency_ms=num("SMOKE_LATENCY_MS", cls.smoke_latency_ms, parse_float, minimum=1),
            smoke_latency_samples=num(
                "SMOKE_LATENCY_SAMPLES",
                cls.smoke_latency_samples,
                parse_int,
                minimum=1,
                maximum=1000,
            ),
            concurrency=num("INTEGRATION_CONCURRENCY", cls.concurrency, parse_int, minimum=2, maximum=256),
            memory_requests=num("MEMORY_REQUESTS", cls.memory_requests, parse_int, minimum=1, maximum=10000),
            memory_growth_mb=num("MEMORY_GROWTH_MB", cls.memory_growth_mb, parse_float),
            request_timeout_s=num("REQUEST_TIMEOUT_S", cls.request_timeout_s, parse_float, minimum=0.1),
        )


# --- the target: given, or an embedded stack for the run ----------------------------------------


@contextlib.contextmanager
def target_session(
    target: Target | None, *, log: Callable[[str], None] = _log, **stack_overrides: Any
) -> Iterator[tuple[Target, EmbeddedStack | None]]:
    """Yield (target, stack). With no target, start an embedded stack on a free port in its own
    temporary run directory (dies with this process) and stop it afterwards. The embedded stack
    honours API_KEY / MODEL / STACK_* like `invoke stack.up` does."""
    if target is not None:
        yield target, None
        return
    with tempfile.TemporaryDirectory(prefix="llmpyramid-stack-") as run_dir:
        settings = StackSettings.from_env(port=0, run_dir=Path(run_dir), **stack_overrides)
        stack = EmbeddedStack(settings)
        state = stack.up(owner_pid=os.getpid(), notify=log)
        try:
            yield state.target(), stack
        finally:
            stack.down()


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    suite: str
    target: Target | None  # None: the suite starts the embedded stack
    duration: float | None = None  # --duration (load)
    cloud: str | None = None  # --cloud (cloud)
    log: Callable[[str], None] = _log
    pytest_args: tuple[str, ...] = ()  # extra pytest arguments (e.g. -k), pytest suites only


@dataclass
class SuiteRun:
    document: dict[str, Any]  # a results document (llmpyramid.results)
    exit_code: ExitCode


SuiteFn = Callable[[RunRequest], SuiteRun]


@dataclass(frozen=True)
class Suite:
    name: str
    help: str
    run: SuiteFn
    pytest_selection: tuple[str, ...] = ()  # set for pytest suites (lets `all` run them in one session)
    in_all: bool = False  # part of `--suite all` (the free, local pyramid)
    copy_results_to: tuple[str, ...] = ()  # extra places the document is written (cloud: the seed's /tmp file)
    uses: tuple[str, ...] = field(default=("base_url",))  # flags the suite reads: base_url, duration, cloud


def pytest_suite(name: str, help: str, *selection: str, in_all: bool = True, stack: bool = False) -> Suite:
    """`stack=True`: the suite talks to an inference target (the embedded stack when none is given)."""
    return Suite(
        name,
        help,
        run=lambda req: run_pytest(req, selection, fetch_model=stack),
        pytest_selection=selection,
        in_all=in_all,
    )


def not_implemented(name: str, help: str, owner: str, **kwargs: Any) -> Suite:
    """A placeholder that says so (exit 3), never a fake pass. Replace the entry when it lands."""

    def run(_req: RunRequest) -> SuiteRun:
        raise ConfigError(f"suite {name!r} is not implemented yet ({owner}); available: {', '.join(implemented())}")

    return Suite(name, help + " [not implemented yet]", run=run, **kwargs)


SUITES: dict[str, Suite] = {
    "smoke": pytest_suite(
        "smoke", "health, completions, chat, models, latency", "tests/test_smoke.py", "-m", "smoke", stack=True
    ),
    "integration": pytest_suite(
        "integration",
        "concurrency, streaming, invalid input, max_tokens/stop, API key, memory",
        "tests/test_integration.py",
        "-m",
        "integration",
        stack=True,
    ),
    "contract": pytest_suite(
        "contract",
        "OpenAI schemas, headers, official client",
        "tests/test_contract.py",
        "-m",
        "contract",
        stack=True,
    ),
    "load": Suite(
        "load",
        "LLM load test (locust): throughput, latency, TTFT/ITL percentiles, SLO gates",
        run=lambda req: __import__("llmpyramid.load.suite", fromlist=["run_suite"]).run_suite(req),
        uses=("base_url", "duration"),
    ),
    "cloud": not_implemented(
        "cloud",
        "spot instance smoke via SkyPilot (costs money)",
        "cloud smoke issue",
        uses=("cloud", "duration"),
        copy_results_to=("/tmp/cloud_smoke_results.json",),
    ),
    "iac": pytest_suite(
        "iac", "terraform fmt/test, checkov, Rego policies, broken-fixture proofs", "tests/iac", in_all=False
    ),
    "localstack": pytest_suite(
        "localstack", "emulated AWS/GCS: terraform apply/destroy, model storage", "tests/integration", in_all=False
    ),
}


def implemented() -> list[str]:
    return [n for n, s in SUITES.items() if "[not implemented yet]" not in s.help] + ["all"]


def suite_names() -> list[str]:
    return [*SUITES, "all"]


def get_suite(name: str) -> Suite:
    if name == "all":
        return Suite(
            "all",
            "every implemented suite that needs no cloud account",
            run=run_all,
            uses=("base_url",),
        )
    try:
        return SUITES[name]
    except KeyError:
        raise ConfigError(f"unknown suite {name!r}; choose one of: {', '.join(suite_names())}") from None


# --- running ----------------------------------------------------------------------------------


def _worst(codes: list[ExitCode]) -> ExitCode:
    order = [ExitCode.OK, ExitCode.FAILURES, ExitCode.CONFIGURATION, ExitCode.INFRASTRUCTURE]
    return max(codes, key=order.index, default=ExitCode.OK)


def run_all(req: RunRequest) -> SuiteRun:
    members = [s for s in SUITES.values() if s.in_all]
    selection = tuple(arg for s in members if s.pytest_selection for arg in s.pytest_selection if arg != "-m")
    markers = " or ".join(s.name for s in members if s.pytest_selection)
    paths = tuple(a for a in selection if a.startswith("tests/"))
    runs = [run_pytest(req, (*paths, "-m", markers), fetch_model=True)] if paths else []
    for s in members:
        if not s.pytest_selection:
            runs.append(s.run(req))
    skipped = [n for n, s in SUITES.items() if not s.in_all]
    docs = [r.document for r in runs]
    tests = [t for d in docs for t in d["tests"]]
    duration = sum(d["summary"]["duration_seconds"] for d in docs)
    code = _worst([r.exit_code for r in runs])
    errors = [d["error"] for d in docs if d.get("error")]
    load = next((d["load_test"] for d in docs if "load_test" in d), None)
    doc = results.build_document(
        tests,
        duration,
        suite="all",
        target=req.target.base_url if req.target else None,
        exit_code=code,
        error="; ".join(errors) or None,
        load_test=load,
        notes=[f"not part of --suite all: {', '.join(skipped)} (run them with --suite NAME)"],
    )
    return SuiteRun(doc, code)


def run_pytest(req: RunRequest, selection: tuple[str, ...], *, fetch_model: bool = False) -> SuiteRun:
    """Run a pytest selection in a child process with pytest-json-report.

    The child's output goes to our stderr, so stdout stays free for the document. With
    `fetch_model` and no target, the model is found or fetched here first, so the user sees its
    source, size and checksum and no test's duration includes a download."""
    target_url = req.target.base_url if req.target else None
    if fetch_model and req.target is None:
        ensure_model(notify=req.log)
    with tempfile.TemporaryDirectory(prefix="llmpyramid-run-") as tmp:
        report_file = Path(tmp) / "report.json"
        abort_file = Path(tmp) / "abort.json"
        cmd = [
            sys.executable, "-m", "pytest", *selection, *req.pytest_args,
            "-p", "no:cacheprovider", "-q", "-rfEX",
            "--json-report", f"--json-report-file={report_file}",
            "--json-report-omit", "keywords", "streams", "log", "collectors_passed",
        ]  # fmt: skip
        if req.target:
            cmd += ["--base-url", req.target.base_url]
        env = {**os.environ, ABORT_FILE_ENV: str(abort_file)}
        req.log(f"running {req.suite}: pytest {' '.join(selection)}" + (f" against {target_url}" if target_url else ""))
        started = time.monotonic()
        rc = _run_child(cmd, env)
        elapsed = time.monotonic() - started
        abort = _read_json(abort_file)
        report = _read_json(report_file)

    if abort:
        code = ExitCode(int(abort.get("exit_code", ExitCode.INFRASTRUCTURE)))
        message = str(abort.get("message") or "the suite aborted")
        doc = (
            results.from_pytest_report(report, suite=req.suite, target=target_url)
            if report
            else results.build_document([], elapsed, suite=req.suite, target=target_url)
        )
        doc.update(exit_code=int(code), error=results.one_line(message))
        return SuiteRun(doc, code)
    if report is None:
        message = f"pytest exited with code {rc} without writing a report (see the log above)"
        doc = results.build_document(
            [],
            elapsed,
            suite=req.suite,
            target=target_url,
            exit_code=ExitCode.FAILURES,
            error=message,
        )
        return SuiteRun(doc, ExitCode.FAILURES)
    doc = results.from_pytest_report(report, suite=req.suite, target=target_url)
    code = results.exit_code_for(rc, doc)
    doc["exit_code"] = int(code)
    if rc == results.PYTEST_NO_TESTS:
        doc["error"] = f"suite {req.suite!r} selected no tests: {' '.join((*selection, *req.pytest_args))}"
    elif rc not in (results.PYTEST_OK, results.PYTEST_FAILED) and not doc.get("error"):
        doc["error"] = f"pytest exited with code {rc} (collection error or interrupted; see the log above)"
    return SuiteRun(doc, code)


def _run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Run pytest; on Ctrl-C/SIGTERM interrupt it (fixtures tear down, the stack stops)."""
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=sys.stderr, stdin=subprocess.DEVNULL)
    try:
        return proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def write_abort(exc: PyramidError) -> None:
    """Called by tests/conftest.py when the suite cannot run: tell the runner why (exit 2 or 3)."""
    path = os.environ.get(ABORT_FILE_ENV)
    if path:
        with contextlib.suppress(OSError):
            Path(path).write_text(json.dumps({"exit_code": int(exc.exit_code), "message": str(exc)}))


__all__ = [
    "SUITES", "InfrastructureError", "RunRequest", "Suite", "SuiteRun", "Thresholds", "get_suite",
    "not_implemented", "pytest_suite", "run_pytest", "target_session", "write_abort",
]  # fmt: skip
