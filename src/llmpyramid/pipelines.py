"""Pipelines: named chains of layers from the table, each run as its nox session, one combined report.

    invoke local | ci | staging | preprod --base-url URL   [--dry-run] [--output json]

A pipeline runs its steps in order. Each step is a layer's nox session (the same isolation CI
uses), which runs the layer's one executor and leaves its results document in the step's
directory; the pipeline report (`results/pipeline-<name>.json`, schema
`schemas/pipeline.schema.json`) lists per step: status, exit code, duration, cost and the
path of that document. The pipeline's exit code is the worst step's (seed codes). A step is
skipped only where it cannot mean anything: its `requires` failed (no load test against a target
that failed smoke), and the report says so.

Targets follow THE target rule: `staging` provisions one (the Hetzner VM with terraform, or offline
an embedded stack standing in for it), `preprod` is given one, and both hand it to every step
through the environment, probed once. Whatever a pipeline provisions is torn down in `finally`,
so also on failure, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import jsonschema

from llmpyramid import layers, results
from llmpyramid.cli import INTERRUPTED_EXIT
from llmpyramid.cloud import CLOUDS
from llmpyramid.config import (
    PROJECT_ROOT,
    Settings,
    knob,
    parse_duration,
    parse_float,
    parse_int,
    parse_list,
    parse_path,
    parse_str,
    parse_url,
)
from llmpyramid.errors import ConfigError, ExitCode, worst
from llmpyramid.stack.embedded import fresh_stack
from llmpyramid.suites import run_child, stop_child
from llmpyramid.target import Target, check_reachable, handoff_env, target_from_env

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PipelineSettings(Settings):
    section: ClassVar[str] = "pipeline setting"
    results_dir: Path = knob(PROJECT_ROOT / "results", "PIPELINE_RESULTS_DIR", parse_path)
    staging_provisioner: str = knob("auto", "STAGING_PROVISIONER", parse_str, choices=("auto", "hetzner", "local"))
    # Seed: "Staging (€0.03/hour) Hetzner Cloud CPX31"; "Pre-Production (~€5/test run) Hetzner AX42".
    staging_eur_per_hour: float = knob(0.03, "STAGING_EUR_PER_HOUR", parse_float, minimum=0, maximum=100)
    preprod_eur_per_run: float = knob(5.0, "PREPROD_EUR_PER_RUN", parse_float, minimum=0, maximum=10_000)
    preprod_slo_file: Path = knob(PROJECT_ROOT / "slo" / "preprod.toml", "PREPROD_SLO_FILE", parse_path)
    preprod_baseline: Path | None = knob(None, "PREPROD_BASELINE", parse_path)  # previous sustained-run results
    preprod_sustained: float = knob(120.0, "PREPROD_SUSTAINED_DURATION", parse_duration, minimum=1, maximum=86_400)
    # the sustained run as this many runs (its duration split between them): 95 % intervals, noise-aware gate
    preprod_repeat: int = knob(3, "PREPROD_REPEAT", parse_int, minimum=1, maximum=50)
    # cloud smoke runs only where credentials exist; this narrows it further (`none`: no cloud step)
    preprod_clouds: tuple[str, ...] = knob(CLOUDS, "PREPROD_CLOUDS", parse_list, choices=CLOUDS)
    # the deployment's router in front of the pre-production server (base): the hybrid layer's scenarios
    # against it (HYBRID_* for its key, burst URL and stop/start commands); unset: no hybrid step
    preprod_router_url: str | None = knob(None, "PREPROD_ROUTER_URL", parse_url)
    # how many steps of a concurrent pipeline run at once (default: the machine's cores)
    parallel: int = knob(os.cpu_count() or 1, "PIPELINE_PARALLEL", parse_int, minimum=1, maximum=64)


# --- what a pipeline is -----------------------------------------------------------------------

PosArgs = Callable[["RunContext"], tuple[str, ...]]


@dataclass(frozen=True)
class Step:
    layer: str
    name: str = ""  # the step's name in the report (default: the layer's)
    posargs: tuple[str, ...] | PosArgs = ()  # passed to the session after `--`
    requires: tuple[str, ...] = ()  # earlier steps that must pass for this one to mean anything
    env: Mapping[str, str] = field(default_factory=dict)
    # runs only where its needs are met: a configuration error (no credentials) makes it "skipped", with why
    optional: bool = False
    estimate_s: float | None = None  # the plan's time for this step when its settings decide it (else the layer's)

    @property
    def label(self) -> str:
        return self.name or self.layer


@dataclass(frozen=True)
class Pipeline:
    name: str
    about: str
    steps: Callable[[PipelineSettings], tuple[Step, ...]]
    target: str = "none"  # none: each session starts its own stack; staging: provisioned; given: --base-url
    needs: tuple[str, ...] = ()
    # steps whose `requires` have finished run side by side (PIPELINE_PARALLEL at a time): only where no two
    # steps share a server, so one step's load can never be another's latency
    concurrent: bool = False


@dataclass
class RunContext:
    pipeline: str
    out_dir: Path
    settings: PipelineSettings
    target: Target | None = None
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # step label -> its entry
    step_note: str | None = None  # how computed arguments were chosen, for the step's report entry
    note_lock: threading.Lock = field(default_factory=threading.Lock)  # step_note is one per context
    # the steps' sessions started so far, and whether the pipeline is stopping (then a late one is stopped too)
    sessions: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stopping: bool = False
    sessions_lock: threading.Lock = field(default_factory=threading.Lock)

    def session_started(self, proc: subprocess.Popen[bytes]) -> None:
        with self.sessions_lock:
            self.sessions.append(proc)
            late = self.stopping
        if late:
            proc.send_signal(signal.SIGTERM)

    def stop_sessions(self) -> None:
        with self.sessions_lock:
            self.stopping = True
            sessions = list(self.sessions)
        stop_child(*sessions)


def _local_steps(_s: PipelineSettings) -> tuple[Step, ...]:
    return (
        Step("lint"), Step("unit"), Step("smoke"),
        Step("integration", requires=("smoke",)), Step("contract", requires=("smoke",)),
    )  # fmt: skip


def _ci_steps(_s: PipelineSettings) -> tuple[Step, ...]:
    return tuple(Step(name) for name in layers.default_names())


def _staging_steps(_s: PipelineSettings) -> tuple[Step, ...]:
    suites = tuple(Step(n, requires=("smoke",) if n != "smoke" else ()) for n in ("smoke", "integration", "contract"))
    # after `--`: the load command's own flags (the executor's --suite load takes them there)
    return (*suites, Step("load", posargs=("--duration", "30s", "--", "--users", "4"), requires=("smoke",)))


def _knee_users(ctx: RunContext) -> tuple[str, ...]:
    """Users at the knee the sweep step found (its load_results.json), for the sustained run.

    A sweep whose throughput was still rising at its top level found no knee: the server carries at
    least that level, so the sustained run holds it there (and the report's note says so)."""
    path = ctx.out_dir / "load_sweep" / "load_results.json"
    try:
        sweep = json.loads(path.read_text())["load_test"]["sweep"]
        knee = sweep["knee"]
        tried = [int(level["users"]) for level in sweep["levels"] if level.get("requests")]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"the sweep left no results in {path}") from None
    if knee.get("users"):
        users = int(knee["users"])
        ctx.step_note = f"at the sweep's knee, {users} users: {knee.get('reason', '')}"
    elif tried:
        users = tried[-1]
        ctx.step_note = f"no knee ({knee.get('reason', '')}): at the sweep's top level, {users} users"
    else:
        raise ConfigError(f"the sweep completed no requests at any level ({path})")
    return ("--users", str(users))


