"""The hybrid layer's front door needs its router (LiteLLM, the `hybrid` dependency group): without it
every test here is skipped with the command that enables it, never reported passed."""

from __future__ import annotations

import importlib.util

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if importlib.util.find_spec("litellm") is not None:
        return
    skip = pytest.mark.skip(reason="LiteLLM is in the `hybrid` dependency group: nox -s hybrid_faults "
                            "(or uv run --group hybrid pytest tests/hybrid_faults)")  # fmt: skip
    for item in items:
        if item.path.is_relative_to(config.rootpath / "tests" / "hybrid_faults"):
            item.add_marker(skip)
