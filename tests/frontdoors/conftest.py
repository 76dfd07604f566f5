"""Fixtures of the bad-input sweep; the harness lives in frontdoor_harness.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.frontdoor_harness import Sandbox, make_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    yield from make_sandbox(tmp_path)
