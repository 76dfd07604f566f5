"""What a sweep may remove (ownership.may_remove), and the GCE/Azure label lookups against recorded API pages.

The AWS path runs for real against moto in tests/cloud_emulated; GCP and Azure have no emulator here, so their
REST calls are answered by a fake session that checks the request (filter, pagination) like the API would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llmpyramid.cloud import ownership, sweeper
from llmpyramid.cloud.ownership import EXPIRES_LABEL, KEEP_LABEL, OWNER_LABEL, RUN_ID_LABEL, Found, may_remove
from llmpyramid.errors import ConfigError

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def labelled(run, expires_in_s, **extra):
    labels = {RUN_ID_LABEL: run, OWNER_LABEL: "alice", EXPIRES_LABEL: str(int(NOW.timestamp() + expires_in_s))}
    return Found(f"wf-smoke-aws-x-{run}", "ec2", NOW - timedelta(minutes=5), {**labels, **extra}, "r/i-1")


def test_this_runs_cluster_goes_at_any_age():
    assert may_remove(labelled("run-a", 3600), "run-a", NOW) == (True, "this run's")


def test_another_live_runs_cluster_is_never_touched():
    remove, why = may_remove(labelled("run-b", 3600), "run-a", NOW)
    assert not remove and why.startswith("run run-b's, live until")
    assert not may_remove(labelled("run-b", 3600), None, NOW)[0]


def test_any_run_past_its_time_to_live_goes():
    remove, why = may_remove(labelled("run-b", -1), "run-a", NOW)
    assert remove and why.startswith("past its time to live")


def test_keep_label_wins_over_everything():
    for run, expires in (("run-a", 3600), ("run-b", -3600)):
        assert may_remove(labelled(run, expires, **{KEEP_LABEL: "true"}), "run-a", NOW) == (
            False,
            f"marked {KEEP_LABEL}=true",
        )


def test_unlabelled_cluster_expires_by_its_age():
    young = Found("wf-smoke-aws-old", "ec2", NOW - timedelta(minutes=10))
    old = Found("wf-smoke-aws-old", "ec2", NOW - timedelta(seconds=ownership.DEFAULT_TTL_S + 1))
    assert not may_remove(young, "run-a", NOW)[0]
    assert may_remove(old, "run-a", NOW)[0]


def test_labels_are_valid_on_every_cloud():
    own = ownership.Ownership.for_run("8812-1", ownership.label_value("Alice Smith@corp"), 2640, now=NOW.timestamp())
    labels = own.labels()
    assert labels == {
        RUN_ID_LABEL: "8812-1",
        OWNER_LABEL: "alice-smith-corp",
        EXPIRES_LABEL: str(int(NOW.timestamp()) + 2640),
    }
    assert own.ttl_minutes(now=NOW.timestamp()) == 44
    for key, value in labels.items():  # GCP's rule, the narrowest of the three
        assert ownership._LABEL_VALUE.match(key) and ownership._LABEL_VALUE.match(value)


@pytest.mark.parametrize("bad", ["Upper", "-lead", "a b", "a;rm", "x" * 64])
def test_a_run_id_that_is_not_a_label_value_is_a_configuration_error(bad):
    with pytest.raises(ConfigError, match="not a valid label value"):
        ownership.run_id(bad)


def test_run_id_from_the_environment_else_fresh(monkeypatch):
    monkeypatch.setenv(ownership.RUN_ID_ENV, "gh-123-2")
    assert ownership.run_id() == "gh-123-2"
    monkeypatch.delenv(ownership.RUN_ID_ENV)
    assert ownership.run_id() != ownership.run_id()


# --- GCE and Azure lookups ------------------------------------------------------------------------------


class Response:
    def __init__(self, payload, status=200):
        self.payload, self.status_code, self.text = payload, status, str(payload)

    def json(self):
        return self.payload


class FakeSession:
    """Answers GET with the queued pages (checking the request) and records DELETEs."""

    def __init__(self, pages, expect):
        self.pages, self.expect, self.gets, self.deletes = list(pages), expect, [], []

    def get(self, url, params=None):
        self.gets.append((url, dict(params or {})))
        self.expect(url, params)
        return Response(self.pages.pop(0))

    def delete(self, url, params=None, timeout=None):
        self.deletes.append((url, params))
        return Response({"status": "RUNNING"})


def gce_instance(name, zone, labels, created="2026-12-05T11:00:00.000-08:00"):
    return {"name": name, "zone": f"https://www.googleapis.com/compute/v1/projects/p/zones/{zone}",
            "labels": labels, "creationTimestamp": created}  # fmt: skip


def test_gce_lookup_filters_by_our_label_follows_pages_and_deletes_by_zone():
    def expect(url, params):
        assert url == f"{sweeper.GCE_API}/projects/proj/aggregated/instances"
        assert params["filter"] == f"labels.{RUN_ID_LABEL}:*"

    mine = {RUN_ID_LABEL: "run-a", EXPIRES_LABEL: str(int(NOW.timestamp()) + 3600)}
    theirs = {RUN_ID_LABEL: "run-b", EXPIRES_LABEL: str(int(NOW.timestamp()) + 3600)}
    pages = [
        {"items": {"zones/us-central1-a": {"instances": [gce_instance("wf-smoke-gcp-a-head", "us-central1-a", mine)]},
                   "zones/us-east1-b": {"warning": {"code": "NO_RESULTS_ON_PAGE"}}}, "nextPageToken": "t2"},
        {"items": {"zones/us-east1-b": {"instances": [gce_instance("wf-smoke-gcp-b-head", "us-east1-b", theirs)]}}},
    ]  # fmt: skip
    session = FakeSession(pages, expect)
    inv = sweeper.GceInventory("proj", session)
    found = inv.list_labelled(NOW)
    assert [(f.cluster, f.detail, f.labels[RUN_ID_LABEL]) for f in found] == [
        ("wf-smoke-gcp-a-head", "us-central1-a/wf-smoke-gcp-a-head", "run-a"),
        ("wf-smoke-gcp-b-head", "us-east1-b/wf-smoke-gcp-b-head", "run-b"),
    ]
    assert session.gets[1][1]["pageToken"] == "t2"
    assert found[0].created == datetime(2026, 12, 5, 19, 0, tzinfo=UTC)
    inv.delete([found[0]], timeout=60)
    assert session.deletes == [
        (f"{sweeper.GCE_API}/projects/proj/zones/us-central1-a/instances/wf-smoke-gcp-a-head", None)
    ]


def test_azure_lookup_filters_by_our_tag_keeps_only_vms_and_follows_next_link():
    def expect(url, params):
        if params is not None:  # the first page; nextLink carries its own query
            assert url == f"{sweeper.AZURE_API}/subscriptions/sub/resources"
            assert params["$filter"] == f"tagName eq '{RUN_ID_LABEL}'" and params["$expand"] == "createdTime"

    vm = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/wf-smoke-azure-a-head"
    tags = {RUN_ID_LABEL: "run-a", EXPIRES_LABEL: "1"}
    pages = [
        {"value": [{"id": "/subscriptions/sub/.../disk", "name": "d", "type": "Microsoft.Compute/disks", "tags": tags}],
         "nextLink": f"{sweeper.AZURE_API}/subscriptions/sub/resources?$skiptoken=x"},
        {"value": [{"id": vm, "name": "wf-smoke-azure-a-head", "type": "Microsoft.Compute/virtualMachines",
                    "tags": tags, "createdTime": "2026-12-05T10:00:00Z"}]},
    ]  # fmt: skip
    session = FakeSession(pages, expect)
    inv = sweeper.AzureInventory("sub", session)
    found = inv.list_labelled(NOW)
    assert [(f.cluster, f.detail) for f in found] == [("wf-smoke-azure-a-head", vm)]
    assert may_remove(found[0], "run-b", NOW)[0], "expired at epoch 1"
    inv.delete(found, timeout=60)
    assert session.deletes == [(f"{sweeper.AZURE_API}{vm}", {"api-version": sweeper.AZURE_VM_API_VERSION})]


def test_gcp_and_azure_sweeps_without_their_auth_libraries_are_configuration_errors(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cloud_sdks(name, *args, **kwargs):
        if name.startswith(("google.auth", "azure")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cloud_sdks)
    with pytest.raises(ConfigError, match="skypilot\\[gcp\\]"):
        sweeper.inventory("gcp", [])
    with pytest.raises(ConfigError, match="AZURE_SUBSCRIPTION_ID"):
        sweeper.inventory("azure", [])
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "sub")
    with pytest.raises(ConfigError, match="skypilot\\[azure\\]"):
        sweeper.inventory("azure", [])


# --- the sweep's decisions over both sources ------------------------------------------------------------


class StaticInventory:
    def __init__(self, found):
        self.found, self.deleted = found, []

    def list_labelled(self, now):
        return list(self.found)

    def delete(self, found, timeout):
        self.deleted += [f.cluster for f in found]


def test_sweep_removes_only_this_runs_and_expired_and_says_why_it_spares(monkeypatch):
    from llmpyramid.cloud import skypilot

    downed = []
    monkeypatch.setattr(skypilot, "status", lambda clusters, timeout: [{"name": "wf-smoke-aws-20261205-115500-aaaa"}])
    monkeypatch.setattr(skypilot, "record_status", lambda record: "INIT")
    monkeypatch.setattr(skypilot, "down", lambda cluster, timeout: downed.append(cluster) or True)
    mine_in_sky = Found("wf-smoke-aws-20261205-115500-aaaa-1f2e", "ec2", NOW, labelled("run-a", 3600).labels, "r/i-1")
    theirs = labelled("run-b", 3600)
    expired = labelled("run-c", -60)
    inv = StaticInventory([mine_in_sky, theirs, expired])
    report = sweeper.sweep("aws", run_id="run-a", now=NOW, cloud_inventory=inv, log=lambda m: None)
    assert downed == ["wf-smoke-aws-20261205-115500-aaaa"], "SkyPilot's own cluster goes through sky down"
    assert inv.deleted == [expired.cluster], "an orphan SkyPilot does not know goes through the cloud's API"
    assert list(report.spared) == [theirs.cluster]
    dry = sweeper.sweep("aws", run_id="run-a", dry_run=True, now=NOW, cloud_inventory=StaticInventory([theirs]),
                        log=lambda m: None)  # fmt: skip
    assert dry.found == [] and dry.removed == []
