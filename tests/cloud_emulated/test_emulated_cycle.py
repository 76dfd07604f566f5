"""The cloud smoke's launch/teardown/preemption/interrupt/sweep paths against emulated EC2 (moto).

Real SkyPilot provisions for real here (IAM, VPC, security groups, spot run_instances) and is stopped
at the SSH phase by design: the instance's public IP is moto's fiction and the namespace has no route
to it. Every test ends by asking moto itself that nothing is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from llmpyramid.cloud import skypilot
from llmpyramid.cloud.ownership import EXPIRES_LABEL, KEEP_LABEL, OWNER_LABEL, RUN_ID_LABEL
from llmpyramid.cloud.smoke import CloudSmoke
from llmpyramid.cloud.sweeper import sweep
from tests.cloud_emulated.groups import FRONT_DOORS, IN_PROCESS

RUNNING_TIMEOUT = 240.0  # provisioning against moto took ~20 s here; the box is shared and busy


def _tag(instance, key):
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), "")


def _found(report, cluster):
    """This test's leaks among a sweep's findings: the emulator is shared by the worker's tests, and one
    test's leftover must fail that test only."""
    return [(leak.cluster, leak.source) for leak in report.found if leak.cluster.startswith(cluster)]


def assert_nothing_left(aws, cluster):
    assert aws.live_instances(cluster) == [], f"instances of {cluster} still alive in moto"


def open_ports(aws, instance):
    """(port range, source) of every ingress rule of the instance's security groups, as moto holds them."""
    ids = [g["GroupId"] for g in instance.get("SecurityGroups", [])]
    groups = aws.client("ec2").describe_security_groups(GroupIds=ids)["SecurityGroups"]
    return [((p.get("FromPort"), p.get("ToPort")), r.get("CidrIp") or r.get("CidrIpv6") or r.get("GroupId"))
            for g in groups for p in g["IpPermissions"]
            for r in [*p.get("IpRanges", []), *p.get("Ipv6Ranges", []), *p.get("UserIdGroupPairs", [])]]  # fmt: skip


@IN_PROCESS
def test_credentials_enabled_against_moto(settings):
    caps = CloudSmoke(settings).check_credentials()
    assert "compute" in caps


@IN_PROCESS
def test_spot_launch_reaches_ssh_phase_by_design_then_teardown_leaves_nothing(emulated_aws, settings, record_property):
    smoke = CloudSmoke(settings)
    smoke.guard_cost()
    smoke.timed("credentials", smoke.check_credentials)
    smoke.timed("launch", smoke.start_launch)
    instance = smoke.timed("launch", lambda: emulated_aws.wait_instance_running(smoke.cluster, RUNNING_TIMEOUT))
    try:
        assert instance.get("InstanceLifecycle") == "spot"
        assert instance["InstanceType"] == "r7a.large"
        assert _tag(instance, "skypilot-cluster-name").startswith(smoke.cluster)
        assert _tag(instance, RUN_ID_LABEL) == smoke.run_id and _tag(instance, OWNER_LABEL)
        assert int(_tag(instance, EXPIRES_LABEL)) == smoke.ownership.expires_at > time.time()
        # the inference port is never opened: the API is reached through SSH (llmpyramid.cloud.tunnel)
        rules = open_ports(emulated_aws, instance)
        assert ((22, 22), "0.0.0.0/0") in rules, rules
        assert not [r for r in rules if r[0][0] is not None and r[0][0] <= 8080 <= r[0][1]], rules
        # By design the launch cannot finish: it waits for SSH to an address that does not exist.
        assert skypilot.active_requests(smoke.cluster), "the launch request should still be waiting for SSH"
    finally:
        assert smoke.teardown()
    assert_nothing_left(emulated_aws, smoke.cluster)
    assert _found(sweep("aws", run_id=smoke.run_id, dry_run=True), smoke.cluster) == []
    record_property("metrics", {f"{k}_s": round(v, 2) for k, v in smoke.phases.items()})


@IN_PROCESS
def test_preemption_is_detected_and_leaves_nothing(emulated_aws, settings):
    smoke = CloudSmoke(settings)
    smoke.start_launch()
    instance = emulated_aws.wait_instance_running(smoke.cluster, RUNNING_TIMEOUT)
    try:
        skypilot.cancel(smoke.launch_request)
        smoke.launch_request = None
        assert not smoke.preempted(), "a cluster whose instance still runs is not preempted"
        emulated_aws.client("ec2").terminate_instances(InstanceIds=[instance["InstanceId"]])
        assert smoke.preempted(), "SkyPilot's refreshed status should show the reclaimed spot instance"
    finally:
        smoke.teardown()
    assert_nothing_left(emulated_aws, smoke.cluster)


