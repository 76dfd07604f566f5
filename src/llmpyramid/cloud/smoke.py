"""The cloud smoke steps, one method each, timed: credentials, spot launch, health, inference, teardown.

    smoke = CloudSmoke(CloudSettings.from_env(cloud="aws"))
    smoke.guard_cost()            # catalog estimate printed before anything is launched; cap -> exit 3
    smoke.check_credentials()     # SkyPilot's check; not enabled -> exit 3 with the cloud's reason + fix
    smoke.launch()                # spot, labelled with run id/owner/expiry, autodown at the TTL; no capacity -> exit 2
    smoke.wait_healthy()          # GET /health through the SSH tunnel until 200 (CLOUD_HEALTH_TIMEOUT)
    smoke.inference("completion") # the smoke suite's own probes (llmpyramid.checks.smoke)
    smoke.teardown()              # idempotent; cancels an in-flight launch first

Health and inference run through `survive_preemption`: if the instance is gone (a spot preemption,
seen by SkyPilot's refreshed status) the cluster is relaunched once; a second preemption is a failure
that says "preempted". The per-run API key is generated here and never printed or written to results; it
reaches the node only inside SSH (llmpyramid.cloud.tunnel): no port of the node is open to the internet.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import httpx

from llmpyramid.checks.shared import CheckFailed
from llmpyramid.cli import interrupts_held
from llmpyramid.cloud import CLUSTER_PREFIX, catalog, skypilot
from llmpyramid.cloud.ownership import Ownership, owner, run_id
from llmpyramid.cloud.settings import CloudSettings
from llmpyramid.cloud.tunnel import Tunnel, endpoint_of
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.target import Target

MODEL_ALIAS = "SmolLM2-135M-Instruct"
LEAK_RISK_DIR = PROJECT_ROOT / "results"
BILLED_PHASES = ("launch", "health", "completion", "chat_completion", "teardown")
_NAME = re.compile(rf"^{CLUSTER_PREFIX}(?P<cloud>aws|gcp|azure)-(?P<stamp>\d{{8}}-\d{{6}})(?:-[0-9a-f]+)*$")
T = TypeVar("T")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cluster_name(cloud: str, now: datetime | None = None) -> str:
    """wf-smoke-<cloud>-<UTC timestamp>-<random>: unique per run, and its age can be read back."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{CLUSTER_PREFIX}{cloud}-{stamp}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class ClusterName:
    cloud: str
    created: datetime


