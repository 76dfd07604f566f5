"""pytest front door of the cloud smoke (the seed's `pytest tests/test_cloud_smoke.py --cloud aws`).

Registered from tests/conftest.py (`pytest_plugins = ("llmpyramid.cloud.pytest_plugin",)`): adds
`--cloud aws|gcp|azure` and `--skip-teardown`, and the session fixture `cloud_smoke` whose finalizer
tears the cluster down (also on Ctrl-C/SIGTERM) unless --skip-teardown, which prints SkyPilot's
commands to inspect and remove it. Importing this module does not import SkyPilot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from llmpyramid.cloud import CLOUDS
from llmpyramid.errors import PyramidError


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmpyramid cloud")
    group.addoption("--cloud", choices=CLOUDS, default=None, help="run the cloud smoke on this cloud (costs money)")
    group.addoption(
        "--skip-teardown", action="store_true", default=False, help="keep the cluster for debugging; print how"
    )


def abort(exc: PyramidError) -> NoReturn:
    """Stop the session with the seed's exit code (3 credentials/config, 2 cloud unreachable)."""
    from llmpyramid.runs import write_abort

    write_abort(exc)
    pytest.exit(f"error: {exc}", returncode=int(exc.exit_code))


@pytest.fixture(scope="session")
def cloud_smoke(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One CloudSmoke per session: the cost guard first, teardown at the end."""
    cloud = request.config.getoption("--cloud")
    if not cloud:
        pytest.skip("the cloud smoke needs --cloud aws|gcp|azure (it launches a real spot instance)")
    from llmpyramid.cloud import api_server
    from llmpyramid.cloud.settings import CloudSettings
    from llmpyramid.cloud.smoke import CloudSmoke

    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def log(message: str) -> None:
        if reporter is not None:
            reporter.write_line(message)

    try:
        smoke = CloudSmoke(CloudSettings.from_env(cloud=cloud), log=log)
        smoke.guard_cost()
    except PyramidError as exc:
        abort(exc)
    with api_server.scope(smoke.settings.run_dir):
        try:
            yield smoke
        finally:
            if request.config.getoption("--skip-teardown") and smoke.launched:
                log("kept the cluster (--skip-teardown). Inspect and remove it with:")
                for command in smoke.inspect_commands():
                    log(f"  {command}")
            else:
                smoke.teardown()


def step(smoke: Any, name: str) -> Any:
    """Run one step; a configuration or infrastructure error ends the session with its exit code."""
    try:
        return getattr(smoke, name)()
    except PyramidError as exc:
        abort(exc)
