"""Load layer math: percentiles and rates from samples, SLO verdicts, knee detection, baselines."""

from __future__ import annotations

import pytest

from llmpyramid.errors import ConfigError
from llmpyramid.load.config import SLO, evaluate_slo
from llmpyramid.load.knee import find_knee, has_plateau, score_levels
from llmpyramid.load.metrics import Collector, Sample, meets, percentile_note, summarize
from llmpyramid.load.report import compare_baseline, load_baseline


def _sample(
    start: float, latency: float, ok: bool = True, ttft: float | None = 50.0, tokens: int = 11, itl: list | None = None
) -> Sample:
    gaps = itl if itl is not None else [10.0] * (tokens - 1)
    error = None if ok else "HTTP 500"
    return Sample(start, "chat_stream", latency, ok, error, ttft, tokens, itl_ms=gaps)


def test_summary_percentiles_rates_and_tpot() -> None:
    samples = [_sample(i * 0.1, 100.0 + i) for i in range(100)]
    m = summarize(samples, duration_s=10.0)
    assert m["requests"] == 100 and m["failures"] == 0 and m["error_rate"] == 0
    assert m["requests_per_second"] == 10.0
    assert m["p50_latency_ms"] == pytest.approx(149.5)
    assert m["p99_latency_ms"] == pytest.approx(198.01)
    assert m["output_tokens_per_second"] == pytest.approx(110.0)
    assert m["itl_p50_ms"] == 10.0
    # TPOT = (latency - TTFT) / (tokens - 1) for the median request (latency ~149.5)
    assert m["tpot_p50_ms"] == pytest.approx((149.5 - 50) / 10)


def test_failures_count_in_error_rate_but_not_in_latency() -> None:
    samples = [_sample(0, 100.0), _sample(0, 100.0), _sample(0, 5.0, ok=False), _sample(0, 5.0, ok=False)]
    m = summarize(samples, duration_s=1.0)
    assert m["error_rate"] == 0.5
    assert m["requests_per_second"] == 2.0
    assert m["p50_latency_ms"] == 100.0
    assert m["errors"] == {"HTTP 500": 2}


def test_goodput_counts_requests_meeting_every_limit_and_failures_as_misses() -> None:
    samples = [_sample(0, 100.0)] * 6 + [_sample(0, 400.0), _sample(0, 100.0, ttft=300.0)]
    samples += [_sample(0, 5.0, ok=False)] * 2  # fast failures: never "good"
    m = summarize(samples, duration_s=2.0, limits={"latency_ms": 200.0, "ttft_ms": 200.0})
    assert (m["goodput_rps"], m["goodput_share"]) == (3.0, 0.6)
    assert m["requests_per_second"] == 4.0, "throughput counts every completion; goodput only the good ones"
    assert summarize(samples, duration_s=2.0)["goodput_share"] == 0.8, "no limits: every completed request"
    non_streamed = Sample(0, "chat", 100.0, True, None, None, 11)
    assert meets(non_streamed, {"ttft_ms": 1.0}), "a limit a request cannot be judged by does not count"


def test_failed_requests_count_at_the_timeout_in_the_honest_percentiles() -> None:
    samples = [_sample(0, 100.0)] * 17 + [_sample(0, 5.0, ok=False)] * 3
    m = summarize(samples, duration_s=1.0, failure_ms=60_000.0)
    assert m["p95_latency_ms"] == 100.0, "over completed requests the p95 looks healthy"
    assert m["p95_latency_with_failures_ms"] == 60_000.0 and m["ttft_p95_with_failures_ms"] == 60_000.0
    assert (
        percentile_note(m, 60.0)
        == "p95 latency: 100 ms over the 17 completed; 60000 ms counting the 3 failed at the 60 s timeout"
    )
    healthy = summarize([_sample(0, 100.0)] * 5, duration_s=1.0, failure_ms=60_000.0)
    assert percentile_note(healthy, 60.0) is None


def test_goodput_share_slo_gate() -> None:
    slo = SLO(min_goodput_share=0.9, p95_latency_ms=200.0, ttft_p95_ms=150.0, itl_p95_ms=40.0)
    assert slo.per_request() == {"latency_ms": 200.0, "ttft_ms": 150.0, "tpot_ms": 40.0}
    (finding,) = evaluate_slo({"goodput_share": 0.6, "error_rate": 0, "p95_latency_ms": 1, "ttft_p95_ms": 1,
                                "itl_p95_ms": 1}, slo)  # fmt: skip
    assert finding.startswith("goodput (share of requests meeting every SLO) 0.6 < threshold 0.9")
    with pytest.raises(ConfigError, match="min_goodput_share is a fraction"):
        SLO.from_mapping({"min_goodput_share": 5}, "test")


