"""Compare two load runs (llmpyramid.load.compare): deltas, bootstrap judgements, files, bad input, invoke."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from llmpyramid.load import compare as cmp
from llmpyramid.load.metrics import Sample, summarize
from llmpyramid.load.report import RESULTS_FILE, SAMPLES_FILE, write_json, write_samples


def _samples(n: int = 200, slow: float = 1.0, seed: int = 7) -> list[Sample]:
    """n streamed requests, 4 per second, with noisy latency, TTFT and token gaps; `slow` scales every time
    (and so halves throughput at 2)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        tokens = int(rng.integers(8, 24))
        out.append(Sample(start=1_700_000_000.0 + i * 0.25 * slow, kind="chat_stream",
                          latency_ms=float(rng.gamma(9, 100)) * slow, ok=True, ttft_ms=float(rng.gamma(4, 50)) * slow,
                          output_tokens=tokens, itl_ms=[float(g) * slow for g in rng.gamma(4, 10, size=tokens - 1)],
                          users=4))  # fmt: skip
    return out


def _run_dir(path: Path, samples: list[Sample], verdict: str = "passed") -> Path:
    lt = {**summarize(samples), "shape": {"type": "constant_users", "users": 4}, "target": "http://127.0.0.1:8080"}
    doc = {"verdict": verdict, "load_test": lt, "findings": [] if verdict == "passed" else [verdict], "slo": {},
           "server_metrics": {}, "started_at": samples[0].start, "exit_code": 0}  # fmt: skip
    write_samples(path / SAMPLES_FILE, samples)
    write_json(path / RESULTS_FILE, doc)
    return path


def _rows(doc: dict) -> dict[str, dict]:
    return {m["metric"]: m for m in doc["metrics"]}


def test_b_twice_as_slow_is_slower_beyond_noise(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", _samples())
    b = _run_dir(tmp_path / "b", _samples(slow=2.0, seed=8), verdict="failed: p95 latency 4000ms > threshold 3000ms")
    out = tmp_path / "out"
    doc = cmp.compare(a, b / RESULTS_FILE, out)  # a directory and a results file both work

    assert json.loads((out / cmp.JSON_FILE).read_text()) == doc
    lt_a = json.loads((a / RESULTS_FILE).read_text())["load_test"]
    lt_b = json.loads((b / RESULTS_FILE).read_text())["load_test"]
    rows = _rows(doc)
    for key in ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "ttft_p50_ms", "ttft_p95_ms", "itl_p50_ms",
                "itl_p95_ms", "requests_per_second", "output_tokens_per_second"):  # fmt: skip
        row = rows[key]
        assert (row["a"], row["b"]) == (lt_a[key], lt_b[key])
        assert row["delta"] == pytest.approx(lt_b[key] - lt_a[key])
        assert row["relative"] == pytest.approx((lt_b[key] - lt_a[key]) / lt_a[key], abs=1e-4)
        assert row["change"] == "worse", key
        assert row["judgement"] == "B is slower beyond noise", key
        low, high = row["interval"]["low"], row["interval"]["high"]
        assert low <= row["delta"] <= high or key.startswith("itl"), key  # ITL: inverted-CDF draws, ~same centre
        assert row["interval"]["resamples"] == cmp.RESAMPLES
    assert rows["error_rate"]["interval"] is None and rows["error_rate"]["change"] == "same"
    assert {"goodput_rps", "goodput_share"} <= rows.keys()
    assert doc["a"]["verdict"] == "passed" and doc["b"]["verdict"].startswith("failed: p95 latency")
    assert doc["a"]["target"] == "http://127.0.0.1:8080" and doc["b"]["shape"]["users"] == 4
    assert doc["a"]["started_at"] == 1_700_000_000.0 and doc["notes"] == []

    page = (out / cmp.HTML_FILE).read_text()
    png = out / cmp.PNG_FILE
    assert png.read_bytes().startswith(b"\x89PNG")
    assert base64.b64encode(png.read_bytes()).decode() in page  # inlined: the page stands alone
    assert "B is slower beyond noise" in page and "failed: p95 latency" in page


