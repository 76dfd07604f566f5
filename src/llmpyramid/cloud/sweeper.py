"""Find and remove this project's leaked smoke clusters (`wf-smoke-*`), so nothing keeps billing.

    report = sweep("aws", older_than=1800, dry_run=True)

Two sources, because either can miss a cluster: SkyPilot's status (every cluster SkyPilot knows,
including one still launching: its in-flight request is cancelled before `sky down`), and for AWS the
EC2 API itself, by SkyPilot's `skypilot-cluster-name` tag — a cluster whose SkyPilot state was lost
(another machine, a wiped ~/.sky) is found there, its instances terminated and its security group
deleted. Age comes from the UTC timestamp in the cluster name (EC2: the instance's launch time).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmpyramid.cloud import CLUSTER_PREFIX, skypilot
from llmpyramid.cloud.smoke import parse_cluster_name
from llmpyramid.errors import ConfigError, InfrastructureError

CLUSTER_TAG = "skypilot-cluster-name"
LIVE_STATES = ("pending", "running", "stopping", "stopped")


@dataclass(frozen=True)
class Leak:
    cluster: str
    source: str  # "skypilot" | "ec2"
    age_seconds: float
    detail: str = ""


@dataclass
class SweepReport:
    cloud: str
    dry_run: bool
    found: list[Leak] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "dry_run": self.dry_run,
            "found": [leak.__dict__ for leak in self.found],
            "removed": self.removed,
        }

    def summary(self) -> str:
        if not self.found:
            return f"sweep {self.cloud}: no {CLUSTER_PREFIX}{self.cloud}-* clusters found"
        verb = "would remove" if self.dry_run else "removed"
        names = ", ".join(sorted({leak.cluster for leak in self.found}))
        return f"sweep {self.cloud}: found {len(self.found)} ({names}); {verb} {len(self.removed or self.found)}"


def _age(created: datetime, now: datetime) -> float:
    return max(0.0, (now - created).total_seconds())


def skypilot_leaks(cloud: str, older_than: float, timeout: float, now: datetime) -> list[Leak]:
    leaks = []
    for record in skypilot.status(None, timeout):
        name = str(record["name"])
        parsed = parse_cluster_name(name)
        if parsed is None or parsed.cloud != cloud:
            continue
        age = _age(parsed.created, now)
        if age >= older_than:
            leaks.append(Leak(name, "skypilot", round(age, 1), skypilot.record_status(record)))
    return leaks


def ec2_leaks(regions: list[str], older_than: float, now: datetime) -> dict[str, list[Leak]]:
    """Instances tagged as smoke clusters, per region (tag value = SkyPilot's name on the cloud)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    found: dict[str, list[Leak]] = {}
    for region in regions:
        ec2 = boto3.client("ec2", region_name=region)
        filters = [
            {"Name": f"tag:{CLUSTER_TAG}", "Values": [f"{CLUSTER_PREFIX}aws-*"]},
            {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
        ]
        try:
            pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
            instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        except (BotoCoreError, ClientError) as exc:
            raise InfrastructureError(f"EC2 in {region} is not reachable for the sweep: {exc}") from None
        for inst in instances:
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            age = _age(inst["LaunchTime"].astimezone(UTC), now)
            if age >= older_than:
                leak = Leak(tags[CLUSTER_TAG], "ec2", round(age, 1), f"{region}/{inst['InstanceId']}")
                found.setdefault(region, []).append(leak)
    return found


def _remove_ec2(region: str, leaks: list[Leak], timeout: float) -> None:
    """Terminate the instances, wait for it, then delete each cluster's own security group."""
    import boto3

    ec2 = boto3.client("ec2", region_name=region)
    ids = [leak.detail.split("/", 1)[1] for leak in leaks]
    ec2.terminate_instances(InstanceIds=ids)
    ec2.get_waiter("instance_terminated").wait(
        InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": max(1, int(timeout // 5))}
    )
    prefix = f"sky-sg-{CLUSTER_PREFIX}aws-"
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [prefix + "*"]}])
    clusters = {leak.cluster for leak in leaks}
    for group in groups["SecurityGroups"]:
        owner = group["GroupName"][len("sky-sg-") :]
        if any(c == owner or c.startswith(owner + "-") for c in clusters):
            with contextlib.suppress(Exception):  # still referenced: the next sweep retries
                ec2.delete_security_group(GroupId=group["GroupId"])


def sweep(
    cloud: str,
    *,
    older_than: float = 0.0,
    dry_run: bool = False,
    regions: list[str] | None = None,
    timeout: float = 600.0,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    now: datetime | None = None,
) -> SweepReport:
    if older_than < 0:
        raise ConfigError(f"--older-than must be >= 0, got {older_than}")
    now = now or datetime.now(UTC)
    report = SweepReport(cloud, dry_run)
    report.found += skypilot_leaks(cloud, older_than, timeout, now)
    for leak in report.found:
        verb = "would remove" if dry_run else "removing"
        log(f"{verb} {leak.cluster} (SkyPilot status {leak.detail}, {leak.age_seconds:.0f}s old)")
        if not dry_run:
            skypilot.down(leak.cluster, timeout)
            report.removed.append(leak.cluster)
    if cloud == "aws":
        for region, leaks in ec2_leaks(regions or ["us-east-1"], older_than, now).items():
            report.found += leaks
            for leak in leaks:
                log(f"{'would terminate' if dry_run else 'terminating'} {leak.detail} (tag {leak.cluster})")
            if not dry_run:
                _remove_ec2(region, leaks, timeout)
                report.removed += [leak.cluster for leak in leaks]
    log(report.summary())
    return report
