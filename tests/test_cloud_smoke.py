"""Cloud smoke (seed: "Cloud Smoke Tests (Spot Instance Validation)"): a real spot instance via SkyPilot.

    uv run pytest tests/test_cloud_smoke.py --cloud aws [-v] [--skip-teardown]

Costs money: the cost estimate from SkyPilot's catalog is printed first and CLOUD_MAX_COST_USD caps
it. The tests run in order on one cluster (the `cloud_smoke` session fixture tears it down at the end,
also on Ctrl-C/SIGTERM). No credentials: the session ends with exit 3, the cloud's own reason and the
command that fixes it. Without --cloud every test is skipped and says so. The steps are library code
(llmpyramid.cloud.smoke), proven against emulated EC2 in tests/cloud_emulated.
"""

from __future__ import annotations

import pytest

from llmpyramid.cloud.pytest_plugin import step

pytestmark = [pytest.mark.cloud, pytest.mark.timeout(3600)]


def test_cloud_credentials(cloud_smoke):
    """SkyPilot can use the cloud (its `sky check`)."""
    step(cloud_smoke, "check_credentials")


def test_spot_launch(cloud_smoke, metrics):
    """A small spot instance comes up, labelled with its run id and end (autodown at the TTL), reached through SSH."""
    step(cloud_smoke, "launch")
    metrics.update(cluster=cloud_smoke.cluster, zone=cloud_smoke.zone, launch_s=cloud_smoke.phases.get("launch"))


def test_instance_healthy(cloud_smoke, metrics):
    """The instance's /health answers 200 within CLOUD_HEALTH_TIMEOUT."""
    metrics.update(health_wait_s=cloud_smoke.wait_healthy(), preemptions=cloud_smoke.preemptions)


def test_completion(cloud_smoke, metrics):
    """One completion, judged by the smoke suite's own checks."""
    metrics.update(cloud_smoke.inference("completion"))


def test_chat_completion(cloud_smoke, metrics):
    """One chat completion, judged by the smoke suite's own checks."""
    metrics.update(cloud_smoke.inference("chat"))


def test_teardown(cloud_smoke, request, metrics):
    """`sky down` removes the cluster (skipped with the inspect/remove commands under --skip-teardown)."""
    if request.config.getoption("--skip-teardown"):
        pytest.skip("--skip-teardown: " + "; ".join(cloud_smoke.inspect_commands()))
    assert step(cloud_smoke, "teardown"), f"{cloud_smoke.cluster} was not found to tear down"
    cost = cloud_smoke.cloud_block().get("cost") or {}  # catalog price x billed time (pipelines add it up)
    metrics.update(teardown_s=cloud_smoke.phases.get("teardown"), cost_usd=cost.get("estimated_usd"))
