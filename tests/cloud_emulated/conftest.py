"""Emulated cloud: the real SkyPilot SDK and API server against moto, in a loopback-only namespace.

Run with `python -m llmpyramid.cloud netns -- pytest tests/cloud_emulated` (the `cloud_emulated` nox session
does): the namespace has only loopback, so SkyPilot's probes of moto's fake public IPs fail at once
and no packet leaves the machine. Outside such a namespace (or without root) every test here is
skipped with the reason — never run against a real network, never reported passed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmpyramid.cloud.emulator import UNAVAILABLE_ENV, EmulatedAWS, loopback_only_reason
from tests.support.cloud_leftovers import assert_all_stopped

HOW = "run: python -m llmpyramid.cloud netns -- pytest tests/cloud_emulated (as root), or nox -s cloud_emulated"


@pytest.fixture(scope="session")
def emulated_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedAWS]:
    reason = os.environ.get(UNAVAILABLE_ENV) or loopback_only_reason()
    if reason:
        pytest.skip(f"no loopback-only network namespace ({reason}); {HOW}")
    if importlib.util.find_spec("sky") is None:  # not imported here: SkyPilot fixes paths from HOME on import
        pytest.skip("SkyPilot is in the `cloud` dependency group: uv sync --group cloud")
    if "sky" in sys.modules:  # it would talk to the default API server and fetch catalogs: say who is to blame
        pytest.fail("SkyPilot was imported before the emulator set its HOME (a test module importing it at "
                    "collection?): import it inside the test, or in a child process", pytrace=False)  # fmt: skip
    with EmulatedAWS(Path(tmp_path_factory.mktemp("emulated-aws"))) as aws:
        yield aws
        started = aws.processes()
    assert_all_stopped(aws, started)


@pytest.fixture
def settings(emulated_aws: EmulatedAWS):
    from llmpyramid.cloud.settings import CloudSettings

    # Short timeouts: a launch here never gets past SSH, so waiting SkyPilot's 600 s proves nothing.
    return CloudSettings.from_env(cloud="aws", launch_timeout=300, teardown_timeout=120, request_timeout=120)
