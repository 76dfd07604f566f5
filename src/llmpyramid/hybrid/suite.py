"""`scripts/run_tests.py --suite hybrid`: the scenarios as a results document with a `hybrid` block.

    run_suite(RunRequest(suite="hybrid", target=None, options={"router_url": ..., "base_url": ..., ...}))

Options (all optional; None = not given, the HYBRID_* environment variable applies): router, router_url,
base_url, burst_url, base_stop_cmd, base_start_cmd, burst_stop_cmd. Without router_url the reference
topology is built on loopback and torn down afterwards. Unreachable router/backends raise
InfrastructureError naming which (exit 2); bad settings ConfigError (exit 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from llmpyramid import layers, results
from llmpyramid.config import redact_url
from llmpyramid.errors import ExitCode
from llmpyramid.hybrid.config import FAULT_PROXY_SCENARIOS, HybridSettings
from llmpyramid.hybrid.cost import cost_per_slo_request
from llmpyramid.hybrid.report import PLOT_FILE, SAMPLES_FILE, flat_metrics, plot_timeline, scenario_block, write_samples
from llmpyramid.hybrid.router import litellm_version
from llmpyramid.hybrid.scenarios import ScenarioResult, declarations, ensure_up, run_scenario
from llmpyramid.hybrid.topology import ROUTER_LOG_FILE, Topology, external_topology, reference_topology
from llmpyramid.runs import RunRequest, SuiteRun

OPTION_NAMES = ("router", "router_url", "base_url", "burst_url", "base_stop_cmd", "base_start_cmd", "burst_stop_cmd")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def settings_from(options: Mapping[str, Any] | None, layer: str = "hybrid") -> HybridSettings:
    """Flags over the environment over the layer's defaults (hybrid_haproxy: HYBRID_ROUTER=haproxy)."""
    given = {k: v for k, v in (options or {}).items() if v is not None}
    return HybridSettings.from_env(layers.get(layer).environ(os.environ), **given)


@contextlib.contextmanager
def topology(settings: HybridSettings, notify: Callable[[str], None]) -> Iterator[Topology]:
    if settings.reference:
        if settings.router_kind == "litellm":
            litellm_version()  # refuse a missing or compromised router before starting anything
        with reference_topology(settings, notify) as topo:
            yield topo
    else:
        with external_topology(settings) as topo:
            yield topo


async def _scenarios(topo: Topology, settings: HybridSettings, notify: Callable[[str], None]) -> list[ScenarioResult]:
    out = []
    for key in settings.scenarios:
        if key in ("e", *FAULT_PROXY_SCENARIOS):  # (d expects base down: c killed it, d restores it)
            await ensure_up(topo, notify)
        out.append(await run_scenario(key, topo, settings, notify))
    return out


def run_hybrid(
    settings: HybridSettings, notify: Callable[[str], None] = _stderr, *, suite: str = "hybrid"
) -> tuple[dict[str, Any], ExitCode]:
    """Build (or reach) the topology, run the scenarios, return (results document, exit code)."""
    started = time.monotonic()
    t0 = time.time()
    router_usage: dict[str, Any] = {}
    with topology(settings, notify) as topo:
        topo_slots = {name: b.slots for name, b in topo.backends.items()}
        scenario_results = asyncio.run(_scenarios(topo, settings, notify))
        if topo.router is not None:
            topo.router.sample()
            router_usage = {"router": topo.router.label, "router_cpu_seconds": topo.router.cpu_seconds(),
                            "router_peak_rss_bytes": topo.router.peak_rss or None,
                            "router_off_loopback_connections": sorted(topo.router.foreign)}  # fmt: skip
        described = {
            "reference": settings.reference,
            "router_url": redact_url(topo.router_url),
            "base_url": topo.base.url and redact_url(topo.base.url),
            "burst_url": topo.burst.url and redact_url(topo.burst.url),
            "base_capacity": topo.base.slots,
            "router_kind": settings.router_kind if settings.reference else None,
            "router_config": str(settings.router_config_path) if settings.reference else None,
            "attribution_header": settings.attribution_header,
            "declared_deviations": declarations(settings),
        }
    wall = time.monotonic() - started
    blocks = [scenario_block(r, t0) for r in scenario_results]
    tests = [
        results.test_entry(b["name"], r.status, r.duration, error=r.error, reason=r.reason, metrics=flat_metrics(b))
        for r, b in zip(scenario_results, blocks, strict=True)
    ]
    notes: list[str] = []
    artifacts: dict[str, str] = {}
    out = settings.results_dir
    try:
        write_samples(out / SAMPLES_FILE, scenario_results)
        artifacts["samples"] = str(out / SAMPLES_FILE)
        artifacts["plot"] = str(plot_timeline(out / PLOT_FILE, scenario_results, t0))
    except (OSError, ImportError, ValueError) as exc:  # a report must never hide the verdict
        notes.append(f"hybrid artifacts not written: {type(exc).__name__}: {exc}")
    if settings.reference and (out / ROUTER_LOG_FILE).is_file():
        artifacts["router_log"] = str(out / ROUTER_LOG_FILE)
    code = ExitCode.FAILURES if any(r.status == "failed" for r in scenario_results) else ExitCode.OK
    target = None if settings.reference else redact_url(topo.router_url)  # null: the run built its own
    doc = results.build_document(tests, wall, suite=suite, target=target, exit_code=code, notes=notes or None)
    doc["hybrid"] = {
        "topology": described,
        **router_usage,
        "wall_seconds": round(wall, 2),
        "scenarios": {b["name"]: b for b in blocks},
        "cost_per_slo_request": cost_per_slo_request(scenario_results, topo_slots, settings),
        "artifacts": artifacts,
    }
    return doc, code


def run_suite(req: RunRequest) -> SuiteRun:
    """The `--suite hybrid` entry point: RunRequest -> SuiteRun (options carry the router flags)."""
    settings = settings_from(req.options, req.suite)
    doc, code = run_hybrid(settings, req.log, suite=req.suite)
    return SuiteRun(doc, code)
