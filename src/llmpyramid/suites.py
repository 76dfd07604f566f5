"""THE executor: `run_layer(name, request)` runs one layer of the table (llmpyramid.layers) and
returns its results document and the seed's exit code. Every front door calls it: a nox session
(after installing the layer's groups), `scripts/run_tests.py --suite NAME`, a pipeline step (which
runs the nox session and reads the document it wrote) and the CI matrix (nox sessions).

A pytest layer runs its selection in a child pytest (inside the layer's `wrap`, e.g. a loopback-only
network namespace) and its JSON report becomes the document, skips included; a layer with `run =
"module:function"` is handed a RunRequest and returns a SuiteRun; a command layer (lint, benchmarks)
runs its command. Which server is tested is decided once by the front door (llmpyramid.target,
THE target rule) and handed down.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmpyramid import layers, results
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.errors import ConfigError, ExitCode, worst
from llmpyramid.layers import Layer
from llmpyramid.model import ensure_model
from llmpyramid.procs import die_with_parent
from llmpyramid.runs import ABORT_FILE_ENV, RunRequest, SuiteFn, SuiteRun
from llmpyramid.stack.embedded import EmbeddedStack, fresh_stack, handoff_stack_env
from llmpyramid.target import Target


def suite_names() -> list[str]:
    return [*layers.names(), layers.ALL]


def runner_for(layer: Layer) -> SuiteFn:
    """The function behind `--suite NAME`."""
    if layer.run:
        module, _, func = layer.run.partition(":")
        try:
            fn: SuiteFn = getattr(importlib.import_module(module), func)
        except ImportError as exc:
            extra = " ".join(f"--group {g}" for g in layer.groups if g not in ("test", "load", "iac", "emulators"))
            raise ConfigError(
                f"suite {layer.name!r} needs its dependency group ({exc}): "
                f"uv run {extra} python scripts/run_tests.py --suite {layer.name} ..."
            ) from None
        return fn
    if layer.is_pytest:
        return lambda req: run_pytest(req, layer.pytest_args, fetch_model=layer.target, wrap=layer.wrap)
    return lambda req: run_command(req, layer)


# --- running ----------------------------------------------------------------------------------


def run_layer(name: str, req: RunRequest) -> SuiteRun:
    if name == layers.ALL:
        return run_all(req)
    layer = layers.get(name)
    ensure_groups(layer)
    return runner_for(layer)(req)


# Dependency groups beyond plain `uv run`'s defaults, each with a module that shows it is installed.
OPTIONAL_GROUPS = {"cloud": "sky", "hybrid": "litellm"}
GROUPS_ADDED_ENV = "LLMPYRAMID_GROUPS_ADDED"  # set on the re-run, so it never loops


def ensure_groups(layer: Layer) -> None:
    """A layer whose optional dependency group is missing: under `uv run`, run this same command again
    with the group added (`uv run --group G`); elsewhere, one line naming that command (exit 3)."""
    missing = [g for g in layer.groups if g in OPTIONAL_GROUPS and importlib.util.find_spec(OPTIONAL_GROUPS[g]) is None]
    if not missing:
        return
    flags = [arg for group in missing for arg in ("--group", group)]
    uv = os.environ.get("UV")  # uv run tells its child where uv is
    if uv and not os.environ.get(GROUPS_ADDED_ENV):
        print(f"{layer.name}: running again with the {', '.join(missing)} dependency group: "
              f"uv run {' '.join(flags)} ...", file=sys.stderr, flush=True)  # fmt: skip
        again = [uv, "run", *flags, "python", "-m", "llmpyramid.run_tests", *sys.argv[1:]]  # both front doors' main
        os.execve(uv, again, {**os.environ, GROUPS_ADDED_ENV: "1"})
    raise ConfigError(
        f"suite {layer.name!r} needs the {', '.join(missing)} dependency group: "
        f"uv run {' '.join(flags)} python scripts/run_tests.py --suite {layer.name} ..."
    )


def run_all(req: RunRequest) -> SuiteRun:
    """Every `in_all` layer against one target: the pytest ones in one pytest session (one stack)."""
    members = [layer for layer in layers.LAYERS if layer.in_all]
    pytest_members = [layer for layer in members if layer.is_pytest]
    paths = tuple(p for layer in pytest_members for p in layer.paths)
    markers = " or ".join(layer.marker for layer in pytest_members if layer.marker)
    runs = [run_pytest(req, (*paths, "-m", markers), fetch_model=True)] if paths else []
    runs += [runner_for(layer)(req) for layer in members if not layer.is_pytest]
    skipped = [layer.name for layer in layers.LAYERS if not layer.in_all]
    docs = [r.document for r in runs]
    tests = [t for d in docs for t in d["tests"]]
    duration = sum(d["summary"]["duration_seconds"] for d in docs)
    code = worst(*(r.exit_code for r in runs))
    errors = [d["error"] for d in docs if d.get("error")]
    load = next((d["load_test"] for d in docs if "load_test" in d), None)
    doc = results.build_document(
        tests,
        duration,
        suite="all",
        target=req.target.display_url if req.target else None,
        exit_code=code,
        error="; ".join(errors) or None,
        load_test=load,
        notes=[f"not part of --suite all: {', '.join(skipped)} (run them with --suite NAME)"],
    )
    return SuiteRun(doc, code)


def run_pytest(
    req: RunRequest, selection: tuple[str, ...], *, fetch_model: bool = False, wrap: tuple[str, ...] = ()
) -> SuiteRun:
    """Run a pytest selection in a child process with pytest-json-report.

    The child's output goes to our stderr, so stdout stays free for the document. A layer that
    talks to a server (`fetch_model`) gets the target resolved here, once: the given one, or an
    embedded stack this run starts (the model found or fetched first, so the user sees its source
    and no test's duration includes a download) and stops. The child learns it from its environment."""
    start_stack = fetch_model and req.target is None
    if start_stack:
        ensure_model(notify=req.log)
    session = fresh_stack(notify=req.log) if start_stack else contextlib.nullcontext((req.target, None))
    with session as (target, stack):
        return _pytest_child(req, selection, target, stack, wrap)


def _pytest_child(
    req: RunRequest,
    selection: tuple[str, ...],
    target: Target | None,
    stack: EmbeddedStack | None,
    wrap: tuple[str, ...],
) -> SuiteRun:
    target_url = target.display_url if target else None
    with tempfile.TemporaryDirectory(prefix="llmpyramid-run-") as tmp:
        report_file = Path(tmp) / "report.json"
        abort_file = Path(tmp) / "abort.json"
        cmd = [
            *_argv(wrap), *_argv(("python", "-m", "pytest")), *selection, *req.layer_args,
            "-p", "no:cacheprovider", "-q", "-rfEX",
            "--json-report", f"--json-report-file={report_file}",
            "--json-report-omit", "keywords", "streams", "log", "collectors_passed",
        ]  # fmt: skip
        env = {**os.environ, ABORT_FILE_ENV: str(abort_file), **(handoff_stack_env(target, stack) if target else {})}
        req.log(f"running {req.suite}: pytest {' '.join(selection)}" + (f" against {target_url}" if target_url else ""))
        started = time.monotonic()
        rc = run_child(cmd, env, stdout=sys.stderr)
        elapsed = time.monotonic() - started
        abort = results.read_json(abort_file)
        report = results.read_json(report_file)

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
            [], elapsed, suite=req.suite, target=target_url, exit_code=ExitCode.FAILURES, error=message
        )
        return SuiteRun(doc, ExitCode.FAILURES)
    doc = results.from_pytest_report(report, suite=req.suite, target=target_url)
    code = results.exit_code_for(rc, doc)
    doc["exit_code"] = int(code)
    if rc == results.PYTEST_NO_TESTS:
        doc["error"] = f"suite {req.suite!r} selected no tests: {' '.join((*selection, *req.layer_args))}"
    elif rc not in (results.PYTEST_OK, results.PYTEST_FAILED) and not doc.get("error"):
        doc["error"] = f"pytest exited with code {rc} (collection error or interrupted; see the log above)"
    return SuiteRun(doc, code)


