"""What a request that met its SLO cost on base and on burst.

A backend's price per second is spread over its measured capacity: with all of its `slots` busy it
serves slots / L requests per second, L being the mean latency of the SLO-meeting requests it served
in the steady scenarios (a, b: no fault). Cost per SLO-meeting request = price per second * L / slots.

Prices: base is the bare-metal server's monthly price (HYBRID_BASE_MONTHLY_USD: a setting, since a
Hetzner invoice is not in any catalog; the default is an example figure), spread over the 730 hours of
an average month; burst is the spot price per hour of the cloud layer's instance from its pinned
SkyPilot catalog rows (the dearest zone of the region: what a launch may be charged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

from llmpyramid.hybrid.config import HybridSettings
from llmpyramid.hybrid.scenarios import ScenarioResult

HOURS_PER_MONTH = 730.0
STEADY = ("a", "b")  # scenarios without a fault: latency there is the backend's own


def _price_per_hour(backend: str, settings: HybridSettings) -> tuple[float, str]:
    if backend == "base":
        monthly = settings.base_monthly_usd
        return monthly / HOURS_PER_MONTH, f"${monthly:g}/month (HYBRID_BASE_MONTHLY_USD)"
    from llmpyramid.cloud.catalog import pinned_spot_hourly
    from llmpyramid.cloud.settings import DEFAULT_INSTANCE, DEFAULT_REGION

    cloud = settings.burst_cloud
    _low, high = pinned_spot_hourly(cloud, DEFAULT_INSTANCE[cloud], DEFAULT_REGION[cloud])
    return high, f"{cloud} {DEFAULT_INSTANCE[cloud]} spot in {DEFAULT_REGION[cloud]}: ${high:g}/h (pinned catalog)"


def cost_per_slo_request(
    results: Sequence[ScenarioResult], slots: Mapping[str, int | None], settings: HybridSettings
) -> dict[str, Any]:
    out: dict[str, Any] = {"slo": f"served, TTFT <= {settings.ttft_p95_ms:g}ms (HYBRID_TTFT_P95_MS)",
                           "measured_in": [r.name for r in results if r.key in STEADY]}  # fmt: skip
    steady = [o for r in results if r.key in STEADY for o in r.outcomes]
    for backend in ("base", "burst"):
        served = [o for o in steady if o.ok and o.backend == backend]
        met = [o for o in served if o.sample.ttft_ms is not None and o.sample.ttft_ms <= settings.ttft_p95_ms]
        n_slots = slots.get(backend)
        if not met or not n_slots:
            why = "no SLO-meeting request measured" if not met else "slot count unknown"
            out[backend] = {"usd": None, "reason": f"{why} on {backend} in scenarios {', '.join(STEADY)}"}
            continue
        hourly, source = _price_per_hour(backend, settings)
        latency_s = fmean(o.sample.latency_ms for o in met) / 1000
        out[backend] = {
            "usd": round(hourly / 3600 * latency_s / n_slots, 9),
            "usd_per_1k": round(hourly / 3600 * latency_s / n_slots * 1000, 6),
            "price": source,
            "slots": n_slots,
            "mean_latency_s": round(latency_s, 3),
            "capacity_rps": round(n_slots / latency_s, 3),
            "slo_met": len(met),
            "served": len(served),
        }
    return out