def test_non_streaming_samples_have_no_ttft() -> None:
    m = summarize([_sample(0, 100.0, ttft=None, itl=[])], duration_s=1.0)
    assert m["ttft_p50_ms"] is None and m["itl_p50_ms"] is None and m["tpot_p50_ms"] is None


def test_collector_wire_round_trip_drains_once() -> None:
    worker, master = Collector(), Collector()
    worker.add(_sample(1.0, 10.0))
    master.extend_wire(worker.drain_wire())
    master.extend_wire(worker.drain_wire())  # nothing new: no duplicates
    assert len(master.samples) == 1 and master.samples[0].latency_ms == 10.0


def test_slo_violation_names_metric_measured_and_threshold() -> None:
    load_test = {"p95_latency_ms": 350.0, "error_rate": 0.001, "requests_per_second": 12.5, "ttft_p95_ms": 80.0}
    slo = SLO(p95_latency_ms=200, error_rate=0.01, min_rps=10, ttft_p95_ms=100)
    assert evaluate_slo(load_test, slo) == ["p95 latency 350ms > threshold 200ms"]


def test_slo_minimum_throughput_and_default_error_rate() -> None:
    findings = evaluate_slo({"requests_per_second": 3.0, "error_rate": 0.02}, SLO(min_rps=5))
    assert findings == ["error rate 0.02 > threshold 0", "requests/s 3 < threshold 5"]


def test_slo_unmeasured_metric_is_a_failure_not_a_pass() -> None:
    assert evaluate_slo({"ttft_p95_ms": None, "error_rate": 0}, SLO(ttft_p95_ms=100))[0].startswith("TTFT p95 not")


def _levels(*tps: float, errors: dict[int, float] | None = None) -> list[dict]:
    users = [1, 2, 4, 8, 16, 32][: len(tps)]
    return [{"users": u, "requests": 10, "output_tokens_per_second": t, "error_rate": (errors or {}).get(u, 0.0)}
            for u, t in zip(users, tps, strict=True)]  # fmt: skip


def test_knee_is_the_fewest_users_near_the_peak() -> None:
    knee = find_knee(_levels(100, 160, 190, 195, 193), min_gain=0.10)
    assert knee["users"] == 4 and knee["plateau"] and knee["peak_users"] == 8
    assert "4 users reach 97% of the peak 195.0/s (at 8 users)" in knee["reason"]


def test_one_noisy_level_does_not_end_the_climb() -> None:
    # 1 -> 2 users dips (noise), then throughput keeps rising: the knee is found higher up
    knee = find_knee(_levels(130, 125, 170, 178, 176, 175), min_gain=0.10)
    assert knee["users"] == 4


def test_knee_moves_with_the_gain_threshold() -> None:
    assert find_knee(_levels(100, 160, 190, 195, 193), min_gain=0.25)["users"] == 2


def test_levels_with_errors_are_past_the_knee() -> None:
    knee = find_knee(_levels(100, 160, 170, 90, errors={8: 0.05}), min_gain=0.10)
    assert knee["users"] == 2 and "errors from 8 users on (error rate 5.00%)" in knee["reason"]
    assert find_knee(_levels(100, errors={1: 0.5}))["reason"] == "errors already at 1 user(s)"


def test_a_top_level_that_loses_throughput_is_past_the_knee() -> None:
    """Measured here (preprod sweep, 8 slots): 16 users 120 tok/s, 32 users 101 tok/s with 24 requests deferred."""
    knee = find_knee(_levels(44.0, 53.3, 57.3, 98.7, 120.0, 101.3), 0.10)
    assert knee["plateau"] and knee["users"] == 16 and knee["peak_users"] == 16


def test_a_finished_sweep_whose_top_level_gained_nothing_has_its_knee() -> None:
    """Measured here: 8 users 98.7, 16 users 109.3, 32 users 105.3 tok/s (8 slots): the knee is 8 users."""
    levels = _levels(49.3, 58.7, 54.7, 98.7, 109.3, 105.3)
    assert not find_knee(levels, 0.10)["plateau"], "mid-sweep one flat level may be noise"
    knee = find_knee(levels, 0.10, finished=True)
    assert knee["plateau"] and knee["users"] == 8


