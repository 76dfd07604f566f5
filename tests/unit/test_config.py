"""Settings parsing: every bad value is a ConfigError (exit 3) naming the setting."""

from __future__ import annotations

import pytest

from llmpyramid.config import ModelSettings, StackSettings
from llmpyramid.errors import ConfigError, ExitCode


def test_defaults_are_loopback_8080_and_tuned_for_two_cores(monkeypatch):
    for name in ("STACK_PORT", "STACK_THREADS", "STACK_PARALLEL", "STACK_CTX_SIZE", "API_KEY", "MODEL"):
        monkeypatch.delenv(name, raising=False)
    s = StackSettings.from_env()
    assert (s.host, s.port, s.threads, s.parallel, s.ctx_size) == ("127.0.0.1", 8080, 2, 8, 8192)
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
        ({"startup_timeout": "soon"}, "STACK_STARTUP_TIMEOUT must be a number"),
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