# A load run's own time beyond its shape: the nox session, locust's start and stop, the report (measured here:
# 13 s for the sweep, 7 s per sustained run)
LOAD_RUN_OVERHEAD_S = 10.0


def _load_estimates(s: PipelineSettings) -> tuple[float, float]:
    """Planned seconds of the sweep (its levels x step, at most: it stops at the knee) and of the sustained run."""
    from llmpyramid.load.config import LoadConfig

    sweep = LoadConfig.from_env(shape="sweep")
    sweep_s = sweep.sweep_step * len(sweep.sweep_levels) + LOAD_RUN_OVERHEAD_S
    return sweep_s, s.preprod_sustained + s.preprod_repeat * LOAD_RUN_OVERHEAD_S


def _hybrid_args(router_url: str) -> PosArgs:
    """The hybrid layer against the deployment's router, with the pre-production server as its base."""

    def args(ctx: RunContext) -> tuple[str, ...]:
        base = ("--base-url", ctx.target.base_url) if ctx.target is not None else ()
        return ("--router-url", router_url, *base)

    return args


def _preprod_steps(s: PipelineSettings) -> tuple[Step, ...]:
    gates: tuple[str, ...] = ("--slo-file", str(s.preprod_slo_file))
    if s.preprod_baseline is not None:
        gates += ("--baseline", str(s.preprod_baseline))
    duration = ("--duration", f"{s.preprod_sustained / s.preprod_repeat:g}s")
    gates += ("--repeat", str(s.preprod_repeat))
    gate = ("smoke",)
    sweep_s, sustained_s = _load_estimates(s)
    return (
        Step("smoke"), Step("integration", requires=gate), Step("contract", requires=gate),
        Step("load", name="load_sweep", posargs=("--", "--shape", "sweep"), requires=gate, estimate_s=sweep_s),
        Step("load", name="load_sustained", posargs=lambda ctx: (*duration, "--", *_knee_users(ctx), *gates),
             requires=("load_sweep",), estimate_s=sustained_s),
        *((Step("hybrid", posargs=_hybrid_args(s.preprod_router_url), requires=gate),)
          if s.preprod_router_url else ()),
        *(Step("cloud", name=f"cloud_{cloud}", posargs=("--cloud", cloud), optional=True)
          for cloud in s.preprod_clouds),
    )  # fmt: skip


