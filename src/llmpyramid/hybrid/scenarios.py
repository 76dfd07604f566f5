"""The scenarios of the hybrid layer, each with measured counts, phases and a verdict.

    a  below base capacity          -> every request served by base
    b  above base capacity          -> overflow served by burst (a router that never uses burst fails here)
    c  base SIGKILLed mid-load      -> requests lost (in flight, new), broken streams, time to first burst
                                       success, first failure, failure window, time until p95 TTFT is back
    d  base restored                -> time until traffic returns to base (against the router's cooldown)
    e  burst lost absorbing overflow -> degradation counted, base keeps serving, nothing hangs
    f  base fails before the first token -> the router serves the request on burst: no loss
    g  base dies mid-stream         -> the client gets an error (SSE error event, non-2xx or a broken
                                       connection), never a clean [DONE] / end of body after a cut answer
    h  base degraded (slow TTFT)    -> burst takes the load within the TTFT SLO, or the verdict says the
                                       router keeps waiting on base

The failover contract (f, g; and g's rule in every scenario) holds for any router. What a reference
router is known not to do is declared in DECLARED_DEVIATIONS (a user's router: HYBRID_KNOWN_DEVIATIONS):
a declared scenario that fails is "xfailed"; one that passes is "xpassed", reported as doing better.

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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmpyramid.hybrid.config import FAULT_PROXY_SCENARIOS, HybridSettings
from llmpyramid.hybrid.driver import LoadDriver, Outcome
from llmpyramid.hybrid.faultproxy import FaultProxy
from llmpyramid.hybrid.topology import Backend, Topology
from llmpyramid.load.metrics import percentile, summarize

POLL_S = 0.05
NAMES = {
    "a": "a_below_base_capacity",
    "b": "b_overflow_to_burst",
    "c": "c_base_killed",
    "d": "d_base_restored",
    "e": "e_burst_lost_during_overflow",
    "f": "f_base_fails_before_first_token",
    "g": "g_base_dies_mid_stream",
    "h": "h_base_degraded",
}
# The fault each scenario injects, as named on its events and the timeline plot.
FAULTS = {"c": "base killed", "e": "burst killed", "f": "base fails before the first token",
          "g": "base dies mid-stream", "h": "base degraded"}  # fmt: skip
# What each reference router is known not to do, measured with the files in router/ (the contract suite's
# "known deviations", for routers): scenario key -> why.
DECLARED_DEVIATIONS: dict[str, dict[str, str]] = {
    "litellm": {
        "h": "routes by deployment order, not latency: a slow base keeps `order: 1` and its share of the load",
    },
    "haproxy": {
        "h": "`balance first` fills base up to its maxconn however slow its answers are (no latency-aware choice)",
    },
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
                                 settings.request_timeout, settings.attribution_header, names)  # fmt: skip
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


def ttft_p95_counting_failures(outcomes: list[Outcome]) -> float | None:
    """p95 TTFT where a failed request counts as an infinite TTFT (nearest rank: no interpolation with inf)."""
    ttfts = [o.sample.ttft_ms if o.ok and o.sample.ttft_ms is not None else math.inf for o in outcomes]
    return percentile(ttfts, 95, method="inverted_cdf")


def back_within_slo(outcomes: list[Outcome], since: float, slo_ms: float, window: int) -> float | None:
    """Seconds from `since` until the rolling p95 TTFT of the last `window` requests (by end time; a failure
    counts as an infinite TTFT) is back within `slo_ms`; None if it never is in this run."""
    ended = sorted((o for o in outcomes if o.end >= since), key=lambda o: o.end)
    for i in range(window, len(ended) + 1):
        p95 = ttft_p95_counting_failures(ended[i - window : i])
        if p95 is not None and p95 <= slo_ms:
            return round(ended[i - 1].end - since, 3)
    return None


def _loss(sc: Scenario, fault: float) -> dict[str, Any]:
    """What operators ask of a fault: in-flight vs. post-fault losses, first failure, failure window, time
    until the rolling p95 TTFT is back within the SLO."""
    in_flight = [o for o in sc.outcomes if o.start < fault <= o.end]
    new = [o for o in sc.outcomes if o.start >= fault]
    failed_ends = sorted(o.end for o in sc.outcomes if not o.ok and o.end >= fault)
    window = max(2, sc.settings.min_samples)
    return {
        "in_flight_at_fault": len(in_flight),
        "lost_in_flight": sum(1 for o in in_flight if not o.ok),
        "lost_new": sum(1 for o in new if not o.ok),
        "lost_new_before_first_token": sum(1 for o in new if not o.ok and not o.streamed),
        "broken_streams": sum(1 for o in sc.outcomes if o.broken and o.end >= fault),
        "hung": sum(1 for o in sc.outcomes if o.timed_out),
        "first_failure_s": round(failed_ends[0] - fault, 3) if failed_ends else None,
        "failure_window_s": round(failed_ends[-1] - failed_ends[0], 3) if failed_ends else 0.0,
        "ttft_p95_back_within_slo_s": back_within_slo(sc.outcomes, fault, sc.settings.ttft_p95_ms, window),
        "ttft_slo_ms": sc.settings.ttft_p95_ms,
    }


async def scenario_c(sc: Scenario) -> dict[str, Any]:
    capacity = base_capacity(sc.topo)
    sc.start(capacity)  # exactly fills base: before the fault everything runs there
    fault, recovered = await _kill_and_recover(sc, sc.topo.base, "burst")
    await sc.wait_for(f"{sc.settings.requests} requests after failover",
                      lambda: sc.ended_since(recovered) >= sc.settings.requests)  # fmt: skip
    await sc.finish()
    loss = _loss(sc, fault)
    marks = (("first failure", "first_failure_s"), ("p95 TTFT back within SLO", "ttft_p95_back_within_slo_s"))
    for event, key in marks:
        if loss[key] is not None:  # on the timeline plot
            sc.events[event] = fault + loss[key]
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
    stated = sc.topo.router.stated_fail_back_s() if sc.topo.router is not None else None
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
        # reported, not gated (a wall-clock window): the router's own timers run on this busy box too
        "stated_fail_back_s": stated,
        "fail_back_within_stated": None if stated is None else routed - restored <= stated,
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


def _fault_proxy(sc: Scenario) -> FaultProxy:
    fault = sc.topo.base.fault
    assert fault is not None, "skip_reason() keeps f, g and h to topologies with a fault proxy"
    return fault


def _endings(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(Counter(o.ending for o in outcomes))


async def scenario_f(sc: Scenario) -> dict[str, Any]:
    """Base fails every completion before a byte of the answer: the router must serve it on burst."""
    proxy = _fault_proxy(sc)
    sc.start(base_capacity(sc.topo))
    await sc.wait_for("a success on base", lambda: sc.count(backend="base") >= 1)
    at = await sc.fault(FAULTS["f"], lambda: proxy.set_mode("reset"))
    await sc.wait_for(f"{sc.settings.requests} requests after the fault",
                      lambda: sc.ended_since(at) >= sc.settings.requests)  # fmt: skip
    await sc.finish()
    after = [o for o in sc.outcomes if o.start >= at]
    _require_samples(sc, "after", after)
    attempts = proxy.faulted["reset"]
    lost = [o for o in after if not o.ok]
    extra = {"attempts_on_failing_base": attempts, "requests_after_fault": len(after), "lost_after_fault": len(lost),
             "served_by_burst_after_fault": sum(1 for o in after if o.ok and o.backend == "burst"),
             "endings": _endings(after)}  # fmt: skip
    if attempts == 0:
        raise Inconclusive("the router sent no request to base after the fault: the failure was never met")
    if lost:
        raise GateFailed(f"{len(lost)} of {len(after)} requests lost although base failed before the first token "
                         f"(nothing had been sent to the client): the router did not serve them on burst; "
                         f"first: {lost[0].sample.error}")  # fmt: skip
    return extra


async def scenario_g(sc: Scenario) -> dict[str, Any]:
    """Base's answers are cut after the first token: each must reach the client as an error."""
    proxy = _fault_proxy(sc)
    need = max(2, sc.settings.min_samples // 2)
    sc.start(base_capacity(sc.topo))
    await sc.wait_for("a success on base", lambda: sc.count(backend="base") >= 1)
    at = await sc.fault(FAULTS["g"], lambda: proxy.set_mode("cut"))

    def cut() -> list[Outcome]:  # every base answer started after `at` is cut by the proxy
        return [o for o in sc.outcomes if o.start >= at and o.backend == "base"]

    await sc.wait_for(f"{need} answers cut mid-stream", lambda: len(cut()) >= need)
    await sc.finish()
    answers = cut()
    # a cut answer that ended cleanly fails this scenario through contract_breach(), as it would any other
    extra = {"cut_by_fault": proxy.faulted["cut"], "cut_answers_seen": len(answers), "endings": _endings(answers),
             "truncated_with_clean_end": sum(o.truncated_clean for o in answers)}  # fmt: skip
    unnoticed = [o for o in answers if o.ok]
    if unnoticed:
        raise GateFailed(f"{len(unnoticed)} answers the proxy cut were reported complete")
    return extra


async def scenario_h(sc: Scenario) -> dict[str, Any]:
    """Base answers, but `degraded_delay` late: judged on TTFT against HYBRID_DEGRADED_TTFT_P95_MS."""
    proxy = _fault_proxy(sc)
    need = sc.settings.min_samples + 2  # each takes degraded_delay when the router keeps waiting
    slo = sc.settings.degraded_ttft_p95_ms
    sc.start(base_capacity(sc.topo))  # a load base alone would serve at once
    await sc.wait_for("a success on base", lambda: sc.count(backend="base") >= 1)
    at = await sc.fault(FAULTS["h"], lambda: proxy.set_mode("slow"))
    await sc.wait_for(f"{need} requests after base was degraded", lambda: sc.ended_since(at) >= need)
    await sc.finish()
    after = [o for o in sc.outcomes if o.start >= at]
    p95 = ttft_p95_counting_failures(after)
    on_base = sum(1 for o in after if o.backend == "base")
    extra = {"degraded_delay_s": sc.settings.degraded_delay, "ttft_slo_ms": slo, "requests_after": len(after),
             "on_base_after": on_base, "on_burst_after": sum(1 for o in after if o.backend == "burst"),
             "ttft_p95_after_ms": p95 if p95 is None or math.isfinite(p95) else None,
             "failed_after": sum(1 for o in after if not o.ok)}  # fmt: skip
    if p95 is None or p95 > slo:
        shown = "failures" if p95 is None or not math.isfinite(p95) else f"{p95:.0f}ms"
        raise GateFailed(f"the router keeps waiting on a degraded base: {on_base} of {len(after)} requests went to "
                         f"base ({sc.settings.degraded_delay:g}s slower); TTFT p95 {shown} > {slo:.0f}ms "
                         "(HYBRID_DEGRADED_TTFT_P95_MS)")  # fmt: skip
    return extra


SCRIPTS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d, "e": scenario_e, "f": scenario_f,
           "g": scenario_g, "h": scenario_h}  # fmt: skip


