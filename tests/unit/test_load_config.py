"""Load configuration: environment, flags and SLO files; every bad value is a one-line ConfigError."""

from __future__ import annotations

import pytest

from llmpyramid.config import Settings
from llmpyramid.errors import ConfigError, ExitCode
from llmpyramid.load.cli import build_parser, config_from_args, main
from llmpyramid.load.config import SLO, LoadConfig
from llmpyramid.load.suite import LoadSuiteSettings

LOAD_VARS = ["LOAD_SHAPE", "LOAD_USERS", "LOAD_DURATION", "LOAD_SLO_FILE", "LOAD_MIX", "LOAD_MAX_TOKENS",
             "SLO_P95_LATENCY_MS", "SLO_ERROR_RATE", "BASE_URL", "LOAD_MIN_REQUESTS", "LOAD_MAX_DURATION",
             "LOAD_PLOTS", "LOAD_RESULTS_DIR", "API_KEY", "LOAD_WORKERS", "LOAD_BASELINE",
             "LOAD_BASELINE_TOLERANCE"]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LOAD_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_seed_command() -> None:
    cfg = LoadConfig.from_env()
    assert (cfg.shape, cfg.users, cfg.spawn_rate, cfg.duration) == ("constant", 10, 2.0, 60.0)
    assert cfg.slo.active() == {"error_rate": 0.0}


def test_env_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOAD_USERS", "3")
    monkeypatch.setenv("LOAD_MIX", "chat_stream=3,completion=1")
    cfg = LoadConfig.from_env(duration=20)
    assert cfg.users == 3 and cfg.duration == 20 and cfg.mix == {"chat_stream": 3, "completion": 1}
    assert LoadConfig.from_env(users=5).users == 5


def test_round_trip_through_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = LoadConfig.from_env(shape="sweep", sweep_max_users=8, max_tokens="16,32", slo=SLO(p95_latency_ms=500))
    for k, v in cfg.to_env().items():
        monkeypatch.setenv(k, v)
    again = LoadConfig.from_env()
    assert again == cfg
    assert again.sweep_levels == [1, 2, 4, 8]


