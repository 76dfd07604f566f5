"""Settings parsing: every bad value is a ConfigError (exit 3) naming the setting."""

from __future__ import annotations

import pytest

from llmpyramid.config import ModelSettings, StackSettings
from llmpyramid.errors import ConfigError, ExitCode


def test_defaults_are_loopback_8080_and_one_thread(monkeypatch):
    for name in ("STACK_PORT", "STACK_THREADS", "STACK_PARALLEL", "STACK_CTX_SIZE", "API_KEY", "MODEL"):
        monkeypatch.delenv(name, raising=False)
    s = StackSettings.from_env()
    assert (s.host, s.port, s.threads, s.parallel, s.ctx_size) == ("127.0.0.1", 8080, 1, 8, 8192)
    assert s.api_key is None


def test_environment_then_overrides(monkeypatch):
    monkeypatch.setenv("STACK_PORT", "9000")
    monkeypatch.setenv("STACK_PARALLEL", "4")
    s = StackSettings.from_env(parallel="2")  # CLI flags arrive as strings
    assert (s.port, s.parallel) == (9000, 2)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"port": "abc"}, "STACK_PORT must be an integer"),
        ({"port": 70000}, "STACK_PORT must be between 0 and 65535"),
        ({"threads": 0}, "STACK_THREADS must be between 1 and 256"),
        ({"parallel": 64, "ctx_size": 4096}, "tokens per request"),
        ({"startup_timeout": "soon"}, "STACK_STARTUP_TIMEOUT must be a duration"),
        ({"host": "0.0.0.0"}, "loopback only"),
        ({"bogus": 1}, "unknown stack setting(s): bogus"),
    ],
)
def test_bad_stack_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        StackSettings.from_env(**override)
    assert err.value.exit_code == ExitCode.CONFIGURATION
    assert "\n" not in str(err.value)


def test_model_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("HF_TIMEOUT", "2.5")
    monkeypatch.setenv("MODEL_OFFLINE", "1")
    m = ModelSettings.from_env()
    assert (m.model_dir, m.hf_timeout, m.offline_only) == (tmp_path, 2.5, True)
    monkeypatch.setenv("HF_TIMEOUT", "-1")
    with pytest.raises(ConfigError, match="HF_TIMEOUT"):
        ModelSettings.from_env()


# --- the one settings rule --------------------------------------------------------------------

from llmpyramid.config import parse_bool, parse_duration, parse_float, parse_int, parse_url, redact_url  # noqa: E402


@pytest.mark.parametrize(("raw", "seconds"), [("60", 60.0), ("60s", 60.0), ("2m", 120.0), ("1h", 3600.0),
                                              ("500ms", 0.5), (90, 90.0), (" 1.5m ", 90.0)])  # fmt: skip
def test_one_duration_parser_accepts_what_help_texts_promise(raw, seconds):
    assert parse_duration("LOAD_DURATION", raw) == seconds


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e999", float("nan"), float("inf")])
def test_numbers_must_be_finite(raw):
    with pytest.raises(ConfigError, match="X must be a"):
        parse_float("X", raw)
    with pytest.raises(ConfigError, match="X must be"):
        parse_duration("X", raw)


@pytest.mark.parametrize("raw", ["soon", "5 minutes", "-5s", "", "2mm", True])
def test_bad_durations_name_the_variable(raw):
    with pytest.raises(ConfigError, match=r"^X must be"):
        parse_duration("X", raw)


def test_startup_timeout_nan_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("STACK_STARTUP_TIMEOUT", "nan")
    with pytest.raises(ConfigError, match="STACK_STARTUP_TIMEOUT must be a duration") as err:
        StackSettings.from_env()
    assert err.value.exit_code == ExitCode.CONFIGURATION


def test_durations_reach_the_stack_settings(monkeypatch):
    monkeypatch.setenv("STACK_STARTUP_TIMEOUT", "2m")
    assert StackSettings.from_env().startup_timeout == 120.0


def test_ints_refuse_fractions_and_bools():
    for raw in (1.5, True, "1.5", "1e3"):
        with pytest.raises(ConfigError, match="must be an integer"):
            parse_int("N", raw)
    assert parse_int("N", 3.0) == 3


def test_bools():
    assert parse_bool("B", "yes") is True and parse_bool("B", "0") is False
    with pytest.raises(ConfigError, match="B must be one of"):
        parse_bool("B", "maybe")


@pytest.mark.parametrize(
    "raw", ["http://[::1", "ftp://host", "http://", "localhost:8080", "http://host:99999", "http://h ost"]
)
def test_malformed_urls_are_config_errors(raw):
    with pytest.raises(ConfigError, match="BASE_URL is not a valid URL") as err:
        parse_url("BASE_URL", raw)
    assert "\n" not in str(err.value)


def test_urls_are_normalised_and_credentials_never_shown():
    assert parse_url("BASE_URL", "http://h:8080/v1/") == "http://h:8080"
    assert redact_url("http://alice:s3cretpw@host:8080/x") == "http://***@host:8080/x"
    assert redact_url("http://host:8080") == "http://host:8080"
    with pytest.raises(ConfigError) as err:
        parse_url("BASE_URL", "http://alice:s3cretpw@host:notaport")
    assert "s3cretpw" not in str(err.value)


def test_parse_list_takes_commas_none_and_refuses_unknown_items():
    from llmpyramid.config import parse_list

    assert parse_list("X", "aws, gcp,aws", choices=("aws", "gcp")) == ("aws", "gcp")
    assert parse_list("X", "none", choices=("aws",)) == ()
    assert parse_list("X", ("aws",), choices=("aws",)) == ("aws",)
    with pytest.raises(ConfigError, match="X: unknown ibm"):
        parse_list("X", "aws,ibm", choices=("aws", "gcp"))
