"""Cloud layer library code without a cloud: settings, names, prices, task files, steps, exit codes.

Mocks only here: `FakeSmoke` stands in for SkyPilot to prove the step/teardown/exit-code logic of
llmpyramid.cloud.suite; the real SkyPilot paths run against moto in tests/cloud_emulated.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest

from llmpyramid import results
from llmpyramid.checks.shared import CheckFailed
from llmpyramid.cloud.settings import CloudSettings
from llmpyramid.cloud.smoke import CloudSmoke, cluster_name, parse_cluster_name
from llmpyramid.errors import ConfigError, ExitCode, InfrastructureError

# --- settings ---------------------------------------------------------------------------------------


def test_defaults_are_the_seed_instances():
    assert [CloudSettings.from_env({}, cloud=c).instance for c in ("aws", "gcp", "azure")] == [
        "r7a.large",
        "n2d-highmem-2",
        "Standard_E2s_v5",
    ]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CLOUD": "ibm"}, "CLOUD"),
        ({"CLOUD_LAUNCH_TIMEOUT": "soon"}, "CLOUD_LAUNCH_TIMEOUT"),
        ({"CLOUD_HEALTH_TIMEOUT": "0"}, "CLOUD_HEALTH_TIMEOUT"),
        ({"CLOUD_MAX_COST_USD": "-1"}, "CLOUD_MAX_COST_USD"),
        ({"CLOUD_MAX_COST_USD": "nan"}, "CLOUD_MAX_COST_USD"),
        ({"CLOUD_TEARDOWN_TIMEOUT": "0"}, "CLOUD_TEARDOWN_TIMEOUT"),
        ({"CLOUD_USE_SPOT": "maybe"}, "CLOUD_USE_SPOT"),
        ({"CLOUD_MODEL_URL": "http://x/m.gguf"}, "CLOUD_MODEL_URL"),
        ({"CLOUD_MODEL_SHA256": "abc"}, "CLOUD_MODEL_SHA256"),
    ],
)
def test_bad_settings_are_configuration_errors_naming_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        CloudSettings.from_env(env)


def test_durations_accept_units():
    assert CloudSettings.from_env({"CLOUD_HEALTH_TIMEOUT": "2m"}).health_timeout == 120


# --- cluster names ----------------------------------------------------------------------------------


def test_cluster_name_encodes_cloud_and_utc_time_and_reads_back():
    now = datetime(2026, 11, 28, 6, 30, 5, tzinfo=UTC)
    name = cluster_name("gcp", now)
    assert name.startswith("wf-smoke-gcp-20261128-063005-")
    assert cluster_name("gcp", now) != name  # random suffix: two runs in one second do not collide
    parsed = parse_cluster_name(name)
    assert parsed is not None and (parsed.cloud, parsed.created) == ("gcp", now)
    assert parse_cluster_name(name + "-2ea4e8a1") is not None  # SkyPilot's name on the cloud


@pytest.mark.parametrize("name", ["wf-smoke-aws", "prod-aws-20261128-063005", "wf-smoke-ibm-20261128-063005-ab"])
def test_other_clusters_are_never_ours(name):
    assert parse_cluster_name(name) is None


# --- prices from SkyPilot's catalog code (needs the `cloud` group) ------------------------------------


@pytest.fixture
def catalog():
    pytest.importorskip("sky", reason="SkyPilot is in the `cloud` dependency group (uv sync --group cloud)")
    from llmpyramid.cloud import catalog

    return catalog


def test_catalog_version_is_skypilots(catalog):
    from sky.skylet import constants

    assert constants.CATALOG_SCHEMA_VERSION == catalog.CATALOG_VERSION


def test_spot_prices_per_zone_come_from_the_pinned_rows(catalog):
    prices = catalog.zone_prices("aws", "r7a.large", "us-east-1", True)
    assert prices == {
        "use1-az1": 0.0635,
        "use1-az2": 0.0752,
        "use1-az4": 0.0978,
        "use1-az5": 0.0525,
        "use1-az6": 0.0477,
    }
    assert set(catalog.zone_prices("aws", "r7a.large", "us-east-1", False).values()) == {0.15215}


def test_estimate_and_guard(catalog):
    est = catalog.estimate(CloudSettings.from_env({}, cloud="aws"))
    assert (est.hourly_low_usd, est.hourly_high_usd) == (0.0477, 0.0978)
    assert est.worst_case_usd == pytest.approx(0.0978 * est.worst_case_seconds / 3600)
    catalog.guard(est)
    tight = catalog.estimate(CloudSettings.from_env({"CLOUD_MAX_COST_USD": "0.01"}, cloud="aws"))
    with pytest.raises(ConfigError, match="cost guard"):
        catalog.guard(tight)


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_gcp_and_azure_are_priced_offline(catalog, cloud):
    est = catalog.estimate(CloudSettings.from_env({}, cloud=cloud))
    assert 0 < est.hourly_low_usd <= est.hourly_high_usd < 0.1


def test_an_instance_missing_from_the_catalog_is_a_configuration_error(catalog):
    with pytest.raises(ConfigError, match="not in the pinned catalog"):
        catalog.estimate(CloudSettings.from_env({"CLOUD_INSTANCE_TYPE": "r7a.huge"}, cloud="aws"))


# --- the node entry point ---------------------------------------------------------------------------


def test_node_serves_with_the_key_in_the_environment_not_on_argv(monkeypatch, tmp_path):
    from llmpyramid.cloud import node

    monkeypatch.setenv("SERVE_PORT", "8080")
    argv = node.serve_argv(tmp_path / "m.gguf")
    assert argv[argv.index("--api-key-env") + 1] == "API_KEY"
    monkeypatch.setenv("SERVE_THREADS", "1")
    argv = node.serve_argv(tmp_path / "m.gguf")
    assert argv[argv.index("--threads") + 1] == "1"
    monkeypatch.setenv("SERVE_THREADS", "0")
    with pytest.raises(ConfigError, match="SERVE_THREADS"):
        node.serve_argv(tmp_path / "m.gguf")
    monkeypatch.delenv("SERVE_THREADS")
    monkeypatch.setenv("SERVE_PORT", "http")
    with pytest.raises(ConfigError, match="SERVE_PORT"):
        node.serve_argv(tmp_path / "m.gguf")


def test_node_refuses_to_serve_without_a_key(monkeypatch):
    from llmpyramid.cloud import node

    monkeypatch.delenv("API_KEY", raising=False)
    with pytest.raises(SystemExit) as exc:
        node.main(["serve"])
    assert exc.value.code == 3


# --- steps, teardown and exit codes (FakeSmoke stands in for SkyPilot) --------------------------------


class FakeSmoke(CloudSmoke):
    def __init__(self, fail_at=None, exc=None, launched_before_failure=True):
        super().__init__(CloudSettings.from_env({}, cloud="aws"), log=lambda m: None, cluster="wf-smoke-aws-x")
        self.fail_at, self.exc, self.calls = fail_at, exc, []
        self.launched_before_failure = launched_before_failure

    def _step(self, name):
        self.calls.append(name)
        if name == "launch" and (self.fail_at != "launch" or self.launched_before_failure):
            self.launched = True
            self.base_url = "http://198.51.100.7:8080"
        if name == self.fail_at:
            raise self.exc

    def guard_cost(self):
        self._step("guard_cost")
        from llmpyramid.cloud.catalog import Estimate

        self.estimate = Estimate("aws", "r7a.large", "us-east-1", True, 0.05, 0.1, 3600, 1.0)
        return self.estimate

    def check_credentials(self):
        self._step("credentials")

    def launch(self):
        self.timed("launch", lambda: self._step("launch"))

    def wait_healthy(self):
        self._step("health")

    def inference(self, kind):
        self._step(kind)
        return {"completion_tokens": 3}

    def teardown(self):
        self.calls.append("teardown")
        self.torn_down = True
        return True


@pytest.fixture(autouse=True)
def no_skypilot(monkeypatch):
    from llmpyramid.cloud import api_server, sweeper

    monkeypatch.setattr(api_server, "scope", lambda run_dir: contextlib.nullcontext())
    monkeypatch.setattr(sweeper, "sweep", lambda *a, **k: sweeper.SweepReport("aws", False))


def run(smoke, **kwargs):
    from llmpyramid.cloud.suite import run_smoke

    doc, code = run_smoke(smoke.settings, smoke=smoke, **kwargs)
    results.validate(doc)
    return doc, code


def test_all_steps_pass_then_teardown():
    smoke = FakeSmoke()
    doc, code = run(smoke)
    assert code == ExitCode.OK and doc["exit_code"] == 0
    assert [t["name"] for t in doc["tests"]] == [
        "cloud_credentials", "stale_clusters_swept", "spot_launch", "instance_healthy",
        "completion", "chat_completion", "teardown",
    ]  # fmt: skip
    assert smoke.calls[-1] == "teardown"
    assert (doc["passed"], doc["failed"]) == (7, 0)
    block = doc["cloud"]
    assert (block["cloud"], block["instance_type"], block["spot"], block["cluster"]) == (
        "aws", "r7a.large", True, "wf-smoke-aws-x",
    )  # fmt: skip
    assert block["cost"]["estimated_usd"] == pytest.approx(0.1 * block["cost"]["billed_seconds"] / 3600, abs=1e-6)
    assert smoke.api_key not in json.dumps(doc)


@pytest.mark.parametrize(
    ("fail_at", "exc", "code"),
    [
        ("credentials", ConfigError("aws is not enabled"), ExitCode.CONFIGURATION),
        ("launch", InfrastructureError("no capacity in any zone"), ExitCode.INFRASTRUCTURE),
        ("health", CheckFailed("not healthy"), ExitCode.FAILURES),
        ("completion", CheckFailed("bad body"), ExitCode.FAILURES),
    ],
)
def test_a_failing_step_stops_the_rest_and_teardown_still_runs(fail_at, exc, code):
    smoke = FakeSmoke(fail_at, exc)
    doc, got = run(smoke)
    assert got == code and doc["exit_code"] == int(code)
    statuses = [t["status"] for t in doc["tests"]]
    first_bad = next(i for i, s in enumerate(statuses) if s in ("failed", "error"))
    assert all(s == "skipped" for s in statuses[first_bad + 1 : -1])
    assert doc["tests"][-1]["name"] == "teardown"
    launched = "launch" in smoke.calls
    assert (smoke.calls[-1] == "teardown") == launched
    assert doc["tests"][-1]["status"] == ("passed" if launched else "skipped")
    assert doc["failed"] == 1


def test_cost_guard_refusal_launches_nothing():
    smoke = FakeSmoke("guard_cost", ConfigError("cost guard: too expensive"))
    doc, code = run(smoke)
    assert code == ExitCode.CONFIGURATION and "cost guard" in doc["error"]
    assert "launch" not in smoke.calls and "teardown" not in smoke.calls


def test_skip_teardown_keeps_the_cluster_and_says_how_to_remove_it():
    smoke = FakeSmoke()
    doc, code = run(smoke, skip_teardown=True)
    assert code == ExitCode.OK and "teardown" not in smoke.calls
    reason = doc["tests"][-1]["reason"]
    for command in ("ssh wf-smoke-aws-x", "sky logs wf-smoke-aws-x", "sky down wf-smoke-aws-x -y"):
        assert command in reason


def test_an_interrupt_mid_launch_still_tears_down():
    smoke = FakeSmoke("launch", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run(smoke)
    assert smoke.calls[-1] == "teardown"


# --- preemption: one relaunch, then a failure that says so --------------------------------------------


class PreemptedSmoke(FakeSmoke):
    def __init__(self, preempt_times):
        super().__init__()
        self.preempt_times, self.relaunches = preempt_times, 0

    def preempted(self):
        return True

    def launch(self):
        self.relaunches += 1


def test_one_preemption_is_survived_by_one_relaunch():
    smoke = PreemptedSmoke(1)
    attempts = iter([CheckFailed("connection refused"), None])

    def step():
        exc = next(attempts)
        if exc:
            raise exc
        return "ok"

    assert smoke.survive_preemption(step) == "ok"
    assert (smoke.relaunches, smoke.preemptions) == (1, 1)


def test_a_second_preemption_fails_saying_preempted():
    smoke = PreemptedSmoke(2)

    def step():
        raise CheckFailed("connection refused")

    with pytest.raises(CheckFailed, match="preempted"):
        smoke.survive_preemption(step)
    assert smoke.relaunches == 1


def test_a_failure_without_preemption_is_not_retried():
    smoke = FakeSmoke()
    smoke.preempted = lambda: False

    def step():
        raise CheckFailed("wrong body")

    with pytest.raises(CheckFailed, match="wrong body"):
        smoke.survive_preemption(step)


# --- front door -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["smoke"],
        ["smoke", "--cloud", "ibm"],
        ["sweep", "--cloud", "aws", "--run-id", "-5m"],
        ["sweep", "--cloud", "aws", "--run-id", "Not Plain"],
        ["netns"],
    ],
)
def test_bad_flags_exit_3(argv, capsys):
    from llmpyramid.cloud.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 3
    assert capsys.readouterr().err.startswith("error: ")


def test_run_suite_needs_a_cloud():
    from llmpyramid.cloud.suite import run_suite
    from llmpyramid.runs import RunRequest

    with pytest.raises(ConfigError, match="--cloud"):
        run_suite(RunRequest(suite="cloud", target=None, cloud=None))


def test_run_suite_writes_the_seed_file_with_top_level_counts(monkeypatch, tmp_path):
    from llmpyramid.cloud import suite
    from llmpyramid.runs import RunRequest

    seed_file = tmp_path / "cloud_smoke_results.json"
    monkeypatch.setattr(suite, "SEED_RESULTS_FILE", seed_file)
    monkeypatch.setattr(suite, "CloudSmoke", lambda settings, log: FakeSmoke())
    run = suite.run_suite(RunRequest(suite="cloud", target=None, cloud="aws", duration=90, log=lambda m: None))
    written = json.loads(seed_file.read_text())
    assert (written["passed"], written["failed"]) == (7, 0) == (run.document["passed"], run.document["failed"])
    assert run.exit_code == ExitCode.OK


# --- teardown: held interrupts, and the leak-risk record -------------------------------------------------


def launched_smoke(monkeypatch, tmp_path):
    from llmpyramid.cloud import smoke as smoke_module

    monkeypatch.setattr(smoke_module, "LEAK_RISK_DIR", tmp_path)
    smoke = CloudSmoke(CloudSettings.from_env({}, cloud="aws"), log=lambda m: None, cluster="wf-smoke-aws-y")
    smoke.launched = True
    return smoke


def test_a_signal_during_teardown_waits_for_it_then_interrupts(monkeypatch, tmp_path):
    import signal

    from llmpyramid.cloud import skypilot

    def down(cluster, timeout):
        signal.raise_signal(signal.SIGINT)  # a CI cancel's SIGINT, then SIGTERM, land mid `sky down`
        signal.raise_signal(signal.SIGTERM)
        return True

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    monkeypatch.setattr(skypilot, "down", down)
    smoke = launched_smoke(monkeypatch, tmp_path)
    # a front door's handlers, not the test session's own interrupt rule (which an earlier test may have used up)
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(KeyboardInterrupt):
            smoke.teardown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert smoke.torn_down, "the teardown finished before the interrupt was delivered"
    assert list(tmp_path.iterdir()) == [], "a finished teardown leaves no leak-risk record"


def test_a_teardown_that_fails_writes_what_is_left_and_how_to_remove_it(monkeypatch, tmp_path):
    from llmpyramid.cloud import skypilot

    def down(cluster, timeout):
        raise InfrastructureError("sky down wf-smoke-aws-y did not finish within 600s")

    monkeypatch.setattr(skypilot, "down", down)
    monkeypatch.setenv("LLMPYRAMID_RUN_ID", "gh-77-1")
    smoke = launched_smoke(monkeypatch, tmp_path)
    with pytest.raises(InfrastructureError):
        smoke.teardown()
    record = json.loads((tmp_path / "cloud-leak-risk-wf-smoke-aws-y.json").read_text())
    assert record["cluster"] == "wf-smoke-aws-y" and record["run_id"] == "gh-77-1"
    assert "did not finish within 600s" in record["error"]
    assert record["remove_with"] == ["invoke cloud.sweep --cloud aws --run-id gh-77-1", "sky down wf-smoke-aws-y -y"]
    assert not smoke.torn_down
