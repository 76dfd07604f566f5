"""The five scenarios of the hybrid layer, each with measured counts, phases and a verdict.

    a  below base capacity          -> every request served by base
    b  above base capacity          -> overflow served by burst (a router that never uses burst fails here)
    c  base SIGKILLed mid-load      -> requests lost (in flight, new), broken streams, time to first burst success
    d  base restored                -> time until traffic returns to base
    e  burst lost absorbing overflow -> degradation counted, base keeps serving, nothing hangs

Faults are injected at measured points (base has streams in flight, burst is absorbing overflow),
never after a fixed sleep. Gates are on counts the run measured; waits are bounded by generous
timeouts and a run with too few samples is "inconclusive" (a failure, never a pass).

Phases of a faulted scenario: `before` = requests that ended before the fault, `after` = requests
that started after recovery (the first success on the backend expected to take over), `during` =
everything in between (including requests in flight when the fault hit).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmpyramid.hybrid.config import HybridSettings
from llmpyramid.hybrid.driver import LoadDriver, Outcome
from llmpyramid.hybrid.topology import Backend, Topology
from llmpyramid.load.metrics import summarize

POLL_S = 0.05
NAMES = {
    "a": "a_below_base_capacity",
    "b": "b_overflow_to_burst",
    "c": "c_base_killed",
    "d": "d_base_restored",
    "e": "e_burst_lost_during_overflow",
}


class Inconclusive(Exception):
    """The run could not measure what the gate needs (too few samples, a precondition never met)."""


class GateFailed(Exception):
    """The measured behaviour contradicts the scenario's promise."""


@dataclass
class ScenarioResult:
    key: str
    status: str  # passed | failed | skipped
    duration: float
    users: int = 0
    error: str | None = None
    reason: str | None = None  # why it was skipped
    events: dict[str, float] = field(default_factory=dict)  # epoch seconds: fault, restored, recovered
    outcomes: list[Outcome] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # scenario-specific measurements

    @property
    def name(self) -> str:
        return NAMES[self.key]


def phase_stats(outcomes: list[Outcome]) -> dict[str, Any]:
    """Counts, per-backend attribution and percentiles of one phase."""
    samples = [o.sample for o in outcomes]
    s = summarize(samples) if samples else {}
    served = [o for o in outcomes if o.ok]
    by_backend: dict[str, int] = {}
    for o in served:
        key = o.backend or "unattributed"
        by_backend[key] = by_backend.get(key, 0) + 1
    return {
        "issued": len(outcomes),
        "served": len(served),
        "lost": len(outcomes) - len(served),
        "broken_streams": sum(1 for o in outcomes if o.broken),
        "timed_out": sum(1 for o in outcomes if o.timed_out),
        "served_by": by_backend,
        "ttft_p50_ms": s.get("ttft_p50_ms"),
        "ttft_p95_ms": s.get("ttft_p95_ms"),
        "latency_p50_ms": s.get("p50_latency_ms"),
        "latency_p95_ms": s.get("p95_latency_ms"),
        "errors": s.get("errors") or {},
    }


def split_phases(outcomes: list[Outcome], fault: float | None, recovered: float | None) -> dict[str, list[Outcome]]:
    if fault is None:
        return {"steady": list(outcomes)}
    before = [o for o in outcomes if o.end < fault]
    after = [o for o in outcomes if recovered is not None and o.start >= recovered]
    during = [o for o in outcomes if o not in before and o not in after]
    return {"before": before, "during": during, "after": after}


