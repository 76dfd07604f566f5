"""Invoke front door for the cloud layer; tasks.py mounts `cloud` (thin: parse, call, guarded()).

invoke cloud.sweep --cloud aws [--run-id ID] [--dry-run] [--json]
invoke cloud.estimate --cloud gcp
invoke cloud.smoke --cloud aws [--skip-teardown]
"""

from __future__ import annotations

from invoke import Collection, Context, task

from llmpyramid.cloud.__main__ import main


def _run(argv: list[str]) -> None:
    code = main(argv)
    if code:
        raise SystemExit(code)


@task(
    help={
        "cloud": "aws, gcp or azure",
        "run_id": "this run's id: its clusters go at any age (default $LLMPYRAMID_RUN_ID; others go once expired)",
        "dry_run": "list what would be removed, remove nothing",
        "json": "print the report as JSON",
    }
)
def sweep(c: Context, cloud: str = "aws", run_id: str = "", dry_run: bool = False, json: bool = False) -> None:
    """Remove this run's wf-smoke-* clusters and any past their time to live; another live run's stay."""
    _run(["sweep", "--cloud", cloud, *(["--run-id", run_id] if run_id else []), *(["--dry-run"] if dry_run else []),
          *(["--json"] if json else [])])  # fmt: skip


@task(help={"cloud": "aws, gcp or azure"})
def estimate(c: Context, cloud: str = "aws") -> None:
    """Hourly spot price from SkyPilot's catalog and the cost guard's worst case (exit 3 above the cap)."""
    _run(["estimate", "--cloud", cloud])


@task(help={"cloud": "aws, gcp or azure", "skip_teardown": "keep the cluster and print how to remove it"})
def smoke(c: Context, cloud: str = "aws", skip_teardown: bool = False) -> None:
    """The cloud smoke on a real spot instance (costs money): launch, health, inference, teardown."""
    _run(["smoke", "--cloud", cloud, *(["--skip-teardown"] if skip_teardown else [])])


cloud = Collection("cloud", sweep, estimate, smoke)
