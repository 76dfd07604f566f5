"""Local inference stack: the embedded server as a managed service, docker compose, and the one target rule.

Names are loaded on first use: locust's master and every front door import `llmpyramid.stack.target`,
and should not pay for the embedded stack's imports (httpx, tenacity, the model code) to do so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmpyramid.stack.embedded import EmbeddedStack, StackState
    from llmpyramid.stack.target import (
        Target,
        check_reachable,
        handoff_env,
        normalize_base_url,
        target_from_env,
        target_session,
    )

_HOMES = {
    "EmbeddedStack": "embedded", "StackState": "embedded", "Target": "target", "check_reachable": "target",
    "handoff_env": "target", "normalize_base_url": "target", "target_from_env": "target", "target_session": "target",
}  # fmt: skip

__all__ = [
    "EmbeddedStack", "StackState", "Target", "check_reachable", "handoff_env", "normalize_base_url",
    "target_from_env", "target_session",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"llmpyramid.stack.{_HOMES[name]}"), name)