class Scenario:
    """One load run through the router with a fault-injection script."""

    def __init__(self, key: str, topo: Topology, settings: HybridSettings, notify: Callable[[str], None]) -> None:
        self.key = key
        self.topo = topo
        self.settings = settings
        self.notify = notify
        names = {settings.base_id: "base", settings.burst_id: "burst"}
        self.driver = LoadDriver(topo.router_url, topo.api_key, topo.model, settings.max_tokens,
                                 settings.request_timeout, settings.backend_header, names)  # fmt: skip
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.deadline = time.monotonic() + settings.scenario_timeout
        self.events: dict[str, float] = {}

    @property
    def outcomes(self) -> list[Outcome]:
        return self.driver.outcomes

    def start(self, users: int) -> None:
        self.users = users
        self.task = asyncio.create_task(self.driver.run(users, self.stop))

    async def wait_for(self, what: str, cond: Callable[[], bool], *, promised: bool = False) -> None:
        """Poll until `cond()`. Past the scenario timeout the run is inconclusive, or failed when `what`
        is the behaviour the scenario promises (failover, fail-back)."""
        while not cond():
            if self.task is not None and self.task.done():
                self.task.result()  # a crash in the driver surfaces here
            if self.topo.router is not None:
                self.topo.router.sample()
            if time.monotonic() > self.deadline:
                error = GateFailed if promised else Inconclusive
                raise error(
                    f"{what} did not happen within {self.settings.scenario_timeout:g}s (HYBRID_SCENARIO_TIMEOUT)"
                )
            await asyncio.sleep(POLL_S)

    async def wait_healthy(self, backend: Backend) -> None:
        """Until the backend's /health says 200 (no URL: trust the restore action)."""
        while backend.url is not None and not await asyncio.to_thread(backend.healthy):
            if time.monotonic() > self.deadline:
                raise Inconclusive(f"{backend.name} did not report healthy after it was restored")
            await asyncio.sleep(0.2)

    async def finish(self) -> None:
        """Stop issuing; every request in flight ends (success, failure or the client timeout)."""
        self.stop.set()
        if self.task is not None:
            await self.task

    def count(self, *, backend: str | None = None, ok: bool = True, since: float | None = None,
              ended_after: float | None = None) -> int:  # fmt: skip
        return sum(
            1
            for o in self.outcomes
            if o.ok == ok
            and (backend is None or o.backend == backend)
            and (since is None or o.start >= since)
            and (ended_after is None or o.end >= ended_after)
        )

    def ended_since(self, t: float) -> int:
        """Requests that started at or after `t` and have ended (success or failure)."""
        return sum(1 for o in self.outcomes if o.start >= t)

    def first_success(self, backend: str, *, since: float | None = None, ended_after: float | None = None) -> float:
        ends = [o.end for o in self.outcomes if o.ok and o.backend == backend
                and (since is None or o.start >= since) and (ended_after is None or o.end >= ended_after)]  # fmt: skip
        return min(ends) if ends else math.inf

    async def fault(self, name: str, action: Callable[[], None]) -> float:
        """Run a fault/restore action without stalling the load; returns when it was triggered."""
        at = time.time()
        self.events[name] = at
        self.notify(f"{NAMES[self.key]}: {name} ({len(self.driver.in_flight)} requests in flight)")
        await asyncio.to_thread(action)
        return at


def base_capacity(topo: Topology) -> int:
    if topo.base.slots is None:
        raise Inconclusive(
            "base capacity unknown: give HYBRID_BASE_URL (its /props says total_slots) or HYBRID_BASE_CAPACITY"
        )
    return topo.base.slots


def overload_users(topo: Topology, settings: HybridSettings) -> int:
    return max(base_capacity(topo) + 1, math.ceil(base_capacity(topo) * settings.overload_factor))


async def scenario_a(sc: Scenario) -> dict[str, Any]:
    capacity = base_capacity(sc.topo)
    sc.start(max(1, capacity - 1))
    await sc.wait_for(f"{sc.settings.requests} completed requests", lambda: len(sc.outcomes) >= sc.settings.requests)
    await sc.finish()
    done = sc.outcomes
    failed = [o for o in done if not o.ok]
    if failed:
        raise GateFailed(f"{len(failed)} of {len(done)} requests failed below base capacity: {failed[0].sample.error}")
    elsewhere = [o for o in done if o.backend != "base"]
    if elsewhere:
        where = sorted({str(o.backend) for o in elsewhere})
        raise GateFailed(
            f"{len(elsewhere)} of {len(done)} requests were served by {', '.join(where)}, not base, with "
            f"{sc.users} concurrent users below base capacity {capacity}"
        )
    return {"base_capacity": capacity}


