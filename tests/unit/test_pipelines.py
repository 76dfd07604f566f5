"""Pipelines: plans from the layer table, combined report, worst exit code, skips that say why."""

from __future__ import annotations

import json
import threading
import time

import jsonschema
import pytest

from llmpyramid import layers, pipelines
from llmpyramid.errors import ConfigError, ExitCode
from llmpyramid.target import Target


@pytest.mark.parametrize("name", list(pipelines.PIPELINES))
def test_every_pipeline_has_a_plan_made_of_known_layers(name):
    plan = pipelines.plan(name)
    assert plan["steps"] and all(step["layer"] in layers.names() for step in plan["steps"])
    assert plan["estimated_seconds"] == sum(step["estimated_seconds"] for step in plan["steps"])
    assert plan["estimated_cost"]["eur"] >= 0
    assert pipelines.plan_text(plan).startswith(f"pipeline {name}")


def test_ci_is_exactly_what_plain_nox_runs():
    assert [s["layer"] for s in pipelines.plan("ci")["steps"]] == layers.default_names()


def test_staging_cost_is_the_hourly_price_times_the_time():
    plan = pipelines.plan("staging", pipelines.PipelineSettings(staging_eur_per_hour=3.6))
    assert plan["estimated_cost"]["eur"] == pytest.approx(plan["estimated_seconds"] / 1000, abs=1e-4)


