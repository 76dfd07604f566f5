"""Leftover check by inheritance, not by name: every process a front door starts inherits the run's
LLMPYRAMID_TEST_TAG; the leftovers are the tagged processes started after the test began (other runs
share this machine, so names prove nothing)."""

from __future__ import annotations

import psutil

TAG_ENV = "LLMPYRAMID_TEST_TAG"


def tagged(tag: str, since: float) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            ours = proc.info["create_time"] >= since - 1 and proc.environ().get(TAG_ENV) == tag
            if ours and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found