def parse_cluster_name(name: str) -> ClusterName | None:
    """The cloud and creation time encoded in a smoke cluster's name; None for any other name."""
    match = _NAME.match(name)
    if not match:
        return None
    created = datetime.strptime(match["stamp"], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    return ClusterName(match["cloud"], created)


def task_file(cloud: str) -> Path:
    return Path(str(resources.files("llmpyramid.cloud").joinpath("tasks", f"{cloud}.yaml")))


# What the node needs, and all that is uploaded: setup.sh's `uv sync --frozen` builds the project from these.
NODE_FILES = ("pyproject.toml", "uv.lock", "README.md", "src/llmpyramid")


def node_workdir(dest: Path) -> Path:
    """A fresh `dest` holding only the node's files: git-tracked ones when this is a checkout, so a key or
    `.env` lying in the tree (tracked or not elsewhere, untracked here) never leaves the machine."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", *NODE_FILES], cwd=PROJECT_ROOT, capture_output=True,
                            check=False)  # fmt: skip
    names = [n for n in listed.stdout.decode().split("\0") if n] if listed.returncode == 0 else []
    if not names:  # not a git checkout (an unpacked archive): the same paths, without caches
        roots = [PROJECT_ROOT / spec for spec in NODE_FILES]
        files = [r for r in roots if r.is_file()] + [
            p for r in roots if r.is_dir() for p in r.rglob("*") if p.is_file()
        ]
        names = [str(f.relative_to(PROJECT_ROOT)) for f in files if "__pycache__" not in f.parts]
    shutil.rmtree(dest, ignore_errors=True)
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, dest / name)
    return dest


def build_task(settings: CloudSettings, api_key: str, labels: dict[str, str] | None = None, *, workdir: Path) -> Any:
    """The cloud's task file, parsed by SkyPilot, with this run's resources and labels, workdir and secret.
    `workdir` is the launch's own (it is emptied first): two launches never share one."""
    import sky
    import yaml

    # The key is passed like `--secret API_KEY=...`: the task file declares it without a value.
    config = yaml.safe_load(task_file(settings.cloud).read_text())
    task = sky.Task.from_yaml_config(config, secrets_overrides=[("API_KEY", api_key)])
    task.set_resources(
        sky.Resources(
            infra=f"{settings.cloud}/{settings.region_name}",
            instance_type=settings.instance,
            use_spot=settings.use_spot,
            labels=labels,
        )
    )
    task.workdir = str(node_workdir(workdir))
    envs = {"CLOUD_MODEL_URL": settings.model_url or "", "CLOUD_MODEL_SHA256": settings.model_sha256 or ""}
    task.update_envs(envs)
    return task


class CloudSmoke:
    def __init__(self, settings: CloudSettings, *, log: Callable[[str], None] = _log, cluster: str | None = None):
        self.settings = settings
        self.log = log
        self.cluster = cluster or cluster_name(settings.cloud)
        self.api_key = secrets.token_urlsafe(24)
        self.run_id = run_id()
        self.ownership: Ownership | None = None  # set at launch: the time to live counts from there
        self.tunnel = Tunnel(settings.run_dir, self.cluster)
        # what the launch uploads, one per cluster: concurrent runs (or test workers) never rebuild each other's
        self.workdir = settings.run_dir / "node-workdir" / self.cluster
        self.phases: dict[str, float] = {}
        self.estimate: catalog.Estimate | None = None
        self.launch_request: Any = None
        self.launched = False  # something may exist in the cloud: teardown has work to do
        self.torn_down = False
        self.base_url: str | None = None
        self.zone: str | None = None
        self.preemptions = 0

    # --- timing ---------------------------------------------------------------------------------

    def timed(self, phase: str, fn: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            return fn()
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - started

    # --- steps ----------------------------------------------------------------------------------

    def guard_cost(self) -> catalog.Estimate:
        self.estimate = catalog.estimate(self.settings)
        self.log(f"cost estimate: {self.estimate.describe()}")
        catalog.guard(self.estimate)
        return self.estimate

    def check_credentials(self) -> list[str]:
        s = self.settings
        return self.timed("credentials", lambda: skypilot.check_credentials(s.cloud, s.request_timeout))

    def start_launch(self) -> Any:
        s = self.settings
        self.ownership = own = Ownership.for_run(self.run_id, owner(), s.worst_case_seconds)
        task = build_task(s, self.api_key, own.labels(), workdir=self.workdir)
        self.log(f"launching {self.cluster}: {s.cloud} {s.instance} in {s.region_name}, spot={s.use_spot}, "
                 f"run {own.run_id}, autodown in {own.ttl_minutes()} min")  # fmt: skip
        self.launched = True
        self.launch_request = skypilot.start_launch(task, self.cluster, own.ttl_minutes())
        return self.launch_request

    def wait_launched(self) -> str:
        s = self.settings
        skypilot.wait(self.launch_request, s.launch_timeout, f"spot launch of {self.cluster} (provision, SSH, setup)")
        self.launch_request = None
        record = skypilot.with_credentials(self.cluster, s.request_timeout)
        self.base_url = self.tunnel.open(endpoint_of(record, s.run_dir), s.request_timeout)
        resources_ = getattr(record["handle"], "launched_resources", None)
        self.zone = getattr(resources_, "zone", None)
        self.log(f"{self.cluster} is up: {self.base_url} (zone {self.zone})")
        return self.base_url

    def launch(self) -> str:
        return self.timed("launch", lambda: (self.start_launch(), self.wait_launched())[1])

    def target(self) -> Target:
        if not self.base_url:
            raise CheckFailed(f"{self.cluster} has no endpoint: the launch did not complete")
        return Target(self.base_url, self.api_key, MODEL_ALIAS)

    def _poll_health(self) -> float:
        deadline = time.monotonic() + self.settings.health_timeout
        last = "no answer yet"
        url = self.target().url("/health")
        while time.monotonic() < deadline:
            try:
                response = httpx.get(url, timeout=min(10.0, self.settings.request_timeout))
                if response.status_code == 200:
                    return self.settings.health_timeout - (deadline - time.monotonic())
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(2.0)
        raise CheckFailed(f"{url} not healthy within {self.settings.health_timeout:.0f}s (last: {last})")

    def wait_healthy(self) -> float:
        return self.timed("health", lambda: self.survive_preemption(self._poll_health))

    def inference(self, kind: str) -> dict[str, Any]:
        from llmpyramid.checks.smoke import probe_completion_fields
        from llmpyramid.client import Client

        def probe() -> dict[str, Any]:
            with Client(self.target(), timeout=self.settings.request_timeout) as client:
                return probe_completion_fields(client, kind)  # type: ignore[arg-type]

        phase = "chat_completion" if kind == "chat" else "completion"
        return self.timed(phase, lambda: self.survive_preemption(probe))

    # --- preemption -----------------------------------------------------------------------------

    def preempted(self) -> bool:
        """SkyPilot's refreshed view: the cluster record is gone (its spot instances were reclaimed), or
        a cluster that was UP no longer is. A cluster still launching (INIT, never UP) is not preempted."""
        records = skypilot.status([self.cluster], self.settings.request_timeout, refresh=True)
        if not records:
            return self.launched
        return self.base_url is not None and skypilot.record_status(records[0]) != "UP"

    def survive_preemption(self, step: Callable[[], T]) -> T:
        while True:
            try:
                return step()
            except (CheckFailed, httpx.HTTPError) as exc:
                if not self.preempted():
                    raise
                if self.preemptions >= 1:
                    raise CheckFailed(f"{self.cluster} was preempted again after one relaunch ({exc})") from None
                self.preemptions += 1
                self.log(f"{self.cluster} was preempted; relaunching once through SkyPilot")
                self.launch()

    # --- teardown -------------------------------------------------------------------------------

    def teardown(self) -> bool:
        """Cancel an in-flight launch and `sky down` the cluster; True when there was something to remove."""
        if self.torn_down or not self.launched:
            return False

        def down() -> bool:
            self.tunnel.close()
            if self.launch_request is not None:
                skypilot.cancel(self.launch_request)
                self.launch_request = None
            return skypilot.down(self.cluster, self.settings.teardown_timeout)

        with interrupts_held(f"teardown of {self.cluster}"):  # delivered once the state below is final
            try:
                removed = self.timed("teardown", down)
            except BaseException as exc:  # whatever ends the teardown early, the record says what may be left
                self.write_leak_risk(exc)
                raise
            self.torn_down = True
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.log(f"{self.cluster} torn down" if removed else f"{self.cluster} was already gone")
        return removed

    def write_leak_risk(self, exc: BaseException) -> Path:
        """results/cloud-leak-risk-<cluster>.json: what may still bill, and the commands that remove it."""
        own = self.ownership
        remove_with = [f"invoke cloud.sweep --cloud {self.settings.cloud} --run-id {self.run_id}",
                       f"sky down {self.cluster} -y"]  # fmt: skip
        error = f"{type(exc).__name__}: {exc}"
        record = {
            "cluster": self.cluster,
            "cloud": self.settings.cloud,
            "region": self.settings.region_name,
            "run_id": self.run_id,
            "labels": own.labels() if own else None,
            "error": error,
            "remove_with": remove_with,
        }
        path = LEAK_RISK_DIR / f"cloud-leak-risk-{self.cluster}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
        self.log(f"LEAK RISK: teardown of {self.cluster} did not finish ({error}); "
                 f"record: {path}; remove with: {remove_with[0]}")  # fmt: skip
        return path

    def inspect_commands(self) -> list[str]:
        """SkyPilot's real commands for a kept cluster (`sky ssh` is a different feature in 0.14)."""
        return [f"ssh {self.cluster}", f"sky logs {self.cluster}", f"sky down {self.cluster} -y"]

    # --- the results' cloud block ---------------------------------------------------------------

    def cloud_block(self) -> dict[str, Any]:
        s = self.settings
        billed = sum(self.phases.get(p, 0.0) for p in BILLED_PHASES)
        block: dict[str, Any] = {
            "cloud": s.cloud,
            "region": s.region_name,
            "zone": self.zone,
            "instance_type": s.instance,
            "spot": s.use_spot,
            "cluster": self.cluster,
            "run_id": self.run_id,
            "labels": self.ownership.labels() if self.ownership else None,
            "phases_seconds": {k: round(v, 3) for k, v in self.phases.items()},
            "preemptions": self.preemptions,
        }
        if self.estimate:
            block["cost"] = {
                **self.estimate.as_dict(),
                "billed_seconds": round(billed, 3),
                "estimated_usd": round(catalog.cost_usd(self.estimate.hourly_high_usd, billed), 6),
                "estimated_low_usd": round(catalog.cost_usd(self.estimate.hourly_low_usd, billed), 6),
                "source": f"SkyPilot catalog {catalog.CATALOG_VERSION} (pinned, llmpyramid/cloud/catalogs)",
            }
        return block