def test_unknown_pipeline_and_missing_url_are_configuration_errors(monkeypatch):
    with pytest.raises(ConfigError, match="unknown pipeline"):
        pipelines.plan("nightly")
    monkeypatch.delenv("BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="needs --base-url"):
        pipelines.run("preprod")
    with pytest.raises(ConfigError, match="does not apply"):
        pipelines.run("local", base_url="http://127.0.0.1:1")


def _document(exit_code: int, error: str | None = None, statuses: tuple[str, ...] = ("passed",)) -> dict:
    tests = [{"name": f"t{i}", "status": s, **({"reason": "no tflint"} if s == "skipped" else {})}
             for i, s in enumerate(statuses)]  # fmt: skip
    summary = {"total": len(tests), "skipped": statuses.count("skipped")}
    return {"exit_code": exit_code, "summary": summary, "tests": tests, **({"error": error} if error else {})}


def _fake_nox(docs: dict[str, dict]):
    """run_child stand-in: `nox -s LAYER` writes docs[LAYER] where the executor writes its document."""

    def run_child(argv, env, **_kw):
        layer = argv[argv.index("-s") + 1]
        doc = docs.get(layer, _document(0))
        with open(f"{env[layers.REPORT_DIR_ENV]}/{layers.STEP_RESULTS_FILE}", "w") as fh:
            json.dump(doc, fh)
        return 0 if doc["exit_code"] == 0 else 1  # nox says only 0 or 1

    return run_child


def test_worst_exit_code_and_dependent_steps_skipped_with_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(pipelines, "run_child", _fake_nox({"smoke": _document(2, "unreachable"), "lint": _document(1)}))
    report = pipelines.run("local", notify=lambda _m: None)
    pipelines.validate(report)
    by_step = {s["step"]: s for s in report["steps"]}
    assert report["exit_code"] == ExitCode.INFRASTRUCTURE  # worst: 2 over 1
    assert by_step["lint"]["status"] == "failed" and by_step["smoke"]["exit_code"] == 2
    for dependent in ("integration", "contract"):
        assert by_step[dependent]["status"] == "skipped"
        assert "smoke did not pass" in by_step[dependent]["reason"]
    assert json.loads((tmp_path / "pipeline-local.json").read_text()) == report


def test_report_schema_rejects_a_bad_status():
    report = {"schema_version": 1, "pipeline": "x", "target": None, "steps": [], "exit_code": 0,
              "duration_seconds": 0, "cost": {"eur": 0, "basis": ""}, "report_file": "x"}  # fmt: skip
    pipelines.validate(report)
    report["steps"] = [{"step": "a", "layer": "a", "status": "green", "exit_code": 0, "duration_seconds": 0,
                        "cost_class": "free", "results_file": None}]  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        pipelines.validate(report)


def test_preprod_runs_the_hybrid_layer_against_the_deployments_router_when_given(monkeypatch, tmp_path):
    assert "hybrid" not in [s["layer"] for s in pipelines.plan("preprod")["steps"]]
    monkeypatch.setenv("PREPROD_ROUTER_URL", "https://router.example")
    settings = pipelines.PipelineSettings.from_env()
    (step,) = [s for s in pipelines._preprod_steps(settings) if s.layer == "hybrid"]
    assert step.requires == ("smoke",) and callable(step.posargs)
    ctx = pipelines.RunContext("preprod", tmp_path, settings, target=Target("http://preprod:8080"))
    assert step.posargs(ctx) == ("--router-url", "https://router.example", "--base-url", "http://preprod:8080")
    monkeypatch.setenv("PREPROD_ROUTER_URL", "ftp://x")
    with pytest.raises(ConfigError, match="PREPROD_ROUTER_URL"):
        pipelines.PipelineSettings.from_env()


def test_preprod_clouds_and_sustained_duration_are_knobs(monkeypatch, tmp_path):
    monkeypatch.setenv("PREPROD_CLOUDS", "gcp")
    monkeypatch.setenv("PREPROD_SUSTAINED_DURATION", "5m")
    steps = pipelines.plan("preprod")["steps"]
    assert [s["step"] for s in steps if s["layer"] == "cloud"] == ["cloud_gcp"]
    monkeypatch.setenv("PREPROD_CLOUDS", "none")
    assert not [s for s in pipelines.plan("preprod")["steps"] if s["layer"] == "cloud"]
    settings = pipelines.PipelineSettings.from_env()
    sustained = next(s for s in pipelines._preprod_steps(settings) if s.name == "load_sustained")
    sweep = tmp_path / "load_sweep" / "load_results.json"
    sweep.parent.mkdir()
    levels = [{"users": 1, "requests": 9}, {"users": 2, "requests": 7}, {"users": 4, "requests": 0}]
    sweep.write_text(json.dumps({"load_test": {"sweep": {"knee": {"users": 2, "reason": "r"}, "levels": levels}}}))
    assert callable(sustained.posargs)
    ctx = pipelines.RunContext("preprod", tmp_path, settings)
    # the sustained time split over PREPROD_REPEAT runs (default 3), gated on their 95 % intervals
    assert sustained.posargs(ctx)[:5] == ("--duration", "100s", "--", "--users", "2")
    assert sustained.posargs(ctx)[-2:] == ("--repeat", "3")
    assert ctx.step_note and "knee, 2 users" in ctx.step_note
    # still rising at the top level that completed requests: held there, and the note says so
    sweep.write_text(
        json.dumps({"load_test": {"sweep": {"knee": {"users": None, "reason": "rising"}, "levels": levels}}})
    )
    assert sustained.posargs(ctx)[3:5] == ("--users", "2")
    assert "no knee (rising)" in ctx.step_note
    sweep.write_text(json.dumps({"load_test": {"sweep": {"knee": {"users": None}, "levels": levels[2:]}}}))
    with pytest.raises(ConfigError, match="no requests"):
        sustained.posargs(ctx)
    monkeypatch.setenv("PREPROD_CLOUDS", "aws,ibm")
    with pytest.raises(ConfigError, match="PREPROD_CLOUDS: unknown ibm"):
        pipelines.plan("preprod")
    monkeypatch.setenv("PREPROD_CLOUDS", "aws")
    monkeypatch.setenv("PREPROD_SUSTAINED_DURATION", "nan")
    with pytest.raises(ConfigError, match="PREPROD_SUSTAINED_DURATION"):
        pipelines.plan("preprod")


def test_cloud_smoke_without_credentials_is_a_skipped_optional_step_not_a_pass(monkeypatch, tmp_path):
    """The cloud layer says exit 3 without credentials (as `nox -s cloud` does); preprod reports the step skipped."""
    monkeypatch.setenv("PIPELINE_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("PREPROD_CLOUDS", "aws")
    no_credentials = _document(3, "aws is not enabled in SkyPilot: no credentials", ("failed",))
    monkeypatch.setattr(pipelines, "run_child", _fake_nox({"cloud": no_credentials}))
    monkeypatch.setattr(pipelines, "check_reachable", lambda _t: None)
    monkeypatch.setattr(pipelines, "_knee_users", lambda _ctx: ("--users", "1"))
    report = pipelines.run("preprod", base_url="http://127.0.0.1:9", notify=lambda _m: None)
    cloud = next(s for s in report["steps"] if s["layer"] == "cloud")
    assert cloud["status"] == "skipped" and "no credentials" in cloud["reason"]
    assert report["exit_code"] == 0


@pytest.mark.parametrize(
    ("doc", "rc", "status", "code", "reason"),
    [
        (_document(0), 0, "passed", 0, None),
        (_document(0, statuses=("passed", "skipped")), 0, "passed", 0, "passed with 1 skipped: no tflint"),
        (_document(0, statuses=("skipped", "skipped")), 0, "skipped", 0, "skipped: no tflint"),
        (_document(3, "bad flag"), 1, "error", 3, "bad flag"),
        (_document(1), 1, "failed", 1, None),
        (None, 1, "error", 1, "wrote no results document"),
    ],
)
def test_a_step_is_judged_by_its_document_and_a_skip_is_never_a_pass(doc, rc, status, code, reason):
    verdict = pipelines.step_verdict(doc, rc)
    assert (verdict["status"], verdict["exit_code"]) == (status, code)
    assert (reason is None and "reason" not in verdict) or reason in verdict["reason"]


def test_preprod_cost_adds_what_the_cloud_steps_cost(tmp_path):
    doc = tmp_path / "results.json"
    doc.write_text(json.dumps({"tests": [{"name": "test_teardown", "metrics": {"cost_usd": 0.0125}}, {"name": "x"}]}))
    steps = [{"layer": "cloud", "results_file": str(doc)}, {"layer": "cloud", "results_file": None},
             {"layer": "smoke", "results_file": str(doc)}]  # fmt: skip
    settings = pipelines.PipelineSettings(preprod_eur_per_run=5.0)
    cost = pipelines._actual_cost(pipelines.get("preprod"), settings, {"steps": steps, "duration_seconds": 60})
    assert cost["eur"] == 5.0 and cost["cloud_usd"] == pytest.approx(0.0125)


def test_a_concurrent_pipeline_starts_a_step_once_what_it_requires_has_finished(monkeypatch, tmp_path):
    """`invoke local`: lint, unit and smoke side by side; integration and contract only after smoke passed."""
    monkeypatch.setenv("PIPELINE_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("PIPELINE_PARALLEL", "3")
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    fake = _fake_nox({})

    def run_child(argv, env, **kw):
        layer = argv[argv.index("-s") + 1]
        with lock:
            events.append(("start", layer))
        time.sleep(0.05)
        rc = fake(argv, env, **kw)
        with lock:
            events.append(("end", layer))
        return rc

    monkeypatch.setattr(pipelines, "run_child", run_child)
    report = pipelines.run("local", notify=lambda _m: None)
    pipelines.validate(report)
    assert [s["step"] for s in report["steps"]] == ["lint", "unit", "smoke", "integration", "contract"]
    assert all(s["status"] == "passed" and s["log"].endswith("session.log") for s in report["steps"])
    assert {layer for kind, layer in events[:3]} == {"lint", "unit", "smoke"}, events  # the first three at once
    for dependent in ("integration", "contract"):
        assert events.index(("end", "smoke")) < events.index(("start", dependent)), events