async def scenario_b(sc: Scenario) -> dict[str, Any]:
    capacity = base_capacity(sc.topo)
    sc.start(overload_users(sc.topo, sc.settings))
    await sc.wait_for(f"{sc.settings.requests} completed requests", lambda: len(sc.outcomes) >= sc.settings.requests)
    await sc.finish()
    done = sc.outcomes
    burst = sum(1 for o in done if o.ok and o.backend == "burst")
    base = sum(1 for o in done if o.ok and o.backend == "base")
    if burst == 0:
        raise GateFailed(
            f"the router never sent traffic to burst under overload: 0 of {len(done)} requests served by burst with "
            f"{sc.users} concurrent users > base capacity {capacity} (is burst in the model group, after base, and "
            "does base's deployment cap its concurrency at its slots?)"
        )
    if base == 0:
        raise GateFailed(f"base served none of {len(done)} requests under overload: base is not the first choice")
    failed = [o for o in done if not o.ok]
    if failed:
        raise GateFailed(f"{len(failed)} of {len(done)} requests failed while overflowing: {failed[0].sample.error}")
    ttft_p95 = phase_stats(done)["ttft_p95_ms"]
    if ttft_p95 is not None and ttft_p95 > sc.settings.ttft_p95_ms:
        raise GateFailed(f"TTFT p95 {ttft_p95:.0f}ms > gate {sc.settings.ttft_p95_ms:.0f}ms (HYBRID_TTFT_P95_MS)")
    return {"base_capacity": capacity, "ttft_p95_gate_ms": sc.settings.ttft_p95_ms}


def _require_samples(sc: Scenario, phase: str, outcomes: list[Outcome]) -> None:
    if len(outcomes) < sc.settings.min_samples:
        raise Inconclusive(f"only {len(outcomes)} requests in the {phase} phase (need {sc.settings.min_samples})")


async def _kill_and_recover(sc: Scenario, victim: Backend, survivor: str) -> tuple[float, float]:
    """Kill `victim` while it streams; wait for the first success on `survivor` that ended after the kill."""
    assert victim.kill is not None
    need_before = max(1, sc.settings.min_samples // 2)
    await sc.wait_for(
        f"{need_before} successes on {victim.name} and a {victim.name} stream in flight",
        lambda: sc.count(backend=victim.name) >= need_before and sc.driver.in_flight_on(victim.name) > 0,
    )
    fault = await sc.fault(f"{victim.name} killed", victim.kill)
    await sc.wait_for(f"a success on {survivor} after {victim.name} was killed",
                      lambda: sc.first_success(survivor, ended_after=fault) < math.inf, promised=True)  # fmt: skip
    recovered = sc.first_success(survivor, ended_after=fault)
    sc.events[f"first {survivor} success"] = recovered
    return fault, recovered


def _loss(sc: Scenario, fault: float) -> dict[str, Any]:
    in_flight = [o for o in sc.outcomes if o.start < fault <= o.end]
    new = [o for o in sc.outcomes if o.start >= fault]
    return {
        "in_flight_at_fault": len(in_flight),
        "lost_in_flight": sum(1 for o in in_flight if not o.ok),
        "lost_new": sum(1 for o in new if not o.ok),
        "broken_streams": sum(1 for o in sc.outcomes if o.broken and o.end >= fault),
        "hung": sum(1 for o in sc.outcomes if o.timed_out),
    }


async def scenario_c(sc: Scenario) -> dict[str, Any]:
    capacity = base_capacity(sc.topo)
    sc.start(capacity)  # exactly fills base: before the fault everything runs there
    fault, recovered = await _kill_and_recover(sc, sc.topo.base, "burst")
    await sc.wait_for(f"{sc.settings.requests} requests after failover",
                      lambda: sc.ended_since(recovered) >= sc.settings.requests)  # fmt: skip
    await sc.finish()
    loss = _loss(sc, fault)
    after = [o for o in sc.outcomes if o.start >= recovered]
    _require_samples(sc, "after", after)
    if loss["hung"]:
        raise GateFailed(f"{loss['hung']} requests hung until the client timeout after base was killed")
    failed_after = [o for o in after if not o.ok]
    if failed_after:
        raise GateFailed(
            f"{len(failed_after)} of {len(after)} requests still failed after the first burst success: "
            f"{failed_after[0].sample.error}"
        )
    return {**loss, "time_to_first_burst_success_s": round(recovered - fault, 3)}


async def scenario_d(sc: Scenario) -> dict[str, Any]:
    base = sc.topo.base
    assert base.restore is not None
    capacity = base_capacity(sc.topo)
    sc.start(capacity)
    await sc.wait_for("a success on burst while base is down", lambda: sc.count(backend="burst") >= 1)
    restore_started = await sc.fault("base restore started", base.restore)
    await sc.wait_healthy(base)  # a local restore returns healthy; a user's start command may return sooner
    restored = sc.events["base restored"] = time.time()
    await sc.wait_for("traffic returning to base after it was restored",
                      lambda: sc.first_success("base", since=restore_started) < math.inf, promised=True)  # fmt: skip
    back = sc.events["first base success"] = sc.first_success("base", since=restore_started)
    # Traffic is back when the router sends a request to base: the start of the first one base served.
    routed = min(o.start for o in sc.outcomes if o.ok and o.backend == "base" and o.start >= restore_started)
    await sc.wait_for(f"{sc.settings.requests} requests after fail-back",
                      lambda: sc.ended_since(back) >= sc.settings.requests)  # fmt: skip
    await sc.finish()
    after = [o for o in sc.outcomes if o.start >= back]
    _require_samples(sc, "after", after)
    failed = [o for o in sc.outcomes if not o.ok]
    if failed:
        raise GateFailed(f"{len(failed)} requests failed while base came back: {failed[0].sample.error}")
    return {
        "restore_seconds": round(restored - restore_started, 3),
        "time_to_fail_back_s": round(max(routed - restored, 0.0), 3),
        "time_to_first_base_success_s": round(back - restored, 3),
        "after_on_base": sum(1 for o in after if o.backend == "base"),
    }


async def scenario_e(sc: Scenario) -> dict[str, Any]:
    sc.start(overload_users(sc.topo, sc.settings))
    fault, _first_base = await _kill_and_recover(sc, sc.topo.burst, "base")
    await sc.wait_for(f"{sc.settings.requests} requests after burst was lost",
                      lambda: sc.ended_since(fault) >= sc.settings.requests)  # fmt: skip
    await sc.finish()  # returns only when every request has ended: nothing hangs
    loss = _loss(sc, fault)
    after = [o for o in sc.outcomes if o.start >= fault]
    _require_samples(sc, "after", after)
    if loss["hung"]:
        raise GateFailed(f"{loss['hung']} requests hung until the client timeout after burst was lost")
    base_after = sum(1 for o in after if o.ok and o.backend == "base")
    if base_after == 0:
        raise GateFailed(f"base served none of {len(after)} requests after burst was lost")
    return {**loss, "degraded_failures": sum(1 for o in after if not o.ok),
            "base_served_after_fault": base_after}  # fmt: skip


SCRIPTS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d, "e": scenario_e}


