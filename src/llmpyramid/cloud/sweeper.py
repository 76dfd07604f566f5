"""Find and remove smoke clusters that may go: this run's (any age) and any run's past its time to live.

    report = sweep("aws", run_id="8812-1", dry_run=True)

What may go is decided in one place, `ownership.may_remove`: another live run's cluster is never touched,
`llmpyramid-keep=true` is honoured. Two sources, because either can miss a cluster:
- SkyPilot's status (every cluster SkyPilot knows, including one still launching: its in-flight request
  is cancelled before `sky down`);
- the cloud itself, by our labels/tags (`CloudInventory`: EC2 tags, GCE labels, Azure tags) — a cluster
  whose SkyPilot state was lost (a fresh CI runner, a wiped ~/.sky, a runner killed mid-launch) is found
  there and deleted through the cloud's API.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from llmpyramid.cloud import CLUSTER_PREFIX, skypilot
from llmpyramid.cloud.ownership import RUN_ID_LABEL, Found, may_remove
from llmpyramid.cloud.smoke import parse_cluster_name
from llmpyramid.errors import ConfigError, InfrastructureError

CLUSTER_TAG = "skypilot-cluster-name"
LIVE_STATES = ("pending", "running", "stopping", "stopped")
GCE_API = "https://compute.googleapis.com/compute/v1"
AZURE_API = "https://management.azure.com"
AZURE_VM_API_VERSION = "2024-07-01"


@dataclass
class SweepReport:
    cloud: str
    dry_run: bool
    run_id: str | None = None
    found: list[Found] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    spared: dict[str, str] = field(default_factory=dict)  # cluster -> why it stays

    def as_dict(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "dry_run": self.dry_run,
            "run_id": self.run_id,
            "found": [{**f.__dict__, "created": f.created.isoformat()} for f in self.found],
            "removed": self.removed,
            "spared": self.spared,
        }

    def summary(self) -> str:
        if not self.found and not self.spared:
            return f"sweep {self.cloud}: no {CLUSTER_PREFIX}{self.cloud}-* clusters found"
        verb = "would remove" if self.dry_run else "removed"
        names = ", ".join(sorted({f.cluster for f in self.found})) or "none"
        return (f"sweep {self.cloud}: {verb} {len(self.found)} ({names}); "
                f"spared {len(self.spared)} (another live run's or kept)")  # fmt: skip


class CloudInventory(Protocol):
    """The cloud's own view of our resources: what `list_labelled` returns, `delete` removes."""

    def list_labelled(self, now: datetime) -> list[Found]: ...

    def delete(self, found: list[Found], timeout: float) -> None: ...


# --- AWS -------------------------------------------------------------------------------------------


class Ec2Inventory:
    """Instances tagged as smoke clusters (SkyPilot's cluster tag, whose value is the name on the cloud)."""

    def __init__(self, regions: list[str]):
        self.regions = regions

    def list_labelled(self, now: datetime) -> list[Found]:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        found = []
        for region in self.regions:
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
                created = inst["LaunchTime"].astimezone(UTC)
                found.append(Found(tags[CLUSTER_TAG], "ec2", created, tags, f"{region}/{inst['InstanceId']}"))
        return found

    def delete(self, found: list[Found], timeout: float) -> None:
        """Terminate the instances, wait for it, then delete each cluster's own security group."""
        import boto3

        for region in sorted({f.detail.split("/", 1)[0] for f in found}):
            ours = [f for f in found if f.detail.startswith(region + "/")]
            ec2 = boto3.client("ec2", region_name=region)
            ids = [f.detail.split("/", 1)[1] for f in ours]
            ec2.terminate_instances(InstanceIds=ids)
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": max(1, int(timeout // 5))}
            )
            prefix = f"sky-sg-{CLUSTER_PREFIX}aws-"
            groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [prefix + "*"]}])
            clusters = {f.cluster for f in ours}
            for group in groups["SecurityGroups"]:
                owner = group["GroupName"][len("sky-sg-") :]
                if any(c == owner or c.startswith(owner + "-") for c in clusters):
                    with contextlib.suppress(Exception):  # still referenced: the next sweep retries
                        ec2.delete_security_group(GroupId=group["GroupId"])


# --- GCP and Azure: their REST APIs through the clouds' own auth libraries ----------------------------