def _front_door(**env):
    env.setdefault("LLMPYRAMID_RUN_ID", f"t-{uuid.uuid4().hex[:10]}")
    return subprocess.Popen(
        [sys.executable, "-m", "llmpyramid.cloud", "smoke", "--cloud", "aws"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip


def _wait_new_instance(aws, before, proc, timeout=RUNNING_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"front door exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}"
        fresh = [i for i in aws.live_instances("wf-smoke-aws-") if i["InstanceId"] not in before]
        if [i for i in fresh if i["State"]["Name"] == "running"]:
            return _tag(fresh[0], "skypilot-cluster-name")
        time.sleep(1.0)
    raise AssertionError("the front door's instance never showed up in moto")


def _ids(aws):
    return {i["InstanceId"] for i in aws.instances()}


@FRONT_DOORS
def test_unreachable_launch_times_out_tears_down_in_finally(emulated_aws):
    proc = _front_door(CLOUD_LAUNCH_TIMEOUT="60s", CLOUD_TEARDOWN_TIMEOUT="120s")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err[-3000:]
    doc = json.loads(out)
    assert doc["exit_code"] == 2 and "did not finish within 60s" in doc["error"]
    statuses = {t["name"]: t["status"] for t in doc["tests"]}
    assert statuses["cloud_credentials"] == "passed" and statuses["spot_launch"] == "error"
    assert statuses["teardown"] == "passed"
    assert doc["passed"] == doc["summary"]["passed"] and doc["failed"] == doc["summary"]["failed"] >= 1
    assert doc["cloud"]["cost"]["estimated_usd"] > 0
    assert emulated_aws.instances(doc["cloud"]["cluster"]), "the launch should have created an instance"
    assert_nothing_left(emulated_aws, doc["cloud"]["cluster"])


@FRONT_DOORS
def test_sigterm_mid_launch_exits_130_and_leaks_nothing(emulated_aws):
    before = _ids(emulated_aws)
    proc = _front_door()
    name_on_cloud = _wait_new_instance(emulated_aws, before, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert emulated_aws.live_instances(name_on_cloud) == []


@FRONT_DOORS
def test_a_second_sigterm_during_teardown_still_ends_with_nothing_left(emulated_aws):
    before = _ids(emulated_aws)
    proc = _front_door()
    name_on_cloud = _wait_new_instance(emulated_aws, before, proc)
    proc.send_signal(signal.SIGTERM)
    _wait_for_line(proc, "interrupt", timeout=120)  # the teardown has begun
    proc.send_signal(signal.SIGTERM)  # uv run forwarding its own, or a CI cancel's second signal
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert emulated_aws.live_instances(name_on_cloud) == []


def _wait_for_line(proc, needle, timeout):
    """Read the front door's stderr until a line containing `needle` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if needle in line:
            return line
        assert line or proc.poll() is None, f"front door exited ({proc.returncode}) before saying {needle!r}"
    raise AssertionError(f"no {needle!r} from the front door within {timeout}s")


@FRONT_DOORS
def test_sigkill_mid_launch_leaves_an_instance_with_its_run_and_end_the_next_sweep_removes(emulated_aws):
    before = _ids(emulated_aws)
    run = f"t-{uuid.uuid4().hex[:10]}"
    proc = _front_door(LLMPYRAMID_RUN_ID=run)
    name_on_cloud = _wait_new_instance(emulated_aws, before, proc)
    proc.kill()
    proc.communicate(timeout=30)
    [instance] = emulated_aws.live_instances(name_on_cloud)
    assert _tag(instance, RUN_ID_LABEL) == run, "SIGKILL allows no cleanup: the instance still runs, labelled"
    expires = datetime.fromtimestamp(int(_tag(instance, EXPIRES_LABEL)), UTC)
    another = sweep("aws", run_id="someone-else")  # another run's sweep: the killed run is still live
    assert _found(another, name_on_cloud) == [] and emulated_aws.live_instances(name_on_cloud)
    report = sweep("aws", run_id="someone-else", now=expires + timedelta(seconds=1))  # the next one, once expired
    assert any(name_on_cloud.startswith(f.cluster) for f in report.found), report.as_dict()
    assert emulated_aws.live_instances(name_on_cloud) == []
    again = sweep("aws", run_id=run, dry_run=True)
    assert [f for f in again.found if name_on_cloud.startswith(f.cluster)] == []


@IN_PROCESS
def test_two_concurrent_runs_each_sweep_their_own_and_never_the_others(emulated_aws, settings):
    first, second = CloudSmoke(settings), CloudSmoke(settings)
    assert first.run_id != second.run_id
    for smoke in (first, second):
        smoke.start_launch()
    try:
        for smoke in (first, second):
            emulated_aws.wait_instance_running(smoke.cluster, RUNNING_TIMEOUT)
        report = sweep("aws", run_id=first.run_id)
        assert _found(report, first.cluster) == [(first.cluster, "skypilot")], report.as_dict()
        assert _found(report, second.cluster) == [], report.as_dict()
        assert emulated_aws.live_instances(first.cluster) == []
        assert emulated_aws.live_instances(second.cluster), "the other run's instance was touched"
        assert second.cluster in report.spared and "live until" in report.spared[second.cluster]
        report = sweep("aws", run_id=second.run_id)
        assert _found(report, second.cluster) == [(second.cluster, "skypilot")], report.as_dict()
    finally:
        for smoke in (first, second):
            smoke.teardown()
    assert_nothing_left(emulated_aws, first.cluster)
    assert_nothing_left(emulated_aws, second.cluster)


def _plant_instance(aws, name, **labels):
    """An EC2 instance tagged as SkyPilot's cluster `name` (plus `labels`), that SkyPilot's own state does not know."""
    tags = [{"Key": "skypilot-cluster-name", "Value": name}, *({"Key": k, "Value": v} for k, v in labels.items())]
    aws.client("ec2").run_instances(
        ImageId="ami-785db401", InstanceType="r7a.large", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )  # fmt: skip
    return name


def _run_labels(run, expires_in_s):
    return {RUN_ID_LABEL: run, EXPIRES_LABEL: str(int(time.time() + expires_in_s))}


@IN_PROCESS
def test_sweep_finds_by_cloud_tags_what_skypilot_forgot_and_removes_the_expired(emulated_aws):
    name = _plant_instance(emulated_aws, f"wf-smoke-aws-20200101-000000-{uuid.uuid4().hex[:4]}-1234abcd",
                           **_run_labels("gone-run", -60))  # fmt: skip
    dry = sweep("aws", run_id="my-run", dry_run=True)
    assert _found(dry, name) == [(name, "ec2")]
    assert emulated_aws.live_instances(name), "a dry run removes nothing"
    sweep("aws", run_id="my-run")
    assert emulated_aws.live_instances(name) == []


@IN_PROCESS
def test_sweep_spares_another_live_run_and_a_kept_cluster_and_removes_its_own(emulated_aws):
    suffix = uuid.uuid4().hex[:4]
    live = _plant_instance(emulated_aws, f"wf-smoke-aws-20991231-000000-{suffix}-1", **_run_labels("other-run", 3600))
    kept = _plant_instance(emulated_aws, f"wf-smoke-aws-20991231-000000-{suffix}-2",
                           **_run_labels("gone-run", -60), **{KEEP_LABEL: "true"})  # fmt: skip
    mine = _plant_instance(emulated_aws, f"wf-smoke-aws-20991231-000000-{suffix}-3", **_run_labels("my-run", 3600))
    try:
        report = sweep("aws", run_id="my-run")
        assert _found(report, live) == [] and _found(report, kept) == []
        assert emulated_aws.live_instances(live) and emulated_aws.live_instances(kept)
        assert emulated_aws.live_instances(mine) == []
    finally:
        sweep("aws", run_id="other-run")
        emulated_aws.client("ec2").terminate_instances(
            InstanceIds=[i["InstanceId"] for i in emulated_aws.live_instances(kept)]
        )
    assert emulated_aws.live_instances(live) == []


@IN_PROCESS
def test_gcp_and_azure_without_credentials_are_configuration_errors_with_skypilots_reason(emulated_aws):
    from llmpyramid.cloud.settings import CREDENTIALS_FIX
    from llmpyramid.errors import ConfigError

    for cloud in ("gcp", "azure"):
        try:
            skypilot.check_credentials(cloud, timeout=180)
        except ConfigError as exc:
            message = str(exc)
        else:
            raise AssertionError(f"{cloud} has no credentials here and must not be enabled")
        assert message.startswith(f"{cloud} is not enabled in SkyPilot: ") and CREDENTIALS_FIX[cloud] in message
        assert len(message) > len(f"{cloud} is not enabled in SkyPilot: ") + len(CREDENTIALS_FIX[cloud]) + 10