def skip_reason(key: str, topo: Topology) -> str | None:
    if key in ("c", "d") and (topo.base.kill is None or topo.base.restore is None):
        return "no way to stop and restart base: give --base-stop-cmd and --base-start-cmd"
    if key == "e" and topo.burst.kill is None:
        return "no way to stop burst: give HYBRID_BURST_STOP_CMD"
    return None


async def run_scenario(
    key: str, topo: Topology, settings: HybridSettings, notify: Callable[[str], None]
) -> ScenarioResult:
    started = time.monotonic()
    reason = skip_reason(key, topo)
    if reason:
        return ScenarioResult(key, "skipped", 0.0, reason=reason)
    sc = Scenario(key, topo, settings, notify)
    status, error, extra = "passed", None, {}
    try:
        extra = await SCRIPTS[key](sc)
    except Inconclusive as exc:
        status, error = "failed", f"inconclusive: {exc}"
    except GateFailed as exc:
        status, error = "failed", str(exc)
    finally:
        sc.stop.set()
        if sc.task is not None and not sc.task.done():
            await sc.task
    result = ScenarioResult(key, status, time.monotonic() - started, getattr(sc, "users", 0), error=error,
                            events=dict(sc.events), outcomes=list(sc.outcomes), extra=extra)  # fmt: skip
    notify(f"{result.name}: {status}" + (f" ({error})" if error else "") + f" in {result.duration:.1f}s")
    return result


async def ensure_base_up(topo: Topology, notify: Callable[[str], None]) -> None:
    """Before e: base must be serving again (d restores it; if d did not run to the end, restore it here)."""
    if topo.base.healthy() is False and topo.base.restore is not None:
        notify("base is down before scenario e: restoring it")
        await asyncio.to_thread(topo.base.restore)