def _json(response: Any, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise InfrastructureError(f"{what}: HTTP {response.status_code} {str(response.text)[:200]}")
    return dict(response.json())


def _created(text: str | None, now: datetime) -> datetime:
    if not text:
        return now  # unknown: young, so only its labels can make it go
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class GceInventory:
    """Instances with our run-id label, in every zone of the project (aggregatedList)."""

    def __init__(self, project: str, session: Any):
        self.project, self.session = project, session

    @classmethod
    def from_default_credentials(cls) -> GceInventory:
        try:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession
        except ImportError:
            raise ConfigError("the gcp sweep needs google-auth (SkyPilot's gcp extra: skypilot[gcp])") from None
        try:
            credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/compute"])
        except Exception as exc:  # DefaultCredentialsError and friends
            raise ConfigError(f"no GCP credentials for the sweep: {exc}") from None
        if not project:
            raise ConfigError("no GCP project for the sweep: gcloud config set project <id>")
        return cls(project, AuthorizedSession(credentials))

    def list_labelled(self, now: datetime) -> list[Found]:
        url = f"{GCE_API}/projects/{self.project}/aggregated/instances"
        params: dict[str, str] = {"filter": f"labels.{RUN_ID_LABEL}:*"}
        found = []
        while True:
            page = _json(self.session.get(url, params=params), "GCE aggregated instance list")
            for scope in page.get("items", {}).values():
                for inst in scope.get("instances", []):
                    zone = str(inst.get("zone", "")).rsplit("/", 1)[-1]
                    labels = dict(inst.get("labels", {}))
                    created = _created(inst.get("creationTimestamp"), now)
                    found.append(Found(inst["name"], "gce", created, labels, f"{zone}/{inst['name']}"))
            if not page.get("nextPageToken"):
                return found
            params["pageToken"] = page["nextPageToken"]

    def delete(self, found: list[Found], timeout: float) -> None:
        for f in found:  # boot disks go with the instance (autoDelete, SkyPilot's default)
            zone, name = f.detail.split("/", 1)
            url = f"{GCE_API}/projects/{self.project}/zones/{zone}/instances/{name}"
            _json(self.session.delete(url, timeout=timeout), f"deleting GCE instance {name}")


class AzureInventory:
    """Virtual machines with our run-id tag in the subscription (Resource Manager's tag filter)."""

    def __init__(self, subscription: str, session: Any):
        self.subscription, self.session = subscription, session

    @classmethod
    def from_default_credentials(cls, subscription: str | None) -> AzureInventory:
        if not subscription:
            raise ConfigError("the azure sweep needs AZURE_SUBSCRIPTION_ID (az account show --query id -o tsv)")
        try:
            import requests
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise ConfigError(
                "the azure sweep needs azure-identity (SkyPilot's azure extra: skypilot[azure])"
            ) from None
        token = DefaultAzureCredential().get_token(f"{AZURE_API}/.default").token
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        return cls(subscription, session)

    def list_labelled(self, now: datetime) -> list[Found]:
        url: str | None = f"{AZURE_API}/subscriptions/{self.subscription}/resources"
        params: dict[str, str] | None = {
            "$filter": f"tagName eq '{RUN_ID_LABEL}'",
            "$expand": "createdTime",
            "api-version": "2021-04-01",
        }
        found = []
        while url:
            page = _json(self.session.get(url, params=params), "Azure resource list")
            for res in page.get("value", []):
                if str(res.get("type", "")).lower() != "microsoft.compute/virtualmachines":
                    continue
                created = _created(res.get("createdTime"), now)
                found.append(Found(res["name"], "azure", created, dict(res.get("tags") or {}), res["id"]))
            url, params = page.get("nextLink"), None  # the next link carries its own query
        return found

    def delete(self, found: list[Found], timeout: float) -> None:
        for f in found:
            url = f"{AZURE_API}{f.detail}"
            params = {"api-version": AZURE_VM_API_VERSION}
            _json(self.session.delete(url, params=params, timeout=timeout), f"deleting Azure VM {f.cluster}")


def inventory(cloud: str, regions: list[str]) -> CloudInventory:
    if cloud == "aws":
        return Ec2Inventory(regions)
    if cloud == "gcp":
        return GceInventory.from_default_credentials()
    return AzureInventory.from_default_credentials(os.environ.get("AZURE_SUBSCRIPTION_ID"))


# --- the sweep ---------------------------------------------------------------------------------------


def _record_labels(record: Any) -> dict[str, str]:
    resources = getattr(record.get("handle"), "launched_resources", None)
    return dict(getattr(resources, "labels", None) or {})


def skypilot_clusters(cloud: str, timeout: float) -> list[Found]:
    found = []
    for record in skypilot.status(None, timeout):
        name = str(record["name"])
        parsed = parse_cluster_name(name)
        if parsed is None or parsed.cloud != cloud:
            continue
        found.append(Found(name, "skypilot", parsed.created, _record_labels(record), skypilot.record_status(record)))
    return found


def _belongs(name_on_cloud: str, cluster: str) -> bool:
    return name_on_cloud == cluster or name_on_cloud.startswith(cluster + "-")


def sweep(
    cloud: str,
    *,
    run_id: str | None = None,
    dry_run: bool = False,
    regions: list[str] | None = None,
    timeout: float = 600.0,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    now: datetime | None = None,
    cloud_inventory: CloudInventory | None = None,
) -> SweepReport:
    now = now or datetime.now(UTC)
    report = SweepReport(cloud, dry_run, run_id)
    known = skypilot_clusters(cloud, timeout)
    cloud_inventory = cloud_inventory or inventory(cloud, regions or ["us-east-1"])
    on_cloud = cloud_inventory.list_labelled(now)
    for cluster in known:  # SkyPilot's record may lack labels (still launching): the cloud's copy has them
        twin = next((f for f in on_cloud if _belongs(f.cluster, cluster.cluster) and f.labels), None)
        labels = cluster.labels or (twin.labels if twin else {})
        _judge(report, Found(cluster.cluster, cluster.source, cluster.created, labels, cluster.detail), now)
    to_sky_down = [f for f in report.found if f.source == "skypilot"]
    for f in on_cloud:
        if not any(_belongs(f.cluster, k.cluster) for k in known):
            _judge(report, f, now)
    for name, why in report.spared.items():
        log(f"sparing {name}: {why}")
    for f in report.found:
        log(f"{'would remove' if dry_run else 'removing'} {f.cluster} ({f.source} {f.detail})")
    if not dry_run:
        for f in to_sky_down:
            skypilot.down(f.cluster, timeout)
            report.removed.append(f.cluster)
        orphans = [f for f in report.found if f.source != "skypilot"]
        if orphans:
            cloud_inventory.delete(orphans, timeout)
            report.removed += [f.cluster for f in orphans]
    log(report.summary())
    return report


def _judge(report: SweepReport, found: Found, now: datetime) -> None:
    remove, why = may_remove(found, report.run_id, now)
    if remove:
        report.found.append(found)
    else:
        report.spared[found.cluster] = why