PIPELINES: dict[str, Pipeline] = {
    p.name: p
    for p in (
        Pipeline("local", "the fast developer loop: lint, unit, smoke, integration, contract", _local_steps,
                 concurrent=True),
        Pipeline("ci", "exactly what plain `nox` runs (the default sessions of the layer table)", _ci_steps),
        Pipeline("staging", "Hetzner Cloud CPX31 VM, provisioned for the run and destroyed after: suites + short load",
                 _staging_steps, target="staging",
                 needs=("HCLOUD_TOKEN and the hcloud terraform provider (else the offline local provisioner)",)),
        Pipeline("preprod", "the dedicated pre-production server: suites, load sweep, sustained run at the knee "
                 "with SLO gates and a regression check, cloud smoke per cloud with credentials",
                 _preprod_steps, target="given", needs=("--base-url of the pre-production server",)),
    )
}  # fmt: skip


def get(name: str) -> Pipeline:
    try:
        return PIPELINES[name]
    except KeyError:
        raise ConfigError(f"unknown pipeline {name!r}; choose one of: {', '.join(PIPELINES)}") from None


# --- the plan (--dry-run) ---------------------------------------------------------------------


def plan(name: str, settings: PipelineSettings | None = None) -> dict[str, Any]:
    """Layers in order, what each needs, estimated time and money, without running anything."""
    settings = settings or PipelineSettings.from_env()
    pipe = get(name)
    steps = []
    total_s = 0
    for step in pipe.steps(settings):
        layer = layers.get(step.layer)
        estimate = round(step.estimate_s if step.estimate_s is not None else layer.estimate_s)
        total_s += estimate
        needs = [n for n in layer.needs if not (pipe.target != "none" and n == layers.EMBEDDED_STACK)]
        posargs = step.posargs if isinstance(step.posargs, tuple) else ("(computed from earlier steps)",)
        steps.append({
            "step": step.label, "layer": layer.name, "checks": layer.checks, "needs": needs,
            "requires": list(step.requires), "cost_class": layer.cost, "estimated_seconds": estimate,
            "command": " ".join(["nox", "-s", layer.name, *(("--", *posargs) if posargs else ())]),
        })  # fmt: skip
    cost = _estimated_cost(pipe, settings, total_s)
    return {
        "pipeline": name, "about": pipe.about, "needs": list(pipe.needs), "steps": steps,
        "estimated_seconds": total_s, "estimated_cost": cost,
    }  # fmt: skip


def _estimated_cost(pipe: Pipeline, settings: PipelineSettings, seconds: float) -> dict[str, Any]:
    if pipe.name == "staging":
        eur = settings.staging_eur_per_hour * seconds / 3600
        return {"eur": round(eur, 4), "basis": f"CPX31 at €{settings.staging_eur_per_hour}/h x estimated time"}
    if pipe.name == "preprod":
        return {
            "eur": settings.preprod_eur_per_run,
            "basis": "dedicated AX42 share per run (PREPROD_EUR_PER_RUN); cloud smoke priced from the SkyPilot "
            "catalog when it runs, only for clouds with credentials",
        }
    return {"eur": 0.0, "basis": "local: free"}


