"""THE target rule: which server a run tests, resolved once by the front door and handed down.

    given URL (--base-url / BASE_URL)
    else, only where a command asks for it, the running `invoke stack.up` stack
    else a fresh embedded stack owned by the run (llmpyramid.stack.embedded.target_session)

The front door probes reachability once and passes the resolved target to child processes through
the environment (`handoff_env`): BASE_URL, API_KEY, MODEL and a marker that it was probed, so pytest,
locust and its workers neither probe again nor start a second stack. The API key travels only in the
environment, never on a command line; URLs are shown redacted (`user:password@` hidden).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llmpyramid.config import env_value, parse_url, redact_url
from llmpyramid.errors import InfrastructureError

PROBED_ENV = "LLMPYRAMID_TARGET_PROBED"  # = the base URL the front door already found reachable


@dataclass(frozen=True)
class Target:
    base_url: str  # e.g. http://127.0.0.1:8080 (no trailing slash, no /v1); may carry user:password@
    api_key: str | None = None
    model: str | None = None  # None: use whatever the server serves

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def display_url(self) -> str:
        """What is shown or written: the URL without its credentials."""
        return redact_url(self.base_url)


def normalize_base_url(raw: str, name: str = "base URL") -> str:
    """Validate a user-given base URL; a bad one is a configuration error (exit 3)."""
    return parse_url(name, raw)


def target_from_env(base_url: str | None = None, environ: Mapping[str, str] | None = None) -> Target | None:
    """The target named by --base-url / BASE_URL (+ API_KEY, MODEL), or None to use an embedded stack."""
    name = "--base-url" if base_url else "BASE_URL"
    raw = base_url or env_value("BASE_URL", environ=environ)
    if not raw:
        return None
    return Target(parse_url(name, raw), env_value("API_KEY", environ=environ), env_value("MODEL", environ=environ))


def check_reachable(target: Target, timeout: float = 5.0) -> None:
    """Fail fast with exit 2 when nothing answers at the target (DNS, refused, timeout)."""
    import httpx  # here, not at module level: every front door and locust's master import this module

    try:
        httpx.get(target.url("/health"), timeout=timeout)
    except httpx.HTTPError as exc:
        reason = redact_url(" ".join(str(exc).split()) or type(exc).__name__)
        raise InfrastructureError(f"target {target.display_url} is not reachable: {reason}") from None


def handoff_env(target: Target) -> dict[str, str]:
    """Environment for child processes: the resolved target, marked as already probed."""
    env = {"BASE_URL": target.base_url, PROBED_ENV: target.base_url}
    if target.api_key:
        env["API_KEY"] = target.api_key
    if target.model:
        env["MODEL"] = target.model
    return env
