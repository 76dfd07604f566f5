"""Fixtures of the bad-input sweep; the harness (both modes, the guard) lives in frontdoor_harness.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.frontdoor_harness import SUBPROCESS_MARK, Sandbox, make_sandbox


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SUBPROCESS_MARK}: a front-door case of the subprocess sample: the real command line as a child in a "
        "loopback-only network namespace (unmarked cases call the front door in-process)",
    )


@pytest.fixture
def sandbox(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    yield from make_sandbox(tmp_path, in_process=request.node.get_closest_marker(SUBPROCESS_MARK) is None)