def plan_text(plan: Mapping[str, Any]) -> str:
    lines = [f"pipeline {plan['pipeline']}: {plan['about']}"]
    lines += [f"  needs: {need}" for need in plan["needs"]]
    for i, step in enumerate(plan["steps"], 1):
        after = f"  (only if {', '.join(step['requires'])} passed)" if step["requires"] else ""
        lines.append(f"  {i}. {step['step']}: {step['command']}  ~{step['estimated_seconds']}s, {step['cost_class']}")
        if after:
            lines.append(f"     {after.strip()}")
        lines += [f"       needs {need}" for need in step["needs"]]
    cost = plan["estimated_cost"]
    lines.append(f"  estimated: ~{plan['estimated_seconds'] / 60:.0f} min, €{cost['eur']:.2f} ({cost['basis']})")
    return "\n".join(lines)


def report_text(report: Mapping[str, Any]) -> str:
    lines = [f"pipeline {report['pipeline']}" + (f" against {report['target']}" if report["target"] else "")]
    for step in report["steps"]:
        why = f" -- {step['reason']}" if step.get("reason") else ""
        lines.append(f"  {step['step']:<16} {step['status']:<8} exit {step['exit_code']}  "
                     f"{step['duration_seconds']:7.1f}s  {step['results_file'] or '-'}{why}")  # fmt: skip
    lines.append(
        f"pipeline {report['pipeline']}: exit {report['exit_code']} in {report['duration_seconds']:.0f}s, "
        f"cost €{report['cost']['eur']:.2f}; report: {report['report_file']}"
    )
    return "\n".join(lines)


# --- running ----------------------------------------------------------------------------------


def check_results_dir(settings: PipelineSettings | None = None) -> None:
    settings = settings or PipelineSettings.from_env()
    results.check_writable(settings.results_dir / "pipeline-probe.json")


