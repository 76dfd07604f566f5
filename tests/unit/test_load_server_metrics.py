"""The load run's scrape of the target's own metrics: llama.cpp's Prometheus text and /slots, or "not exposed"."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from llmpyramid.load.server_metrics import ServerMetrics, parse
from tests.support.fake_openai import FakeOpenAI

LLAMACPP_TEXT = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 120
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 3
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 2
# TYPE llamacpp:kv_cache_usage_ratio gauge
llamacpp:kv_cache_usage_ratio 0.25
"""
SLOTS = [{"id": 0, "is_processing": True}, {"id": 1, "is_processing": False}, {"id": 2, "is_processing": True}]


def test_llamacpp_families_get_short_names_and_counters_keep_theirs():
    assert parse(LLAMACPP_TEXT) == {
        "llamacpp:prompt_tokens_total": 120.0,
        "requests_processing": 3.0,
        "requests_deferred": 2.0,
        "kv_cache_usage_ratio": 0.25,
    }


@pytest.fixture
def llamacpp_like():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != "Bearer k":
                self.send_response(401)
                self.end_headers()
                return
            body = LLAMACPP_TEXT.encode() if self.path == "/metrics" else json.dumps(SLOTS).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_series_and_peaks_from_an_exposed_target(llamacpp_like):
    scraper = ServerMetrics(llamacpp_like, {"Authorization": "Bearer k"}, interval_s=0.5)
    for _ in range(3):
        scraper.sample()
    doc = scraper.document(t0=scraper.t[0] - 1.0)
    scraper.close()
    assert doc["status"] == "exposed" and doc["slots"] == "exposed" and doc["samples"] == 3
    assert doc["series"]["t"][0] == 1.0 and doc["series"]["requests_deferred"] == [2.0, 2.0, 2.0]
    assert doc["peaks"]["slots_busy"] == 2.0 and doc["peaks"]["slots_total"] == 3.0
    assert doc["peaks"]["kv_cache_usage_ratio"] == 0.25


def test_a_target_without_metrics_says_not_exposed_never_zeros():
    with FakeOpenAI("no_metrics") as fake:
        scraper = ServerMetrics(fake.target.base_url, interval_s=0.5)
        scraper.sample()
        scraper.sample()
        scraper.close()
    doc = scraper.document()
    assert doc["status"].startswith("not exposed (GET /metrics: ")
    assert doc["samples"] == 0 and doc["series"] == {"t": []} and doc["peaks"] == {}
