"""The noise-aware regression gate of repeated load runs: intervals, and regressed / within / inconclusive."""

from __future__ import annotations

import os
import signal

import pytest

from llmpyramid.load.repeat import gate, interval, intervals


def test_interval_is_students_t_around_the_mean():
    ci = interval([10.0, 12.0, 14.0])
    assert ci["mean"] == 12.0 and ci["n"] == 3
    assert (ci["low"], ci["high"]) == (pytest.approx(7.0317, abs=1e-3), pytest.approx(16.9683, abs=1e-3))
    assert interval([5.0])["low"] is None, "one run has no interval"


def _ci(low, high):
    return {"n": 3, "mean": (low + high) / 2, "low": low, "high": high, "values": []}


@pytest.mark.parametrize(
    ("current", "verdict"),
    [
        (_ci(150.0, 170.0), "regressed"),  # the whole interval beyond 110 ms
        (_ci(90.0, 105.0), "passed"),  # the whole interval within
        (_ci(100.0, 130.0), "inconclusive"),  # straddles the limit: too wide to decide
    ],
)
def test_latency_gate_against_the_baseline_with_tolerance(current, verdict):
    regressions, undecided = gate({"p95_latency_ms": current}, {"p95_latency_ms": 100.0}, 0.10)
    got = "regressed" if regressions else "inconclusive" if undecided else "passed"
    assert got == verdict
    if regressions:
        assert regressions[0].startswith("baseline regression: p95 latency 160ms (95% interval 150..170ms, 3 runs)")
        assert "limit 110ms" in regressions[0]


def test_throughput_gate_looks_the_other_way():
    regressions, _ = gate({"requests_per_second": _ci(5.0, 8.0)}, {"requests_per_second": 10.0}, 0.10)
    assert regressions and "limit 9" in regressions[0]
    assert gate({"requests_per_second": _ci(9.5, 12.0)}, {"requests_per_second": 10.0}, 0.10) == ([], [])


def test_intervals_only_for_metrics_every_run_measured():
    runs = [{"p95_latency_ms": 100.0, "ttft_p95_ms": None}, {"p95_latency_ms": 120.0, "ttft_p95_ms": 5.0}]
    cis = intervals(runs)
    assert set(cis) == {"p95_latency_ms"} and cis["p95_latency_ms"]["values"] == [100.0, 120.0]


def test_other_work_on_the_machine_is_measured_apart_from_ours():
    """Our own children's CPU is ours (subtracted), a process outside our tree is other work. Counted in CPU
    seconds, so what else the box runs only adds to the foreign share, never to our own."""
    import subprocess
    import sys
    import time

    import psutil

    from llmpyramid.load.repeat import OtherWork

    child = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        probe = OtherWork(None)
        cpu = psutil.Process(child.pid)
        ours0, child0 = probe._ours(), sum(cpu.cpu_times()[:2])
        time.sleep(1.0)
        ours1, child1 = probe._ours(), sum(cpu.cpu_times()[:2])
    finally:
        child.kill()
        child.wait()
    assert child1 - child0 > 0.05 and ours1 - ours0 >= child1 - child0 - 0.02  # the child's CPU is counted as ours
    # a process outside our tree (its parent exits at once: it is re-parented) is other work
    spawn = subprocess.run(["sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    foreign = int(spawn.stdout)
    try:
        with OtherWork(None) as theirs:
            time.sleep(1.0)
        burned = sum(psutil.Process(foreign).cpu_times()[:2])
    finally:
        os.kill(foreign, signal.SIGKILL)
    assert burned > 0.05 and theirs.share * (psutil.cpu_count() or 1) >= 0.5 * burned / 1.5, (theirs.share, burned)
