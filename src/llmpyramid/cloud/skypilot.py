"""The few SkyPilot SDK calls the cloud smoke makes, with SkyPilot's errors mapped to exit codes.

SkyPilot 0.14's SDK talks to an API server (llmpyramid.cloud.api_server starts and stops it) and
returns request ids; `wait` polls a request with a deadline so no call can hang a run. Errors:
credentials -> ConfigError (3); API server unreachable, no capacity, provisioning failures, timeouts
-> InfrastructureError (2); a cancelled request -> Cancelled.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from llmpyramid.cloud.settings import CREDENTIALS_FIX
from llmpyramid.errors import ConfigError, InfrastructureError, PyramidError
from llmpyramid.results import one_line

DONE = ("SUCCEEDED", "FAILED", "CANCELLED")


class Cancelled(PyramidError):
    """A request this run cancelled (teardown of an interrupted launch)."""


def _sdk() -> Any:
    from sky.client import sdk

    return sdk


def _sky() -> Any:
    import sky

    return sky


def _status_name(payload: Any) -> str:
    status = payload.status
    return str(getattr(status, "value", status)).upper()


def _translate(exc: BaseException, what: str) -> PyramidError:
    from sky import exceptions

    reason = one_line(f"{type(exc).__name__}: {exc}", 400)
    if isinstance(exc, exceptions.RequestCancelled):
        return Cancelled(f"{what} was cancelled")
    if isinstance(exc, exceptions.ResourcesUnavailableError):
        return InfrastructureError(f"{what}: no capacity in any zone (SkyPilot: {reason})")
    if isinstance(exc, exceptions.CloudUserIdentityError):
        return ConfigError(f"{what}: cloud credentials rejected (SkyPilot: {reason})")
    return InfrastructureError(f"{what} failed (SkyPilot: {reason})")


def wait(request_id: Any, timeout: float, what: str, *, poll: float = 1.0) -> Any:
    """The request's result, or InfrastructureError when it is not done within `timeout` seconds."""
    sdk, sky = _sdk(), _sky()
    deadline = time.monotonic() + timeout
    try:
        while True:
            payloads = sdk.api_status([request_id])
            if payloads and _status_name(payloads[0]) in DONE:
                return sky.get(request_id)
            if time.monotonic() > deadline:
                raise InfrastructureError(f"{what} did not finish within {timeout:.0f}s")
            time.sleep(poll)
    except PyramidError:
        raise
    except Exception as exc:
        raise _translate(exc, what) from None


def call(start: Callable[[], Any], timeout: float, what: str) -> Any:
    """Submit a request and wait for it; a failure to submit (API server down) is exit 2 too."""
    try:
        request_id = start()
    except PyramidError:
        raise
    except Exception as exc:
        raise _translate(exc, what) from None
    return wait(request_id, timeout, what)


# --- credentials ----------------------------------------------------------------------------------


def _reason(cloud: str) -> str:
    """The cloud's own explanation (what `sky check` prints), asked of SkyPilot's cloud class."""
    try:
        from sky import clouds

        cls = {"aws": clouds.AWS, "gcp": clouds.GCP, "azure": clouds.Azure}[cloud]
        ok, reason = cls.check_credentials(clouds.CloudCapability.COMPUTE)
    except Exception as exc:  # a missing extra raises ImportError: that is the reason
        return one_line(f"{type(exc).__name__}: {exc}", 400)
    return one_line(reason or ("enabled" if ok else "no reason given"), 400)


def check_credentials(cloud: str, timeout: float) -> list[str]:
    """SkyPilot's check for this cloud; not enabled for compute -> ConfigError with its reason and the fix."""
    enabled = call(lambda: _sdk().check((cloud,), verbose=False), timeout, f"sky check {cloud}")
    capabilities = {
        name.lower(): list(caps) for workspace in (enabled or {}).values() for name, caps in workspace.items()
    }
    caps = capabilities.get(cloud, [])
    if "compute" not in caps:
        raise ConfigError(f"{cloud} is not enabled in SkyPilot: {_reason(cloud)} — fix: {CREDENTIALS_FIX[cloud]}")
    return caps


# --- clusters -------------------------------------------------------------------------------------


def start_launch(task: Any, cluster: str, ttl_minutes: int) -> Any:
    """Submit the launch with the node's own end: autodown after `ttl_minutes` that waits for nothing (not
    for jobs: the serve job never finishes), so a lost runner cannot leave it up once SkyPilot's agent runs."""
    from sky.skylet.autostop_lib import AutostopWaitFor

    try:
        return _sdk().launch(task, cluster_name=cluster, down=True, idle_minutes_to_autostop=ttl_minutes,
                             wait_for=AutostopWaitFor.NONE)  # fmt: skip
    except Exception as exc:
        raise _translate(exc, f"launch of {cluster}") from None


def cancel(request_id: Any) -> None:
    with contextlib.suppress(Exception):  # already finished or gone: nothing to cancel
        _sky().get(_sdk().api_cancel(request_id, silent=True))


def active_requests(cluster: str) -> list[Any]:
    """In-flight requests on this cluster (a launch still waiting for SSH holds the cluster)."""
    try:
        payloads = _sdk().api_status(cluster_name=cluster)
    except Exception as exc:
        raise _translate(exc, f"listing requests of {cluster}") from None
    return [p for p in payloads if _status_name(p) not in DONE and p.cluster_name == cluster]


def down(cluster: str, timeout: float) -> bool:
    """Tear the cluster down (cancelling what still holds it); False when SkyPilot does not know it."""
    from sky import exceptions

    for payload in active_requests(cluster):
        cancel(payload.request_id)
    try:
        call(lambda: _sdk().down(cluster), timeout, f"sky down {cluster}")
    except InfrastructureError as exc:
        if "ClusterDoesNotExist" in str(exc) or "does not exist" in str(exc):
            return False
        raise
    except exceptions.ClusterDoesNotExist:
        return False
    return True


def status(clusters: list[str] | None, timeout: float, *, refresh: bool = False) -> list[Any]:
    """Cluster records (all users); `refresh` asks the cloud, which is how a preemption shows up."""
    mode = _sky().StatusRefreshMode.FORCE if refresh else _sky().StatusRefreshMode.NONE
    records = call(lambda: _sdk().status(clusters, refresh=mode, all_users=True), timeout, "sky status")
    return list(records or [])


def record_status(record: Any) -> str:
    return _status_name(record)


def with_credentials(cluster: str, timeout: float) -> Any:
    """The cluster's status record with its SSH credentials (what SkyPilot's own `ssh <cluster>` uses)."""
    what = f"sky status {cluster}"
    records = call(lambda: _sdk().status([cluster], all_users=True, _include_credentials=True), timeout, what)
    if not records:
        raise InfrastructureError(f"SkyPilot does not know {cluster}")
    return records[0]
