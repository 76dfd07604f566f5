"""Load verdicts and reports without locust: inconclusive runs, bad URLs, credentials, rolling plots."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from llmpyramid.load.cli import main
from llmpyramid.load.metrics import Arrivals, Sample, time_series
from llmpyramid.load.protocol import auth_headers, without_userinfo
from llmpyramid.load.report import (
    HTML_FILE,
    RESULTS_FILE,
    SAMPLES_FILE,
    inconclusive,
    render,
    verdict_of,
    write_samples,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BASE_URL", "API_KEY", "LOAD_RESULTS_DIR", "LOAD_DURATION", "LOAD_MIN_REQUESTS", "LOAD_PLOTS"):
        monkeypatch.delenv(name, raising=False)


def test_verdict_lines() -> None:
    assert verdict_of([]) == "passed"
    assert inconclusive(2, 20) == "inconclusive: only 2 requests completed (need 20)"
    assert verdict_of([inconclusive(2, 20), "error rate 0.5 > threshold 0"]) == inconclusive(2, 20)
    assert verdict_of(["error rate 0.5 > threshold 0", "p95 latency 9ms > threshold 1ms"]) == (
        "failed: error rate 0.5 > threshold 0 (+1 more)"
    )


def _steady(rate: float, seconds: float, latency_ms: float = 3000.0) -> list[Sample]:
    """Requests started at `rate`/s, each streaming 10 tokens 100 ms apart after a 500 ms TTFT."""
    n = int(rate * seconds)
    return [Sample(start=1000.0 + i / rate, kind="chat_stream", latency_ms=latency_ms, ok=True, ttft_ms=500.0,
                   output_tokens=10, itl_ms=[100.0] * 9) for i in range(n)]  # fmt: skip


def test_rolling_window_has_no_empty_bins_at_a_steady_two_requests_per_second() -> None:
    samples = _steady(rate=2, seconds=60)
    ts = time_series(samples)
    assert 5 <= ts["window_s"] <= 60
    # after the first window, every point sees ~2 req/s: 1 s bins of completions would alternate 0/2/4
    steady = [r for t, r in zip(ts["t"], ts["rps"], strict=True) if ts["window_s"] + 3.5 < t < 60]
    assert steady and all(1.5 <= r <= 2.5 for r in steady)
    assert {ts["ttft_p50_ms"][-1], ts["itl_p95_ms"][-1]} == {500.0, 100.0}
    assert time_series([]) == {"window_s": 5.0}


def test_rolling_throughput_follows_a_slowdown() -> None:
    fast, slow = _steady(rate=4, seconds=30), _steady(rate=1, seconds=30)
    for s in slow:
        s.start += 30
    ts = time_series(fast + slow, window_s=5.0)
    early = [r for t, r in zip(ts["t"], ts["rps"], strict=True) if 10 < t < 30]
    late = [r for t, r in zip(ts["t"], ts["rps"], strict=True) if 40 < t < 60]
    assert min(early) > 3 and max(late) < 1.5


def test_auth_headers_key_first_then_url_credentials() -> None:
    assert auth_headers("sk-1", "http://alice:pw@h:1") == {"Authorization": "Bearer sk-1"}
    basic = auth_headers(None, "http://alice:s3cret%40pw@h:1")["Authorization"]
    assert base64.b64decode(basic.removeprefix("Basic ")) == b"alice:s3cret@pw"
    assert auth_headers(None, "http://h:1") == {} and auth_headers(None, None) == {}
    assert without_userinfo("http://alice:pw@[::1]:8080/x") == "http://[::1]:8080/x"
    assert without_userinfo("https://h") == "https://h"


def test_arrivals_merge_and_summary() -> None:
    a, b = Arrivals(), Arrivals()
    a.scheduled, a.issued, a.lags_ms = 3, 3, [1.0, 2.0, 3.0]
    b.scheduled, b.issued, b.dropped, b.in_flight_at_end, b.lags_ms = 2, 1, 1, 1, [10.0, 20.0]
    a.merge(b.to_dict())
    assert a.summary() == {"scheduled": 5, "issued": 4, "dropped": 1, "in_flight_at_end": 1,
                           "issue_lag_p50_ms": 3.0, "issue_lag_p95_ms": 20.0, "issue_lag_max_ms": 20.0}  # fmt: skip


@pytest.mark.parametrize("via", ["flag", "env"])
def test_malformed_base_url_exits_3_and_writes_this_runs_results(
    via: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / RESULTS_FILE
    stale.write_text(json.dumps({"verdict": "passed", "exit_code": 0}))  # a previous run's verdict
    url = "http://alice:s3cretpw@[::1"
    args = ["--results-dir", str(tmp_path)]
    if via == "flag":
        args += ["--base-url", url]
    else:
        monkeypatch.setenv("BASE_URL", url)
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 3
    out = capsys.readouterr()
    err = out.err.strip()
    name = "--base-url" if via == "flag" else "BASE_URL"
    assert err.startswith(f"error: {name} is not a valid URL") and "\n" not in err and "Traceback" not in err
    assert f"results {stale}" in err
    assert "s3cretpw" not in out.err + out.out + stale.read_text()
    doc = json.loads(stale.read_text())
    assert doc["exit_code"] == 3 and doc["verdict"].startswith(f"error: {name} is not a valid URL")


def test_unwritable_results_dir_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["--results-dir", str(blocker / "sub"), "--base-url", "http://[::1"])
    assert info.value.code == 3
    err = capsys.readouterr().err.strip()
    assert "no results file written" in err and "\n" not in err


def test_render_writes_a_self_contained_report(tmp_path: Path) -> None:
    samples = _steady(rate=2, seconds=20)
    write_samples(tmp_path / SAMPLES_FILE, samples)
    doc = {"verdict": inconclusive(3, 20), "findings": [inconclusive(3, 20)], "slo": {"error_rate": 0.0},
           "load_test": {"completed": 40, "requests": 40, "target": "http://***@h:1"}, "artifacts": {}}  # fmt: skip
    (tmp_path / RESULTS_FILE).write_text(json.dumps(doc))
    written = render(tmp_path)
    page = (tmp_path / HTML_FILE).read_text()
    assert "inconclusive: only 3 requests completed (need 20)" in page
    assert page.count("data:image/png;base64,") == 1 and "<script" not in page and "http://***@h:1" in page
    assert "locust_report.html" in page and "chat_stream" in page  # link beside locust's own; per-kind table
    assert (tmp_path / "load_over_time.png").stat().st_size > 10_000
    assert json.loads((tmp_path / RESULTS_FILE).read_text())["artifacts"]["llm_report"] == str(tmp_path / HTML_FILE)
    assert len(written) == 2
