"""The cloud suite's results: the seed's document (summary, tests) plus a `cloud` block.

    document, code = run_smoke(CloudSettings.from_env(cloud="aws"))
    run_suite(request)    # scripts/run_tests.py --suite cloud --cloud aws|gcp|azure

Every step is a test entry with its duration; the first step that does not pass stops the later ones
(reported skipped, with why). Teardown runs in `finally` — also on Ctrl-C/SIGTERM, which then exit
130 — unless `skip_teardown`, which keeps the cluster and reports the commands to inspect and remove
it. Exit codes: cost guard / credentials / bad settings 3; SkyPilot API, cloud, capacity or an
instance that never becomes reachable 2; instance up but health or inference failing 1.
`/tmp/cloud_smoke_results.json` gets the document with top-level `passed` and `failed` (the seed's
`jq '.passed, .failed'`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmpyramid import results
from llmpyramid.checks.shared import CheckFailed
from llmpyramid.cloud import api_server
from llmpyramid.cloud.settings import CloudSettings
from llmpyramid.cloud.smoke import CloudSmoke
from llmpyramid.errors import ConfigError, ExitCode, PyramidError
from llmpyramid.runs import RunRequest, SuiteRun

SEED_RESULTS_FILE = Path("/tmp/cloud_smoke_results.json")
_SEVERITY = [ExitCode.OK, ExitCode.FAILURES, ExitCode.CONFIGURATION, ExitCode.INFRASTRUCTURE]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _worse(a: ExitCode, b: ExitCode) -> ExitCode:
    return max(a, b, key=_SEVERITY.index)


def _steps(smoke: CloudSmoke, log: Callable[[str], None]) -> list[tuple[str, Callable[[], Any]]]:
    from llmpyramid.cloud.sweeper import sweep

    s = smoke.settings

    def sweep_stale() -> Any:  # a run may never end (SIGKILL): a later one removes what it left once expired
        return sweep(s.cloud, run_id=smoke.run_id, timeout=s.teardown_timeout, log=log,
                     regions=[s.region_name]).as_dict()  # fmt: skip

    return [
        ("cloud_credentials", smoke.check_credentials),
        ("stale_clusters_swept", sweep_stale),
        ("spot_launch", smoke.launch),
        ("instance_healthy", smoke.wait_healthy),
        ("completion", lambda: smoke.inference("completion")),
        ("chat_completion", lambda: smoke.inference("chat")),
    ]


def run_smoke(
    settings: CloudSettings,
    *,
    skip_teardown: bool = False,
    log: Callable[[str], None] = _log,
    smoke: CloudSmoke | None = None,
) -> tuple[dict[str, Any], ExitCode]:
    smoke = smoke or CloudSmoke(settings, log=log)
    tests: list[dict[str, Any]] = []
    code, error, stopped_at = ExitCode.OK, None, None
    notes: list[str] = []
    started = time.monotonic()
    with api_server.scope(settings.run_dir):
        try:
            est = smoke.guard_cost()
            notes.append(f"cost estimate: {est.describe()}")
            for name, step in _steps(smoke, log):
                if stopped_at:
                    tests.append(results.test_entry(name, "skipped", 0.0, reason=f"not run: {stopped_at} did not pass"))
                    continue
                t0 = time.monotonic()
                try:
                    outcome = step()
                    metrics = outcome if isinstance(outcome, dict) and name != "stale_clusters_swept" else None
                    tests.append(results.test_entry(name, "passed", time.monotonic() - t0, metrics=metrics))
                except CheckFailed as exc:
                    tests.append(results.test_entry(name, "failed", time.monotonic() - t0, error=str(exc)))
                    code, stopped_at = _worse(code, ExitCode.FAILURES), name
                except PyramidError as exc:
                    tests.append(results.test_entry(name, "error", time.monotonic() - t0, error=str(exc)))
                    code, stopped_at, error = _worse(code, exc.exit_code), name, str(exc)
        except PyramidError as exc:  # before any step: settings, catalog, cost guard
            code, error = _worse(code, exc.exit_code), str(exc)
        finally:
            tests.append(_teardown(smoke, skip_teardown, log))
    if tests[-1]["status"] == "error":
        code = _worse(code, ExitCode.INFRASTRUCTURE)
        error = error or tests[-1].get("error")
    if skip_teardown and smoke.launched:
        notes.append("cluster kept (--skip-teardown): " + "; ".join(smoke.inspect_commands()))
    doc = results.build_document(
        tests,
        time.monotonic() - started,
        suite="cloud",
        target=smoke.base_url,
        exit_code=code,
        error=error,
        notes=notes,
    )
    doc["cloud"] = smoke.cloud_block()
    doc["passed"], doc["failed"] = doc["summary"]["passed"], doc["summary"]["failed"]
    return doc, code


def _teardown(smoke: CloudSmoke, skip_teardown: bool, log: Callable[[str], None]) -> dict[str, Any]:
    if skip_teardown and smoke.launched:
        commands = smoke.inspect_commands()
        log("kept the cluster (--skip-teardown). Inspect and remove it with:\n  " + "\n  ".join(commands))
        return results.test_entry("teardown", "skipped", 0.0, reason="--skip-teardown: " + "; ".join(commands))
    if not smoke.launched:
        return results.test_entry("teardown", "skipped", 0.0, reason="nothing was launched")
    t0 = time.monotonic()
    try:
        smoke.teardown()
    except PyramidError as exc:
        return results.test_entry("teardown", "error", time.monotonic() - t0, error=f"LEAK RISK: {exc}")
    return results.test_entry("teardown", "passed", time.monotonic() - t0)


def write_seed_results(document: dict[str, Any], path: Path | None = None) -> None:
    (path or SEED_RESULTS_FILE).write_text(json.dumps(document, indent=2) + "\n")


def run_suite(request: RunRequest) -> SuiteRun:
    """`scripts/run_tests.py --suite cloud --cloud X [--duration S]`: --duration bounds the health wait."""
    if not request.cloud:
        raise ConfigError("--suite cloud needs --cloud aws|gcp|azure (it launches a real spot instance)")
    settings = CloudSettings.from_env(cloud=request.cloud, health_timeout=request.duration)
    document, code = run_smoke(settings, log=request.log)
    write_seed_results(document)
    return SuiteRun(document, code)