def run(name: str, *, base_url: str | None = None, notify: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the pipeline; returns its report (also written to results/pipeline-<name>.json)."""
    log = notify or (lambda m: print(m, file=sys.stderr, flush=True))
    settings = PipelineSettings.from_env()
    pipe = get(name)
    if pipe.target == "given" and not (base_url or os.environ.get("BASE_URL")):
        raise ConfigError(f"invoke {name} needs --base-url (or BASE_URL): the server it tests")
    if pipe.target != "given" and base_url:
        raise ConfigError(f"--base-url does not apply to invoke {name}")
    out_dir = settings.results_dir / f"pipeline-{name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(name, out_dir, settings)
    started = time.monotonic()
    report: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "pipeline": name, "target": None, "steps": []}
    provision: dict[str, Any] | None = None
    try:
        with _target_for(pipe, base_url, settings, log) as (target, provision):
            ctx.target = target
            report["target"] = target.display_url if target else None
            steps = pipe.steps(settings)
            if pipe.concurrent and settings.parallel > 1:
                report["steps"] = _run_concurrently(steps, ctx, log, settings.parallel)
            else:
                report["steps"] = [_run_step(step, ctx, log) for step in steps]
    finally:
        report["provision"] = provision
        report["duration_seconds"] = round(time.monotonic() - started, 3)
        report["exit_code"] = int(worst(*(s["exit_code"] for s in report["steps"])))
        report["cost"] = _actual_cost(pipe, settings, report)
        report["report_file"] = str(settings.results_dir / f"pipeline-{name}.json")
    validate(report)
    results.write_results(Path(report["report_file"]), report)
    return report


def _run_concurrently(
    steps: tuple[Step, ...], ctx: RunContext, log: Callable[[str], None], width: int
) -> list[dict[str, Any]]:
    """Start each step once every step it requires has finished, `width` at a time; the report keeps the
    declared order. On Ctrl-C/SIGTERM (taken by this thread) every running session is stopped, bounded."""
    pending = list(steps)
    running: dict[Future[dict[str, Any]], Step] = {}
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="step") as pool:
        try:
            while pending or running:
                ready = [s for s in pending if all(r in ctx.reports for r in s.requires)]
                if not ready and not running:
                    raise ConfigError(f"pipeline {ctx.pipeline}: steps wait on steps it does not have: {pending}")
                for step in ready[: width - len(running)]:
                    pending.remove(step)
                    running[pool.submit(_run_step, step, ctx, log, concurrent=True)] = step
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    future.result()
        except BaseException:
            ctx.stop_sessions()
            raise
    return [ctx.reports[step.label] for step in steps]


def _run_step(step: Step, ctx: RunContext, log: Callable[[str], None], *, concurrent: bool = False) -> dict[str, Any]:
    layer = layers.get(step.layer)
    entry: dict[str, Any] = {"step": step.label, "layer": layer.name, "status": "skipped", "exit_code": 0,
                             "duration_seconds": 0.0, "cost_class": layer.cost, "results_file": None}  # fmt: skip
    failed = [r for r in step.requires if ctx.reports.get(r, {}).get("status") != "passed"]
    if failed:
        entry["reason"] = f"not run: {', '.join(failed)} did not pass, so {step.label} could not mean anything"
        log(f"pipeline {ctx.pipeline}: skip {step.label} ({entry['reason']})")
        ctx.reports[step.label] = entry
        return entry
    step_dir = ctx.out_dir / step.label
    step_dir.mkdir(parents=True, exist_ok=True)
    doc_path = step_dir / layers.STEP_RESULTS_FILE
    doc_path.unlink(missing_ok=True)  # an earlier run's document must not speak for this one
    try:
        with ctx.note_lock:
            ctx.step_note = None
            posargs = step.posargs(ctx) if callable(step.posargs) else step.posargs
            if ctx.step_note:
                entry["note"] = ctx.step_note
    except ConfigError as exc:
        entry.update(status="error", exit_code=int(exc.exit_code), reason=str(exc))
        ctx.reports[step.label] = entry
        return entry
    env = {
        **os.environ, **step.env, layers.REPORT_DIR_ENV: str(step_dir), "LOAD_RESULTS_DIR": str(step_dir),
        **(handoff_env(ctx.target) if ctx.target and layer.target else {}),
    }  # fmt: skip
    argv = [sys.executable, "-m", "nox", "-s", layer.name, *(("--", *posargs) if posargs else ())]
    session_log = step_dir / "session.log"
    log(
        f"pipeline {ctx.pipeline}: {step.label}: {' '.join(argv[2:])}"
        + (f" (log: {session_log})" if concurrent else "")
    )
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        # stdout carries only the report; a step beside others writes its session's output to its own log
        out = stack.enter_context(session_log.open("wb")) if concurrent else sys.stderr
        rc = run_child(argv, env, stdout=out, stderr=out if concurrent else None, started=ctx.session_started)
    elapsed = time.monotonic() - started
    entry.update(duration_seconds=round(elapsed, 3), **step_verdict(results.read_json(doc_path), rc, step.optional))
    entry["results_file"] = str(doc_path) if doc_path.exists() else None
    if concurrent:
        entry["log"] = str(session_log)
    ctx.reports[step.label] = entry
    if rc == INTERRUPTED_EXIT:  # its session was interrupted: no verdict of its own to tell
        log(f"pipeline {ctx.pipeline}: {step.label}: interrupted after {elapsed:.0f}s")
    else:
        log(f"pipeline {ctx.pipeline}: {step.label}: {entry['status']} (exit {entry['exit_code']}) in {elapsed:.0f}s")
    return entry


def step_verdict(doc: Mapping[str, Any] | None, rc: int, optional: bool = False) -> dict[str, Any]:
    """A step's status, exit code and reason, read off the document its layer's executor wrote.

    A skip is never a pass: a step whose every test skipped is "skipped", one with some skipped tests
    says how many and why; an optional step that could not run (exit 3: no credentials) is "skipped"."""
    if doc is None:
        return {"status": "error" if rc else "failed", "exit_code": int(ExitCode.FAILURES),
                "reason": f"the session (exit {rc}) wrote no results document; see its log"}  # fmt: skip
    code = ExitCode(int(doc.get("exit_code", ExitCode.FAILURES if rc else ExitCode.OK)))
    summary = doc.get("summary") or {}
    reasons = "; ".join(
        sorted({t.get("reason", "") for t in doc.get("tests", []) if t.get("status") == "skipped"} - {""})
    )
    if code == ExitCode.CONFIGURATION and optional:
        return {
            "status": "skipped",
            "exit_code": 0,
            "reason": f"skipped: {doc.get('error') or 'its needs are not met'}",
        }
    if code != ExitCode.OK:
        status = "failed" if code == ExitCode.FAILURES else "error"
        return {"status": status, "exit_code": int(code), **({"reason": doc["error"]} if doc.get("error") else {})}
    total, skipped = summary.get("total", 0), summary.get("skipped", 0)
    if total and skipped == total:
        return {"status": "skipped", "exit_code": 0, "reason": "skipped: " + (reasons or "every test was skipped")}
    if skipped:
        return {"status": "passed", "exit_code": 0, "reason": f"passed with {skipped} skipped: {reasons}"}
    return {"status": "passed", "exit_code": 0}


def _actual_cost(pipe: Pipeline, settings: PipelineSettings, report: dict[str, Any]) -> dict[str, Any]:
    provision = report.get("provision") or {}
    if pipe.name == "staging" and provision.get("kind") == "hetzner":
        hours = provision.get("seconds", 0) / 3600
        return {"eur": round(settings.staging_eur_per_hour * hours, 4), "basis": "CPX31 hourly price x measured time"}
    if pipe.name == "staging":
        return {"eur": 0.0, "basis": "offline local provisioner: no VM was billed"}
    cost = _estimated_cost(pipe, settings, report["duration_seconds"])
    if pipe.name == "preprod":
        cloud_steps = [s for s in report["steps"] if s["layer"] == "cloud"]
        cost["cloud_usd"] = round(sum(_cloud_usd(s["results_file"]) for s in cloud_steps), 6)
    return cost


def _cloud_usd(doc_path: str | None) -> float:
    """What a cloud smoke step cost: its teardown test records catalog price x billed time."""
    if doc_path is None:
        return 0.0
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        tests = json.loads(Path(doc_path).read_text())["tests"]
        return float(sum((t.get("metrics") or {}).get("cost_usd") or 0.0 for t in tests))
    return 0.0


# --- targets: given, or provisioned for the run -------------------------------------------------


@contextlib.contextmanager
def _target_for(
    pipe: Pipeline, base_url: str | None, settings: PipelineSettings, log: Callable[[str], None]
) -> Iterator[tuple[Target | None, dict[str, Any] | None]]:
    if pipe.target == "given":
        target = target_from_env(base_url)
        assert target is not None  # checked by run()
        check_reachable(target)  # probed once here; steps are told through handoff_env
        yield target, None
    elif pipe.target == "staging":
        with staging_target(settings, log) as pair:
            yield pair
    else:
        yield None, None


@contextlib.contextmanager
def staging_target(settings: PipelineSettings, log: Callable[[str], None]) -> Iterator[tuple[Target, dict[str, Any]]]:
    """The staging server for one run, destroyed afterwards whatever happens.

    hetzner: `terraform/hetzner` applied in staging mode (CPX31), its cloud-init installs and starts the
    llama.cpp server with the test model; destroyed in `finally`. local (offline): an embedded stack
    in a private temporary directory stands in for the VM: a real process, really started and stopped."""
    kind = settings.staging_provisioner
    if kind == "auto":
        kind = "hetzner" if os.environ.get("HCLOUD_TOKEN") else "local"
    started = time.monotonic()
    info: dict[str, Any] = {"kind": kind}
    if kind == "hetzner":
        from llmpyramid.staging import hetzner_staging  # terraform path: imported only when used

        with hetzner_staging(log) as (target, details):
            info.update(details)
            try:
                yield target, info
            finally:
                info["seconds"] = round(time.monotonic() - started, 3)
        return
    log("staging: offline local provisioner (no HCLOUD_TOKEN): an embedded stack stands in for the CPX31 VM")
    with fresh_stack(notify=log) as (target, stack):
        state = stack.read_state() if stack else None
        info["pid"] = state.pid if state else None
        try:
            yield target, info
        finally:
            info["seconds"] = round(time.monotonic() - started, 3)
            log("staging: tearing down the local stand-in")


# --- the report schema ----------------------------------------------------------------------------


@cache
def schema() -> dict[str, Any]:
    text = resources.files("llmpyramid.schemas").joinpath("pipeline.schema.json").read_text()
    return dict(json.loads(text))


def validate(report: Mapping[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema()).validate(report)
