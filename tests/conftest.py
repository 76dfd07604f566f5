"""Fixtures for the pyramid's suites: where the server is, a client for it, and metrics reporting.

Target selection follows THE target rule (llmpyramid.target): `--base-url` / `BASE_URL`
(+ `API_KEY`, `MODEL`) name an OpenAI-compatible server (embedded, Docker or remote; a front door
such as run_tests.py hands its already-probed target down this way); with neither, the embedded
llama.cpp stack is started once per session on a free port and stopped at the end. Suites never
say where the server is. Thresholds come from the environment (see llmpyramid.config.Thresholds).
Markers are registered from the table of layers (llmpyramid.layers).

An unreachable target or a bad setting aborts the session with the seed's exit code (2 or 3)
and one line, never a traceback; the executor (llmpyramid.suites) reads the reason from the abort file.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from llmpyramid import layers
from llmpyramid.checks import CheckFailed
from llmpyramid.cli import INTERRUPTED_EXIT, interrupt_once, interrupted
from llmpyramid.client import Client
from llmpyramid.config import Thresholds
from llmpyramid.errors import PyramidError
from llmpyramid.procs import die_with_parent
from llmpyramid.results import one_line
from llmpyramid.runs import claim_abort_file, write_abort
from llmpyramid.stack.embedded import EmbeddedStack, fresh_stack, target_session
from llmpyramid.target import Target

pytest_plugins = ("llmpyramid.cloud.pytest_plugin",)  # --cloud, --skip-teardown (imports no SkyPilot)

SUITE_MARKERS = tuple(layer.marker for layer in layers.LAYERS if layer.target and layer.marker)
DEFAULT_TEST_TIMEOUT_S = 300


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmpyramid")
    group.addoption(
        "--base-url",
        default=None,
        help="OpenAI-compatible server to test (else BASE_URL; else the embedded stack is started)",
    )


def pytest_configure(config: pytest.Config) -> None:
    claim_abort_file()
    for marker, description in layers.markers().items():
        config.addinivalue_line("markers", f"{marker}: {description}")
    # SIGTERM unwinds like Ctrl-C, so fixture teardowns stop every service the session started, and a
    # second signal does not cut those teardowns short; when whatever started pytest (nox, uv, a runner)
    # dies, pytest is told the same way. (Installing the handler also covers a run started as a background
    # job, which inherits an *ignored* SIGINT: Ctrl-C is taken as a terminal gives it.) An xdist worker runs
    # inside execnet's string code all its life and its exit code is nobody's: its interrupt does not wait
    # for string code (cli), else each one would wait a full second while the worker went on with its tests.
    worker = hasattr(config, "workerinput")
    interrupt_once(wait_for_string_code=not worker)
    die_with_parent(signal.SIGTERM)
    if config.getoption("dist", "no") != "no" and not worker:
        config.pluginmanager.register(InterruptWorkersAtOnce(), "llmpyramid-interrupt-workers")


class InterruptWorkersAtOnce:
    """An interrupted xdist controller interrupts its workers at once, as a terminal's Ctrl-C does. Left
    alone, each worker keeps running tests until execnet's shutdown signals it after 5 s (8-17 s to exit,
    measured). The controller runs no tests, so its children are its workers."""

    def pytest_keyboard_interrupt(self) -> None:
        for worker in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                worker.send_signal(signal.SIGTERM)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    """Once interrupted, no further test starts: a test that expects a KeyboardInterrupt of its own (an
    interrupt test) may have caught ours, and the run would go on."""
    if interrupted():
        raise KeyboardInterrupt("interrupted")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """An interrupted run (Ctrl-C or SIGTERM) exits 130, as every front door does."""
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        session.exitstatus = INTERRUPTED_EXIT


def _abort(exc: PyramidError) -> None:
    write_abort(exc)
    pytest.exit(f"error: {exc}", returncode=int(exc.exit_code))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A hung server must not hang the suite: every suite test gets a timeout unless it sets one."""
    for item in items:
        if any(item.get_closest_marker(m) for m in SUITE_MARKERS) and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT_S))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Attach a failed check's one-line verdict and its measured metrics to the test's report."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or (report.when == "teardown" and report.passed):
        return
    exc = call.excinfo.value
    if isinstance(exc, CheckFailed):
        item.user_properties.append(("error", f"AssertionError: {exc}"))
        if exc.metrics:
            item.user_properties.append(("metrics", exc.metrics))
    elif not isinstance(exc, pytest.skip.Exception | pytest.xfail.Exception) and report.failed:
        item.user_properties.append(("error", one_line(f"{type(exc).__name__}: {exc}")))


# --- target ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def thresholds() -> Thresholds:
    try:
        return Thresholds.from_env()
    except PyramidError as exc:
        _abort(exc)
        raise


@pytest.fixture(scope="session")
def pyramid_stack(request: pytest.FixtureRequest) -> Iterator[tuple[Target, EmbeddedStack | None]]:
    """(target, embedded stack or None). Started once per session when no target is given."""
    try:
        with target_session(request.config.getoption("--base-url")) as pair:
            yield pair
    except PyramidError as exc:
        _abort(exc)


@pytest.fixture(scope="session")
def target(pyramid_stack: tuple[Target, EmbeddedStack | None]) -> Target:
    """Where the suites send requests: base URL, API key, model name."""
    return pyramid_stack[0]


@pytest.fixture(scope="session")
def embedded_stack(pyramid_stack: tuple[Target, EmbeddedStack | None]) -> EmbeddedStack | None:
    """The embedded stack the session started (for RSS), or None for an external target."""
    return pyramid_stack[1]


@pytest.fixture(scope="session")
def served_model(target: Target, embedded_stack: EmbeddedStack | None) -> str | None:
    """The model name the server must list: MODEL, the embedded alias, or None (any)."""
    if target.model:
        return target.model
    if embedded_stack is not None:
        return embedded_stack.settings.model_alias
    return None


@pytest.fixture(scope="session")
def client(target: Target, thresholds: Thresholds) -> Iterator[Client]:
    with Client(target, timeout=thresholds.request_timeout_s) as c:
        yield c


@pytest.fixture
def metrics(record_property: Any) -> Iterator[dict[str, Any]]:
    """A dict the test fills with measurements; they land in the results document's `metrics`."""
    measured: dict[str, Any] = {}
    yield measured
    if measured:
        record_property("metrics", measured)


@pytest.fixture
def keyed_target(target: Target, embedded_stack: EmbeddedStack | None) -> Iterator[tuple[Target, str]]:
    """A target that requires an API key, and the key.

    Embedded: a second short-lived stack started with a key. External: the given target when
    API_KEY is set (otherwise there is nothing to enforce; the test skips and says so).
    """
    if embedded_stack is None:
        if not target.api_key:
            pytest.skip("external target without API_KEY: API key enforcement cannot be tested")
        yield target, target.api_key
        return
    key = "sk-test-" + os.urandom(8).hex()
    try:
        with fresh_stack(api_key=key, parallel=1, ctx_size=512) as (keyed, _stack):
            yield keyed, key
    except PyramidError as exc:
        pytest.fail(f"could not start a keyed embedded stack: {exc}", pytrace=False)
