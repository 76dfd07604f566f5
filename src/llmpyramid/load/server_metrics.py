"""The target's own view during a load run: `/metrics` (Prometheus text) and `/slots`, sampled at a fixed interval.

    scraper = ServerMetrics(base_url, headers, interval_s=2.0)
    scraper.sample()          # one scrape (the load run's master calls it from a greenlet)
    scraper.document()        # {"status": "exposed" | "not exposed", "series": {"t": [...], name: [...]}, ...}

Parsed with prometheus_client's own text parser. llama.cpp's server exposes the gauges that explain client
latency: requests processing and deferred (queued: no free slot), KV-cache use, prompt and generation
tokens/s. Every numeric sample of every family is kept (a counter under its `_total` name), so other servers'
metrics land in the document too; the report plots the llama.cpp ones against client TTFT. A target without
`/metrics` is reported "not exposed" with the status it gave, never as zeros.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

METRICS_PATH, SLOTS_PATH = "/metrics", "/slots"
# llama.cpp's names (prometheus_client reads `llamacpp:x` as family `llamacpp:x`) -> short names in the document
LLAMACPP = {
    "llamacpp:requests_processing": "requests_processing",
    "llamacpp:requests_deferred": "requests_deferred",
    "llamacpp:kv_cache_usage_ratio": "kv_cache_usage_ratio",
    "llamacpp:kv_cache_tokens": "kv_cache_tokens",
    "llamacpp:prompt_tokens_seconds": "prompt_tokens_per_second",
    "llamacpp:predicted_tokens_seconds": "predicted_tokens_per_second",
}
MAX_SERIES = 64  # families kept beyond llama.cpp's: a server with hundreds is not worth a huge document


def parse(text: str) -> dict[str, float]:
    """Every sample without labels (or summed over its labels) by name, llama.cpp's under their short names."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = LLAMACPP.get(sample.name, LLAMACPP.get(family.name, sample.name))
            values[name] = values.get(name, 0.0) + float(sample.value)
    return values


class ServerMetrics:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None, *, interval_s: float = 2.0,
                 timeout_s: float = 5.0) -> None:  # fmt: skip
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers or {}, timeout=timeout_s)
        self.interval_s = interval_s
        self.status: str | None = None  # "exposed" once one scrape parsed; else why not
        self.slots_status: str | None = None
        self.t: list[float] = []
        self.rows: list[dict[str, float]] = []
        self.scrape_wall_seconds = 0.0  # time spent scraping (the harness's own cost is in generator CPU)

    def sample(self) -> None:
        started = time.perf_counter()
        try:
            row = self._scrape_metrics()
            slots = self._scrape_slots()
            if slots is not None:
                row["slots_busy"], row["slots_total"] = slots
            if row:
                self.t.append(time.time())
                self.rows.append(row)
        finally:
            self.scrape_wall_seconds += time.perf_counter() - started

    def _scrape_metrics(self) -> dict[str, float]:
        if self.status not in (None, "exposed"):
            return {}  # a target without /metrics is not asked again every interval
        try:
            response = self.http.get(METRICS_PATH)
            if response.status_code != 200:
                self.status = self.status or f"not exposed (GET {METRICS_PATH}: HTTP {response.status_code})"
                return {}
            row = parse(response.text)
        except (httpx.HTTPError, ValueError) as exc:
            self.status = self.status or f"not exposed (GET {METRICS_PATH}: {type(exc).__name__})"
            return {}
        if not row and self.status is None:  # a 200 that is not Prometheus text (a catch-all route)
            self.status = f"not exposed (GET {METRICS_PATH}: no Prometheus metrics in the answer)"
            return {}
        self.status = "exposed"
        return row

    def _scrape_slots(self) -> tuple[float, float] | None:
        if self.slots_status not in (None, "exposed"):
            return None
        try:
            response = self.http.get(SLOTS_PATH)
            slots = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            slots = None
        if not isinstance(slots, list):
            self.slots_status = self.slots_status or "not exposed"
            return None
        self.slots_status = "exposed"
        busy = sum(1 for s in slots if isinstance(s, dict) and (s.get("is_processing") or s.get("state") == 1))
        return float(busy), float(len(slots))

    def close(self) -> None:
        self.http.close()

    def document(self, t0: float | None = None) -> dict[str, Any]:
        """The series, aligned on seconds since `t0` (the run's start), and each one's peak."""
        names: list[str] = [
            n for n in (*LLAMACPP.values(), "slots_busy", "slots_total") if any(n in r for r in self.rows)
        ]
        others = sorted({k for r in self.rows for k in r} - set(names))[:MAX_SERIES]
        start = t0 if t0 is not None else (self.t[0] if self.t else 0.0)
        series: dict[str, list[float | None]] = {"t": [round(t - start, 2) for t in self.t]}
        for name in (*names, *others):
            series[name] = [r.get(name) for r in self.rows]
        peaks = {n: max((v for v in series[n] if v is not None), default=None) for n in names}
        return {
            "status": self.status or "not scraped",
            "slots": self.slots_status or "not scraped",
            "source": f"{METRICS_PATH}, {SLOTS_PATH}",
            "interval_s": self.interval_s,
            "samples": len(self.rows),
            "scrape_wall_seconds": round(self.scrape_wall_seconds, 3),
            "peaks": peaks,
            "series": series,
        }