def skip_reason(key: str, topo: Topology) -> str | None:
    if key in ("c", "d") and (topo.base.kill is None or topo.base.restore is None):
        return "no way to stop and restart base: give --base-stop-cmd and --base-start-cmd"
    if key == "e" and topo.burst.kill is None:
        return "no way to stop burst: give HYBRID_BURST_STOP_CMD"
    if key in FAULT_PROXY_SCENARIOS and topo.base.fault is None:
        return "needs a fault proxy between the router and base: only the reference topology has one"
    return None


def declarations(settings: HybridSettings) -> dict[str, str]:
    """The router under test's declared deviations: scenario key -> why (HYBRID_KNOWN_DEVIATIONS first)."""
    if settings.known_deviations is not None:
        return dict.fromkeys(settings.known_deviations, "declared in HYBRID_KNOWN_DEVIATIONS")
    return dict(DECLARED_DEVIATIONS[settings.router_kind]) if settings.reference else {}


def declared(key: str, settings: HybridSettings) -> str | None:
    """Why the router under test is known to break scenario `key` (None: it is not)."""
    return declarations(settings).get(key)


def contract_breach(outcomes: list[Outcome]) -> str | None:
    """The rule of scenario g, in every scenario: no cut answer may end like a finished one."""
    clean = [o for o in outcomes if o.truncated_clean]
    if clean:
        return (f"{len(clean)} answers were cut and ended with a clean end of stream (the client cannot tell them "
                f"from finished ones): {clean[0].sample.error}")  # fmt: skip
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
    inconclusive = False
    try:
        extra = await SCRIPTS[key](sc)
    except Inconclusive as exc:
        status, error, inconclusive = "failed", f"inconclusive: {exc}", True
    except GateFailed as exc:
        status, error = "failed", str(exc)
    finally:
        sc.stop.set()
        if sc.task is not None and not sc.task.done():
            await sc.task
        if topo.base.fault is not None:
            topo.base.fault.set_mode("pass")
    if status == "passed" and (breach := contract_breach(sc.outcomes)):
        status, error = "failed", breach
    deviation = declared(key, settings)
    if deviation and status == "failed" and not inconclusive:
        status, error = "xfailed", f"declared deviation ({deviation}): {error}"
    elif deviation and status == "passed":
        status, error = "xpassed", f"does better than declared ({deviation}): remove the declaration"
    result = ScenarioResult(key, status, time.monotonic() - started, getattr(sc, "users", 0), error=error,
                            events=dict(sc.events), outcomes=list(sc.outcomes), extra=extra)  # fmt: skip
    notify(f"{result.name}: {status}" + (f" ({error})" if error else "") + f" in {result.duration:.1f}s")
    return result


async def ensure_up(topo: Topology, notify: Callable[[str], None]) -> None:
    """Before a scenario that needs both backends: restore any that an earlier one left down."""
    for backend in topo.backends.values():
        if backend.healthy() is False and backend.restore is not None:
            notify(f"{backend.name} is down before the next scenario: restoring it")
            await asyncio.to_thread(backend.restore)