def test_sweep_levels_end_at_the_maximum() -> None:
    assert LoadConfig(shape="sweep", sweep_max_users=12).sweep_levels == [1, 2, 4, 8, 12]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"users": 0}, "LOAD_USERS must be between 1 and 100000, got 0"),
        ({"duration": -5}, r"LOAD_DURATION must be between 0.1 and 604800.0, got -5"),
        ({"shape": "zigzag"}, "LOAD_SHAPE must be one of constant, sweep, rate, got 'zigzag'"),
        ({"users": "many"}, "LOAD_USERS must be an integer"),
        ({"rate": 0}, "LOAD_RATE must be between 0.001 and 100000, got 0"),
        ({"mix": "chat_stream=1,video=2"}, "LOAD_MIX: unknown request kind 'video'"),
        ({"mix": "chat=0"}, "LOAD_MIX 'chat=0' has no request kind with a positive weight"),
        ({"max_tokens": "0"}, "LOAD_MAX_TOKENS must be >= 1"),
        ({"sweep_step": 1}, "LOAD_SWEEP_STEP must be between 2 and 604800.0, got 1"),
        ({"colour": "red"}, "unknown load setting"),
    ],
)
def test_bad_values_raise_config_error(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        LoadConfig.from_env(**overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("settings", "var", "raw", "message"),
    [
        (LoadConfig, "LOAD_DURATION", "nan", "LOAD_DURATION must be a duration like 60, 60s, 2m or 1h, got 'nan'"),
        (LoadConfig, "LOAD_DURATION", "-5s", "LOAD_DURATION must be a duration"),
        (LoadConfig, "LOAD_MAX_DURATION", "1e999", "LOAD_MAX_DURATION must be a duration"),
        (LoadConfig, "LOAD_SPAWN_RATE", "inf", "LOAD_SPAWN_RATE must be a finite number, got 'inf'"),
        (LoadConfig, "LOAD_RATE", "nan", "LOAD_RATE must be a finite number"),
        (LoadConfig, "LOAD_SWEEP_MIN_GAIN", "1.5", "LOAD_SWEEP_MIN_GAIN must be between 0 and 1, got 1.5"),
        (LoadConfig, "LOAD_REQUEST_TIMEOUT", "0", "LOAD_REQUEST_TIMEOUT must be between 0.1 and 3600, got 0.0"),
        (LoadConfig, "LOAD_SEED", "nan", "LOAD_SEED must be an integer"),
        (LoadConfig, "LOAD_PLOTS", "maybe", "LOAD_PLOTS must be one of"),
        (LoadConfig, "LOAD_SHAPE", "zigzag", "LOAD_SHAPE must be one of constant, sweep, rate"),
        (LoadConfig, "LOAD_MIX", "chat=abc", "LOAD_MIX weight of chat must be an integer"),
        (LoadConfig, "LOAD_RESULTS_DIR", " ", "LOAD_RESULTS_DIR must be a path, got ' '"),
        (LoadSuiteSettings, "LOAD_WORKERS", "abc", "LOAD_WORKERS must be an integer"),
        (LoadSuiteSettings, "LOAD_WORKERS", "65", "LOAD_WORKERS must be between 0 and 64, got 65"),
        (LoadSuiteSettings, "LOAD_BASELINE_TOLERANCE", "nan", "LOAD_BASELINE_TOLERANCE must be a finite number"),
        (LoadSuiteSettings, "LOAD_BASELINE_TOLERANCE", "-0.1", "LOAD_BASELINE_TOLERANCE must be between 0 and 10"),
    ],
)
def test_bad_environment_values_name_the_variable(
    settings: type[Settings], var: str, raw: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.from_env()  # the defaults are valid
    monkeypatch.setenv(var, raw)
    with pytest.raises(ConfigError, match=message) as info:
        settings.from_env()
    assert info.value.exit_code == ExitCode.CONFIGURATION and "\n" not in str(info.value)


def test_every_default_goes_through_its_parser() -> None:
    cfg = LoadConfig()
    assert cfg.mix == {"chat_stream": 6, "completion_stream": 2, "chat": 1, "completion": 1}
    assert cfg.max_tokens == (32, 64, 128) and cfg.max_duration is None and cfg.ignore_eos and cfg.plots
    assert LoadConfig(shape="SWEEP").shape == "sweep"


@pytest.mark.parametrize(("raw", "seconds"), [("60", 60), ("60s", 60), ("2m", 120), ("1h", 3600), ("1.5", 1.5)])
def test_duration_spans(raw: str, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_from_args(build_parser().parse_args(["-t", raw])).duration == seconds
    monkeypatch.setenv("LOAD_DURATION", raw)  # the environment takes the same spans
    assert LoadConfig.from_env().duration == seconds


@pytest.mark.parametrize("raw", ["-5s", "0", "abc", "5x", "nan", "inf"])
def test_bad_duration_spans(raw: str) -> None:
    with pytest.raises(ConfigError):
        config_from_args(build_parser().parse_args([f"--duration={raw}"]))


def test_min_requests_and_max_duration() -> None:
    cfg = LoadConfig.from_env()
    assert cfg.min_requests == 20 and cfg.effective_max_duration == 180  # max(120 s, 3 x 60 s)
    assert LoadConfig.from_env(duration=20).effective_max_duration == 120
    assert LoadConfig.from_env(duration=20, max_duration="2m", min_requests=5).effective_max_duration == 120
    with pytest.raises(ConfigError, match="LOAD_MIN_REQUESTS must be between 1 and"):
        LoadConfig.from_env(min_requests=0)
    with pytest.raises(ConfigError, match="LOAD_MAX_DURATION 10s is shorter than the run's duration 20s"):
        LoadConfig.from_env(duration=20, max_duration=10)


def test_slo_from_toml_and_env_override(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "slo.toml"
    f.write_text("[slo]\np95_latency_ms = 800\nttft_p95_ms = 300\nerror_rate = 0.01\n")
    assert SLO.from_file(f) == SLO(p95_latency_ms=800, ttft_p95_ms=300, error_rate=0.01)
    monkeypatch.setenv("SLO_P95_LATENCY_MS", "500")
    assert SLO.from_env(f).p95_latency_ms == 500


def test_slo_from_json(tmp_path) -> None:
    f = tmp_path / "slo.json"
    f.write_text('{"min_output_tokens_per_second": 50}')
    assert SLO.from_file(f).min_output_tokens_per_second == 50


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("[slo\np95 = 1", ".toml", "is malformed"),
        ('{"slo": [1, 2]}', ".json", "expected a table"),
        ("[slo]\np99_latency = 5\n", ".toml", "unknown SLO key"),
        ('[slo]\np95_latency_ms = "fast"\n', ".toml", "must be a number"),
        ("[slo]\nerror_rate = 5\n", ".toml", "fraction between 0 and 1"),
        ("[slo]\np95_latency_ms = -1\n", ".toml", "must be >= 0"),
    ],
)
def test_malformed_slo_files(tmp_path, text: str, suffix: str, message: str) -> None:
    f = tmp_path / f"slo{suffix}"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        SLO.from_file(f)
    assert "\n" not in str(info.value)


def test_missing_slo_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        SLO.from_file(tmp_path / "nope.toml")


def test_cli_flags_build_the_config() -> None:
    args = build_parser().parse_args(["--shape", "rate", "--rate", "3", "-t", "2m", "--max-tokens", "8"])
    cfg = config_from_args(args)
    assert (cfg.shape, cfg.rate, cfg.duration, cfg.max_tokens) == ("rate", 3.0, 120.0, (8,))


@pytest.mark.parametrize(
    "argv",
    [["-u", "0"], ["--duration=-5s"], ["--shape", "zigzag"], ["--workers", "-1"], ["--bogus"], ["--tolerance", "x"]],
)
def test_cli_bad_input_exits_3_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == ExitCode.CONFIGURATION
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_cli_malformed_slo_file_exits_3(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "slo.toml"
    f.write_text("slo = [1,\n")
    with pytest.raises(SystemExit) as info:
        main(["--slo-file", str(f)])
    assert info.value.code == 3
    assert "malformed" in capsys.readouterr().err


def test_a_gate_can_be_switched_off_and_survives_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLO_ERROR_RATE", "off")
    cfg = LoadConfig.from_env()
    assert cfg.slo.error_rate is None and cfg.slo.active() == {}
    assert cfg.to_env()["SLO_ERROR_RATE"] == "off"