def test_no_knee_while_still_scaling() -> None:
    knee = find_knee(_levels(100, 200, 400))
    assert knee["users"] is None and not knee["plateau"] and "still rising at 4 users" in knee["reason"]


def test_plateau_needs_two_levels_without_gain() -> None:
    assert not has_plateau(_levels(100, 160, 165), 0.10)  # one flat level: keep going
    assert has_plateau(_levels(100, 160, 165, 168), 0.10)


def test_knee_falls_back_to_requests_per_second_without_tokens() -> None:
    common = {"requests": 5, "output_tokens_per_second": 0, "error_rate": 0}
    levels = [{"users": u, "requests_per_second": r, **common} for u, r in ((1, 10.0), (2, 10.5), (4, 10.4))]
    assert find_knee(levels)["users"] == 1


def test_score_levels_uses_completions_inside_each_window() -> None:
    # level 1 at t=0..10 (measured from t=2), level 2 at t=10..20 (from t=12)
    samples = [_sample(1.0 + i, 1000.0) for i in range(8)] + [_sample(11.0 + i / 2, 1000.0) for i in range(16)]
    scored = score_levels(samples, [1, 2], [0.0, 10.0], step=10.0)
    assert scored[0]["requests"] == 8 and scored[0]["requests_per_second"] == 1.0
    assert scored[1]["requests"] == 16 and scored[1]["requests_per_second"] == 2.0
    late = score_levels([_sample(19.5, 1000.0)], [2], [10.0], step=10.0)  # ends at t=20.5: after the window
    assert late[0]["requests"] == 0


def test_baseline_regression_beyond_tolerance_names_the_metric() -> None:
    base = {"requests_per_second": 10.0, "p95_latency_ms": 200.0, "error_rate": 0.0, "ttft_p95_ms": 100.0}
    cur = {"requests_per_second": 9.5, "p95_latency_ms": 260.0, "error_rate": 0.0, "ttft_p95_ms": 105.0}
    findings = compare_baseline(cur, base, tolerance=0.10)
    assert findings == ["baseline regression: p95 latency 260.0ms vs baseline 200.0ms (+30.0%, tolerance 10%)"]
    assert compare_baseline(cur, base, tolerance=0.5) == []


def test_baseline_throughput_drop_and_error_rate_rise() -> None:
    findings = compare_baseline({"requests_per_second": 5.0, "error_rate": 0.05},
                                {"requests_per_second": 10.0, "error_rate": 0.0}, 0.1)  # fmt: skip
    assert findings[0].startswith("baseline regression: requests/s 5.0 vs baseline 10.0 (-50.0%")
    assert findings[1] == "baseline regression: error rate 5.00% vs baseline 0.00%"


def test_baseline_file_forms_and_errors(tmp_path) -> None:
    run_tests_doc = tmp_path / "results.json"
    run_tests_doc.write_text('{"summary": {}, "load_test": {"requests_per_second": 3}}')
    assert load_baseline(run_tests_doc) == {"requests_per_second": 3}
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_baseline(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_baseline(tmp_path / "missing.json")
    empty = tmp_path / "empty.json"
    empty.write_text('{"summary": {}}')
    with pytest.raises(ConfigError, match="no load_test metrics"):
        load_baseline(empty)


def test_locust_command_for_master_and_workers(tmp_path) -> None:
    from llmpyramid.load.config import LoadConfig
    from llmpyramid.load.runner import locust_command

    cfg = LoadConfig(users=10, spawn_rate=2, duration=60, results_dir=tmp_path)
    master, workers = locust_command(cfg, tmp_path / "lf.py", workers=2, master_port=5557)
    joined = " ".join(master)
    assert "-u 10 -r 2" in joined and "--headless" in master
    # the target (maybe with user:password@) and the run time travel in the environment, not argv
    assert "--host" not in master and "-t" not in master and "--run-time" not in master
    assert "--master --master-bind-host 127.0.0.1 --master-bind-port 5557 --expect-workers 2" in joined
    assert f"--html {tmp_path / 'locust_report.html'}" in joined and "--stop-timeout" in master
    assert len(workers) == 2 and workers[0][-5:] == ["--worker", "--master-host", "127.0.0.1", "--master-port", "5557"]
    sweep, _ = locust_command(LoadConfig(shape="sweep", results_dir=tmp_path), tmp_path, workers=0, master_port=None)
    assert "-u" not in sweep and "--master" not in sweep  # the shape drives the users