def run_command(req: RunRequest, layer: Layer) -> SuiteRun:
    """A command layer (lint, benchmarks): one test entry, passed when the command exits 0."""
    if req.layer_args and not layer.takes:
        raise ConfigError(f"--suite {layer.name} takes no arguments after --: {' '.join(req.layer_args)}")
    argv = [*_argv(layer.command), *req.layer_args]
    req.log(f"running {req.suite}: {' '.join(layer.command)}")
    started = time.monotonic()
    rc = run_child(argv, dict(os.environ), stdout=sys.stderr)
    elapsed = time.monotonic() - started
    status = "passed" if rc == 0 else "failed"
    error = None if rc == 0 else f"{' '.join(layer.command)} exited with code {rc} (see the log above)"
    test = results.test_entry(layer.name, status, elapsed, error=error)
    code = ExitCode.OK if rc == 0 else ExitCode.FAILURES
    doc = results.build_document([test], elapsed, suite=req.suite, target=None, exit_code=code, error=error)
    return SuiteRun(doc, code)


def _argv(command: tuple[str, ...]) -> list[str]:
    """A layer's command as argv: `python` is this interpreter (the session's venv)."""
    return [sys.executable if command[:1] == ("python",) else command[0], *command[1:]] if command else []


CHILD_STOP_GRACE_S = 300.0  # an interrupted child tears down (fixtures stop services; a cleanup destroy is bounded)


def run_child(
    cmd: list[str],
    env: dict[str, str],
    *,
    stdout: Any = None,
    stderr: Any = None,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> int:
    """Run a child that dies with us (parent-death signal); on Ctrl-C/SIGTERM, stop it and wait
    (bounded) so its own cleanup runs, then re-raise. Off the main thread no signal reaches the wait:
    `started` hands the child to whoever stops it then (stop_child)."""
    proc = subprocess.Popen(
        cmd, cwd=PROJECT_ROOT, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    if started is not None:
        started(proc)
    try:
        return proc.wait()
    except BaseException:
        stop_child(proc)
        raise


def stop_child(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM, not SIGINT: pytest (tests/conftest.py) and nox (noxfile.py) unwind on it like Ctrl-C, and a
    child still importing dies quietly instead of printing a KeyboardInterrupt traceback. All are told
    first, so their teardowns overlap; then each gets a bounded wait."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


__all__ = ["run_child", "run_layer", "run_pytest", "stop_child", "suite_names"]