def test_b_equal_to_a_is_within_noise(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", _samples())
    b = _run_dir(tmp_path / "b", _samples())  # the same requests, another directory
    doc = cmp.compare(a, b, tmp_path / "out")
    judged = [m for m in doc["metrics"] if m["interval"]]
    assert len(judged) == 9
    assert all(m["delta"] == 0 and m["change"] == "same" for m in doc["metrics"] if m["a"] is not None)
    assert all(m["judgement"] == "within noise" and m["interval"]["low"] < 0 < m["interval"]["high"] for m in judged)
    # fixed seed: the same two runs, the same intervals
    assert cmp.compare(a, b, tmp_path / "again")["metrics"] == doc["metrics"]


def test_same_path_twice_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run_dir(tmp_path / "a", _samples(n=60))
    assert cmp.main([str(a), str(a), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any("p95 latency" in line and "within noise" in line for line in out)
    assert out[-1].startswith("compare: ") and (tmp_path / "out" / cmp.HTML_FILE).is_file()


def test_missing_samples_omit_intervals_and_say_so(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", _samples())
    (a / SAMPLES_FILE).unlink()
    b = _run_dir(tmp_path / "b", _samples(slow=2.0, seed=8))
    doc = cmp.compare(a / RESULTS_FILE, b, tmp_path / "out")
    assert all(m["interval"] is None and m["judgement"] is None for m in doc["metrics"])
    assert _rows(doc)["p95_latency_ms"]["change"] == "worse"  # the documents' own values still compare
    assert doc["notes"][0].startswith(f"A: no {SAMPLES_FILE} next to")
    assert doc["a"]["samples"] == 0 and doc["b"]["samples"] == 200
    assert (tmp_path / "out" / cmp.PNG_FILE).is_file()  # B's curves alone


def test_samples_of_another_run_are_not_used(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", _samples())
    write_samples(a / SAMPLES_FILE, _samples(n=50))
    doc = cmp.compare(a, a, tmp_path / "out")
    assert "not its samples" in doc["notes"][0] and not any(m["interval"] for m in doc["metrics"])


def test_pooled_percentiles_match_numpy_weighted_percentile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ITL bootstrap's fast path gives numpy's weighted (inverted-CDF) percentile of each resample."""
    monkeypatch.setattr(cmp, "RESAMPLES", 40)
    rng = np.random.default_rng(3)
    groups = [list(rng.gamma(2, 20, size=int(rng.integers(1, 40)))) for _ in range(120)]
    draws = cmp._boot_pooled_percentiles(np.random.default_rng(5), groups, [50.0, 95.0])
    values, owner = np.concatenate(groups), np.repeat(np.arange(120), [len(g) for g in groups])
    drawn = np.random.default_rng(5).integers(0, 120, size=(40, 120))  # the same draws
    for row, picked in zip(draws, drawn, strict=True):
        weights = np.bincount(picked, minlength=120)[owner].astype(float)
        assert row == pytest.approx(np.percentile(values, [50, 95], weights=weights, method="inverted_cdf"))


def _one_line_exit_3(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cmp.main(argv)
    assert exc.value.code == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    return err


def test_bad_input_is_one_line_and_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _run_dir(tmp_path / "good", _samples(n=30))
    out = ["--output", str(tmp_path / "out")]
    assert "no such file" in _one_line_exit_3([str(tmp_path / "missing"), str(good), *out], capsys)
    (tmp_path / "empty").mkdir()
    assert f"no {RESULTS_FILE}" in _one_line_exit_3([str(good), str(tmp_path / "empty"), *out], capsys)
    (tmp_path / "notes.txt").write_text("hello\n")
    assert "not a load results document" in _one_line_exit_3([str(tmp_path / "notes.txt"), str(good), *out], capsys)
    (tmp_path / "other.json").write_text('{"suite": "smoke", "tests": []}')
    assert "not a load results document" in _one_line_exit_3([str(good), str(tmp_path / "other.json"), *out], capsys)
    errored = tmp_path / "errored"
    write_json(errored / RESULTS_FILE, {"verdict": "error: LOAD_USERS must be an integer", "load_test": None})
    assert "LOAD_USERS" in _one_line_exit_3([str(errored), str(good), *out], capsys)
    _one_line_exit_3([str(good)], capsys)  # B missing
    _one_line_exit_3([str(good), str(good), "--bogus"], capsys)
    (tmp_path / "file").write_text("")
    assert "cannot write" in _one_line_exit_3([str(good), str(good), "--output", str(tmp_path / "file")], capsys)
    assert not (tmp_path / "out").exists()


# --- invoke ---------------------------------------------------------------------------------------


def test_invoke_load_collection_has_the_run_as_default_and_compare() -> None:
    pytest.importorskip("invoke")
    from invoke_tasks.load import load

    assert load.name == "load" and sorted(load.task_names) == ["compare", "run"]
    assert load.default == "run" and load[""] is load["run"]  # `invoke load` runs the load test as before
    assert [a.name for a in load["compare"].get_arguments() if a.positional] == ["a", "b"]


def test_invoke_load_compare_calls_the_same_main(tmp_path: Path) -> None:
    pytest.importorskip("invoke")
    from invoke import Context
    from invoke_tasks.load import load

    a = _run_dir(tmp_path / "a", _samples(n=40))
    load["compare"](Context(), str(a), str(a), output=str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / cmp.JSON_FILE).read_text())["a"]["results"] == str(a / RESULTS_FILE)
    with pytest.raises(SystemExit) as exc:
        load["compare"](Context(), str(tmp_path / "missing"), str(a), output=str(tmp_path / "out"))
    assert exc.value.code == 3
