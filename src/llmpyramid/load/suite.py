"""`scripts/run_tests.py --suite load --duration N [-- LOAD FLAGS]` (and `nox -s load`, a pipeline's load
step): a load run as a results document.

After `--` come the load command line's own flags (`python -m llmpyramid.load --help`: --users,
--shape, --slo-file, --baseline, ...); the layer's defaults (llmpyramid.layers) sit under the
environment, which sits under flags.

The seed's `load_test` block comes from run_repeated() (one run unless --repeat / LOAD_REPEAT: then the
means); each SLO gate (and the baseline comparison, when LOAD_BASELINE is set) becomes one entry in
`tests`, so a violation reads like the seed's
example: "p95 latency 350ms > threshold 200ms".
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from llmpyramid import layers, results
from llmpyramid.config import Settings, knob, parse_float, parse_int, parse_path
from llmpyramid.errors import ConfigError, ExitCode
from llmpyramid.load.cli import build_parser, config_from_args
from llmpyramid.load.config import SLO_FIELDS
from llmpyramid.load.repeat import run_repeated
from llmpyramid.runs import RunRequest, SuiteRun

SEED_KEYS = ("requests_per_second", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "ttft_p50_ms",
             "ttft_p95_ms", "itl_p50_ms", "itl_p95_ms", "output_tokens_per_second", "error_rate")  # fmt: skip


@dataclass(frozen=True)
class LoadSuiteSettings(Settings):
    """What the suite takes beyond LoadConfig: locust worker processes and a baseline to compare with."""

    section: ClassVar[str] = "load suite setting"
    workers: int = knob(0, "LOAD_WORKERS", parse_int, minimum=0, maximum=64)
    baseline: Path | None = knob(None, "LOAD_BASELINE", parse_path)
    tolerance: float = knob(0.10, "LOAD_BASELINE_TOLERANCE", parse_float, minimum=0, maximum=10)


# Flags that belong to run_tests.py itself (before --): the target is resolved once, by the front door.
FRONT_DOOR_FLAGS = {"base_url": "--base-url", "output": "--output"}


def run_suite(req: RunRequest) -> SuiteRun:
    args = build_parser("run_tests.py --suite load --").parse_args(list(req.layer_args))
    for name, flag in FRONT_DOOR_FLAGS.items():
        if getattr(args, name) not in (None, "text"):
            raise ConfigError(f"give {flag} before --: run_tests.py --suite load {flag} ... -- [load flags]")
    if req.duration:
        args.duration = f"{req.duration:g}"
    environ = layers.get("load").environ(os.environ)
    config = config_from_args(args, environ)
    suite = LoadSuiteSettings.from_env(environ, workers=args.workers, baseline=args.baseline, tolerance=args.tolerance)
    started = time.monotonic()
    run = run_repeated(config, req.target, workers=suite.workers, baseline=suite.baseline, tolerance=suite.tolerance,
                   notify=req.log)  # fmt: skip
    elapsed = time.monotonic() - started
    lt = run.load_test
    metrics = {k: lt.get(k) for k in SEED_KEYS}
    tests = []
    for name, threshold in config.slo.active().items():
        key, _kind, label, _unit = SLO_FIELDS[name]
        failed = [f for f in run.findings if f.startswith(label)]
        tests.append(results.test_entry(
            f"load_slo_{name}", "failed" if failed else "passed", elapsed,
            error=failed[0] if failed else None, metrics={key: lt.get(key), "threshold": threshold},
        ))  # fmt: skip
    if suite.baseline:
        regressions = [f for f in run.findings if f.startswith(("baseline regression", "inconclusive: "))]
        tests.append(results.test_entry(
            "load_baseline", "failed" if regressions else "passed", elapsed,
            error="; ".join(regressions) or None, metrics={"tolerance": suite.tolerance},
        ))  # fmt: skip
    other = [f for f in run.findings if not any(t.get("error") and f in t["error"] for t in tests)]
    tests.append(results.test_entry(
        "load_run", "failed" if other else "passed", elapsed, error="; ".join(other) or None, metrics=metrics,
    ))  # fmt: skip
    code = ExitCode(run.exit_code)
    doc = results.build_document(
        tests, elapsed, suite="load", target=lt.get("target"), exit_code=code, load_test=_schema_safe(lt),
        findings=[{"message": f} for f in run.findings],
        notes=[f"verdict: {run.verdict}", "reports: " + ", ".join(
            str(run.artifacts.get(k)) for k in ("results", "html", "llm_report") if run.artifacts.get(k))],
    )  # fmt: skip
    return SuiteRun(doc, code)


def _schema_safe(lt: dict[str, Any]) -> dict[str, Any]:
    out = dict(lt)
    if out.get("error_rate") is None:  # nothing was sent at all
        out["error_rate"] = 1.0
    return out
