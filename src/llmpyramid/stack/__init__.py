"""Local inference stack: the embedded server as a managed service, docker compose, and the one target rule."""

from llmpyramid.stack.embedded import EmbeddedStack, StackState
from llmpyramid.stack.target import (
    Target,
    check_reachable,
    handoff_env,
    normalize_base_url,
    target_from_env,
    target_session,
)

__all__ = [
    "EmbeddedStack",
    "StackState",
    "Target",
    "check_reachable",
    "handoff_env",
    "normalize_base_url",
    "target_from_env",
    "target_session",
]
