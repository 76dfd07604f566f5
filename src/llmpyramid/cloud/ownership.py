"""Who owns a smoke cluster and until when: the labels every instance carries, and what a sweep may remove.

    own = Ownership.for_run(run_id(), owner(), ttl_seconds=settings.worst_case_seconds)
    sky.Resources(..., labels=own.labels())        # AWS tags, GCP labels, Azure tags: the same four keys
    may_remove(found, this_run="1234-1", now=now)   # -> (True, "this run's") | (False, "another live run's ...")

The rule, one place: a resource marked `llmpyramid-keep=true` is never removed; one of this run (by run
id) is removed at any age; any other is removed only once past its time to live (`llmpyramid-expires-at`,
epoch seconds, set at launch from the run's own worst case). A resource without our labels (made before
they existed) expires DEFAULT_TTL_S after its creation. So one person's sweep never touches another's
live launch, and a runner killed by SIGKILL leaves an instance that the next sweep removes once expired.
Label keys and values use the characters all three clouds accept (GCP's are the narrowest: lowercase
letters, digits, `-` and `_`, at most 63).
"""

from __future__ import annotations

import getpass
import math
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from llmpyramid.errors import ConfigError

RUN_ID_LABEL = "llmpyramid-run-id"
OWNER_LABEL = "llmpyramid-owner"
EXPIRES_LABEL = "llmpyramid-expires-at"
KEEP_LABEL = "llmpyramid-keep"
RUN_ID_ENV = "LLMPYRAMID_RUN_ID"  # CI sets it (workflow run id + attempt); else each run draws one
DEFAULT_TTL_S = 2 * 3600.0  # resources launched before the labels existed: the default worst case is 44 min
_LABEL_VALUE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def label_value(text: str) -> str:
    """`text` as a value every cloud accepts: lowercase, other characters to `-`, at most 63."""
    value = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:63]
    return value or "unknown"


def run_id(explicit: str | None = None) -> str:
    """This run's id: the one given (`--run-id`, LLMPYRAMID_RUN_ID), else a fresh random one."""
    given = explicit if explicit is not None else os.environ.get(RUN_ID_ENV, "")
    if not given:
        return secrets.token_hex(6)
    if not _LABEL_VALUE.match(given):
        raise ConfigError(
            f"run id {given!r} is not a valid label value (lowercase letters, digits, '-', '_'; at most 63)"
        )
    return given


def owner() -> str:
    """Who launched it: the CI actor, else the local user."""
    who = os.environ.get("GITHUB_ACTOR") or _user()
    return label_value(who)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


@dataclass(frozen=True)
class Ownership:
    run_id: str
    owner: str
    expires_at: int  # epoch seconds

    @classmethod
    def for_run(cls, run: str, who: str, ttl_seconds: float, now: float | None = None) -> Ownership:
        return cls(run, who, math.ceil((now if now is not None else time.time()) + ttl_seconds))

    def labels(self) -> dict[str, str]:
        return {RUN_ID_LABEL: self.run_id, OWNER_LABEL: self.owner, EXPIRES_LABEL: str(self.expires_at)}

    def ttl_minutes(self, now: float | None = None) -> int:
        """Minutes left until the end (the node's own autodown timer), at least one."""
        return max(1, math.ceil((self.expires_at - (now if now is not None else time.time())) / 60))


@dataclass(frozen=True)
class Found:
    """A smoke cluster or cloud resource seen by a sweep."""

    cluster: str  # SkyPilot's cluster name, or the name on the cloud
    source: str  # "skypilot" | "ec2" | "gce" | "azure"
    created: datetime
    labels: dict[str, str] = field(default_factory=dict)
    detail: str = ""  # where it is (region/instance id, zone/name, resource id) or SkyPilot's status

    def expires(self) -> datetime:
        stamp = self.labels.get(EXPIRES_LABEL, "")
        if stamp.isdigit():
            return datetime.fromtimestamp(int(stamp), UTC)
        return datetime.fromtimestamp(self.created.timestamp() + DEFAULT_TTL_S, UTC)


def may_remove(found: Found, this_run: str | None, now: datetime) -> tuple[bool, str]:
    """Whether a sweep of `this_run` may remove `found`, and why (said in the sweep's report)."""
    if found.labels.get(KEEP_LABEL, "").lower() == "true":
        return False, f"marked {KEEP_LABEL}=true"
    run = found.labels.get(RUN_ID_LABEL)
    if this_run and run == this_run:
        return True, "this run's"
    expires = found.expires()
    if now >= expires:
        return True, f"past its time to live ({expires:%Y-%m-%d %H:%M:%S} UTC)"
    whose = f"run {run}" if run else "an unlabelled run"
    return False, f"{whose}'s, live until {expires:%Y-%m-%d %H:%M:%S} UTC"
