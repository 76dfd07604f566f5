"""Invoke front doors for the emulated-cloud layer; tasks.py mounts them.

    invoke emulators.up [--only aws|gcs]     # moto + fake-gcs-server on free 127.0.0.1 ports, in the background
    invoke emulators.status [--json]
    invoke emulators.down
    invoke model.publish s3://bucket/models/ [--path FILE]
    invoke model.fetch s3://bucket/models/x.gguf [--dest models/test] [--sha256 HEX]

Thin: each task parses arguments, calls llmpyramid.emulators / llmpyramid.storage, and maps errors
to one line + exit code through cli.guarded().
"""

from __future__ import annotations

import json
from pathlib import Path

from invoke import Collection, Context, task

from llmpyramid.cli import guarded
from llmpyramid.errors import ConfigError


def _kinds(only: str | None) -> list[str]:
    from llmpyramid.emulators import KINDS

    if not only:
        return list(KINDS)
    kinds = [k.strip() for k in only.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"unknown emulator(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    return kinds


@task(help={"only": "start just these: aws, gcs (comma-separated); default both"})
def up(c: Context, only: str | None = None) -> None:
    """Start the embedded emulators in the background and print the variables that point SDKs at them."""
    with guarded():
        from llmpyramid.emulators import KINDS, EmulatorManager, user_endpoint

        manager = EmulatorManager()
        exports: dict[str, str] = {}
        for kind in _kinds(only):
            given = user_endpoint(kind)  # the user's own endpoint (e.g. LocalStack) wins; checked reachable
            if given:
                print(f"{kind}: using {given.url} from {given.env_var}; not starting an emulator")
                continue
            try:
                state = manager.up(kind, notify=print)
            except BaseException:
                manager.down_all()
                raise
            exports[KINDS[kind].env_var] = state.url
        for name, value in exports.items():
            print(f"export {name}={value}")
        if exports:
            print("(stop with: invoke emulators.down)")


@task(help={"only": "stop just these: aws, gcs (comma-separated); default all"})
def down(c: Context, only: str | None = None) -> None:
    """Stop the background emulators (SIGTERM, then SIGKILL after the grace period) and free their ports."""
    with guarded():
        from llmpyramid.emulators import EmulatorManager

        manager = EmulatorManager()
        stopped = [kind for kind in _kinds(only) if manager.down(kind)]
        print(f"stopped: {', '.join(stopped)}" if stopped else "no emulators were running")


@task(help={"json": "print the status as JSON"})
def status(c: Context, json_: bool = False) -> None:
    """Which endpoint answers for each cloud: the user's, a background emulator, or none."""
    with guarded():
        from llmpyramid.emulators import EmulatorManager

        report = EmulatorManager().status()
        if json_:
            print(json.dumps(report, indent=2))
            return
        for kind in ("aws", "gcs"):
            entry = report[kind]
            if not entry.get("url"):
                print(f"{kind}: not running ({entry['env_var']} unset)")
            else:
                print(f"{kind}: {entry['url']} [{entry['source']}, {entry['health']}]")


@task(
    help={
        "url": "s3://bucket/prefix/ or gs://bucket/prefix/ (a trailing / keeps the file name), or a full object URL",
        "path": "file to publish (default: the test model, found or fetched like `invoke model.download`)",
    }
)
def publish(c: Context, url: str, path: str | None = None) -> None:
    """Upload the model to object storage with its sha256 in the object metadata."""
    with guarded():
        from llmpyramid import storage
        from llmpyramid.model import ensure_model

        storage.publish_url(url, "model.gguf")  # a bad URL is exit 3 before any model download
        source = Path(path) if path else ensure_model(notify=print).path
        stored = storage.publish(source, url, notify=print)
        print(json.dumps(storage.describe(stored)))


@task(
    help={
        "url": "s3://bucket/models/x.gguf or gs://bucket/models/x.gguf",
        "dest": "directory or file to write (default: models/test)",
        "sha256": "expected digest; must match the object's metadata",
    }
)
def fetch(c: Context, url: str, dest: str = "models/test/", sha256: str | None = None) -> None:
    """Download the model as a burst node does: verify sha256, then move it into place atomically."""
    with guarded():
        from llmpyramid import storage

        got = storage.fetch(url, dest, expected_sha256=sha256, notify=print)
        print(json.dumps({"path": str(got.path), "url": got.url, "size": got.size, "sha256": got.sha256}))


emulators = Collection("emulators", up, down, status)

# Standalone use (`invoke -r invoke_tasks -c emulators --list`); tasks.py mounts the pieces.
ns = Collection(emulators, Collection("model", publish, fetch))
