"""Where the suites send requests: the embedded stack, a Docker stack, or any OpenAI-compatible URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from llmpyramid.errors import ConfigError, InfrastructureError


@dataclass(frozen=True)
class Target:
    base_url: str  # e.g. http://127.0.0.1:8080 (no trailing slash, no /v1)
    api_key: str | None = None
    model: str | None = None  # None: use whatever the server serves

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"


def normalize_base_url(raw: str) -> str:
    """Validate a user-given base URL; a bad one is a configuration error (exit 3)."""
    url = raw.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"invalid base URL {raw!r}: expected http(s)://host[:port]")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigError(f"invalid base URL {raw!r}: bad port") from None
    return url


def target_from_env(base_url: str | None = None) -> Target | None:
    """The target named by --base-url / BASE_URL (+ API_KEY, MODEL), or None to use the embedded stack."""
    raw = base_url or os.environ.get("BASE_URL")
    if not raw:
        return None
    return Target(normalize_base_url(raw), os.environ.get("API_KEY") or None, os.environ.get("MODEL") or None)


def check_reachable(target: Target, timeout: float = 5.0) -> None:
    """Fail fast with exit 2 when nothing answers at the target (DNS, refused, timeout)."""
    try:
        httpx.get(target.url("/health"), timeout=timeout)
    except httpx.HTTPError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InfrastructureError(f"target {target.base_url} is not reachable: {reason}") from None
