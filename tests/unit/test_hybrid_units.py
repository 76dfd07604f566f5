"""Hybrid layer, pure parts: settings, router config checks, phase split, metrics flattening."""

from __future__ import annotations

from importlib import metadata

import pytest

from llmpyramid.errors import ConfigError
from llmpyramid.hybrid import router
from llmpyramid.hybrid.config import HybridSettings
from llmpyramid.hybrid.driver import Outcome
from llmpyramid.hybrid.report import flat_metrics, scenario_block
from llmpyramid.hybrid.scenarios import ScenarioResult, phase_stats, split_phases
from llmpyramid.load.metrics import Sample


def outcome(start: float, seconds: float, backend: str | None, ok: bool = True, streamed: bool = True) -> Outcome:
    sample = Sample(start=start, kind="chat_stream", latency_ms=seconds * 1000, ok=ok, ttft_ms=100.0 if ok else None)
    return Outcome(sample, backend=backend, status=200, streamed=streamed)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HYBRID_REQUESTS": "x"}, "HYBRID_REQUESTS must be an integer"),
        ({"HYBRID_REQUESTS": "2"}, "HYBRID_REQUESTS must be"),
        ({"HYBRID_REQUEST_TIMEOUT": "inf"}, "HYBRID_REQUEST_TIMEOUT"),
        ({"HYBRID_SCENARIOS": "a,z"}, "HYBRID_SCENARIOS must be a comma-separated subset"),
        ({"HYBRID_ROUTER_URL": "ftp://x"}, "HYBRID_ROUTER_URL is not a valid URL"),
        ({"HYBRID_BASE_URL": "http://b:8080"}, "set it too"),
        ({"HYBRID_ROUTER_URL": "http://r", "HYBRID_BASE_STOP_CMD": "true"}, "go together"),
        ({"HYBRID_ROUTER_URL": "http://r", "HYBRID_BASE_STOP_CMD": "'", "HYBRID_BASE_START_CMD": "x"},
         "not a valid command line"),
        ({"HYBRID_BASE_ID": "same", "HYBRID_BURST_ID": "same"}, "must differ"),
        ({"HYBRID_MIN_SAMPLES": "20", "HYBRID_REQUESTS": "10"}, "HYBRID_MIN_SAMPLES 20 > HYBRID_REQUESTS 10"),
    ],
)  # fmt: skip
def test_bad_settings_are_config_errors_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        HybridSettings.from_env(environ=env)


def test_defaults_build_the_reference_topology_and_run_all_five():
    s = HybridSettings.from_env(environ={})
    assert s.reference and s.scenarios == ("a", "b", "c", "d", "e")
    assert HybridSettings.from_env(environ={"HYBRID_SCENARIOS": "e, b"}).scenarios == ("b", "e")
    assert not HybridSettings.from_env(router_url="http://127.0.0.1:4000/v1").reference


def test_a_compromised_litellm_is_refused(monkeypatch):
    monkeypatch.setattr(metadata, "version", lambda _name: "1.107.0")
    with pytest.raises(ConfigError, match="known-compromised"):
        router.litellm_version()


def test_router_config_without_model_list_is_a_config_error(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("router_settings: {}\n")
    with pytest.raises(ConfigError, match="has no model_list"):
        router.load_router_config(bad)
    bad.write_text("model_list: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        router.load_router_config(bad)
    with pytest.raises(ConfigError, match="router config"):
        router.load_router_config(tmp_path / "missing.yaml")


def test_reference_router_config_is_valid_and_attributes_base_and_burst():
    config = router.load_router_config(HybridSettings().router_config)
    ids = {m["model_info"]["id"]: m["litellm_params"] for m in config["model_list"]}
    assert ids["base"]["order"] < ids["burst"]["order"]
    assert ids["base"]["max_parallel_requests"] == HybridSettings().base_slots


def test_phases_split_on_fault_and_recovery():
    outs = [
        outcome(0.0, 1.0, "base"),  # ended before the fault
        outcome(1.5, 1.0, "base", ok=False),  # in flight at the fault (2.0): during
        outcome(2.1, 0.5, "burst"),  # started after the fault, before recovery (2.6): during
        outcome(3.0, 0.5, "burst"),  # after
    ]
    phases = split_phases(outs, fault=2.0, recovered=2.6)
    assert [len(phases[p]) for p in ("before", "during", "after")] == [1, 2, 1]
    assert split_phases(outs, None, None) == {"steady": outs}
    stats = phase_stats(phases["during"])
    assert (stats["issued"], stats["served"], stats["lost"], stats["broken_streams"]) == (2, 1, 1, 1)
    assert stats["served_by"] == {"burst": 1}


def test_scenario_block_counts_share_and_flattens_to_scalars():
    r = ScenarioResult("b", "passed", 3.0, users=4, outcomes=[outcome(0, 1, "base"), outcome(0, 1, "burst"),
                                                              outcome(0, 1, "burst")])  # fmt: skip
    block = scenario_block(r, t0=0.0)
    assert (block["issued"], block["served"], block["lost"]) == (3, 3, 0)
    assert block["share"] == {"base": 0.333, "burst": 0.667}
    flat = flat_metrics(block)
    assert flat["served_by_burst"] == 2 and flat["steady_issued"] == 3
    assert all(not isinstance(v, dict | list) for v in flat.values())


def test_a_request_that_failed_before_any_token_is_not_a_broken_stream():
    assert not outcome(0, 1, "base", ok=False, streamed=False).broken
    assert outcome(0, 1, "base", ok=False, streamed=True).broken
