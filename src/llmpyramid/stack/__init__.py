"""Local inference stack lifecycle: embedded process (default), docker compose, or an external URL."""

from llmpyramid.stack.embedded import EmbeddedStack, StackState
from llmpyramid.stack.target import Target, check_reachable, normalize_base_url, target_from_env

__all__ = ["EmbeddedStack", "StackState", "Target", "check_reachable", "normalize_base_url", "target_from_env"]
