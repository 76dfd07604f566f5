"""Load-test settings and SLO thresholds: environment variables, CLI overrides, an SLO file.

Every knob has an environment variable (so locust workers in other processes see the same
configuration) and every invalid value raises ConfigError (exit 3, one line).

Environment (all optional):

    LOAD_SHAPE            constant | sweep | rate                      (default constant)
    LOAD_USERS            concurrent users for `constant`              (default 10)
    LOAD_SPAWN_RATE       users started per second                     (default 2)
    LOAD_DURATION         minimum run time: 60, 60s, 2m (constant, rate) (default 60)
    LOAD_MIN_REQUESTS     completed requests a verdict needs           (default 20)
    LOAD_MAX_DURATION     run on past LOAD_DURATION until LOAD_MIN_REQUESTS requests are done,
                          at most this long                            (default max(120s, 3 x duration))
    LOAD_RATE             requests/second for `rate`                   (default 2)
    LOAD_MAX_INFLIGHT     cap on concurrent requests for `rate`        (default 64)
    LOAD_SWEEP_MAX_USERS  last sweep level (1, 2, 4, ... up to this)   (default 32)
    LOAD_SWEEP_STEP       seconds per sweep level                      (default 15)
    LOAD_SWEEP_MIN_GAIN   knee: throughput gain below this per doubling (default 0.10)
    LOAD_MIX              request mix, e.g. chat_stream=6,completion_stream=2,chat=1,completion=1
    LOAD_MAX_TOKENS       max_tokens choices, e.g. 32,64,128           (default 32,64,128)
    LOAD_IGNORE_EOS       1: ask the server to generate exactly max_tokens (llama.cpp, vLLM)
    LOAD_SEED             seed for the prompt / max_tokens choice      (default 0)
    LOAD_REQUEST_TIMEOUT  seconds per request                          (default 120)
    LOAD_RESULTS_DIR      where reports are written                    (default results/load)
    LOAD_PLOTS            0: no PNG plots / LLM HTML report            (default 1)
    LOAD_SLO_FILE         TOML or JSON file with an [slo] table (keys as below)
    SLO_P95_LATENCY_MS  SLO_TTFT_P95_MS  SLO_ITL_P95_MS  SLO_ERROR_RATE  SLO_MIN_RPS
    SLO_MIN_OUTPUT_TOKENS_PER_SECOND     (a number, or "off"; SLO_ERROR_RATE defaults to 0)
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from llmpyramid.config import PROJECT_ROOT, parse_bool, parse_duration, parse_float, parse_int
from llmpyramid.errors import ConfigError

SHAPES = ("constant", "sweep", "rate")
REQUEST_KINDS = ("chat_stream", "completion_stream", "chat", "completion")
DEFAULT_MIX = {"chat_stream": 6, "completion_stream": 2, "chat": 1, "completion": 1}


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


# --- SLO ---------------------------------------------------------------------------------------

# field name -> (load_test key, comparison, human label, unit)
SLO_FIELDS: dict[str, tuple[str, str, str, str]] = {
    "p95_latency_ms": ("p95_latency_ms", "max", "p95 latency", "ms"),
    "ttft_p95_ms": ("ttft_p95_ms", "max", "TTFT p95", "ms"),
    "itl_p95_ms": ("itl_p95_ms", "max", "ITL p95", "ms"),
    "error_rate": ("error_rate", "max", "error rate", ""),
    "min_rps": ("requests_per_second", "min", "requests/s", ""),
    "min_output_tokens_per_second": ("output_tokens_per_second", "min", "output tokens/s", ""),
}


@dataclass(frozen=True)
class SLO:
    """Thresholds a run must meet; None means "not gated". Like locust itself, any failed request
    fails the run by default (error_rate 0); set SLO_ERROR_RATE / `error_rate` to allow some."""

    p95_latency_ms: float | None = None
    ttft_p95_ms: float | None = None
    itl_p95_ms: float | None = None
    error_rate: float | None = 0.0
    min_rps: float | None = None
    min_output_tokens_per_second: float | None = None

    def active(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_mapping(cls, data: Any, source: str) -> SLO:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table of SLO thresholds, got {type(data).__name__}")
        unknown = set(data) - set(SLO_FIELDS)
        if unknown:
            raise ConfigError(
                f"{source}: unknown SLO key(s) {', '.join(sorted(unknown))}; known: {', '.join(SLO_FIELDS)}"
            )
        values: dict[str, float | None] = {}
        for key, raw in data.items():
            if isinstance(raw, str) and raw.strip().lower() in ("none", "off"):
                values[key] = None  # explicitly not gated (e.g. SLO_ERROR_RATE=off)
                continue
            if isinstance(raw, bool):
                raise ConfigError(f"{source}: SLO {key} must be a number, got {raw!r}")
            values[key] = parse_float(f"{source}: SLO {key}", raw)
        if (values.get("error_rate") or 0) > 1:
            raise ConfigError(f"{source}: SLO error_rate is a fraction between 0 and 1, got {values['error_rate']}")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> SLO:
        """Read `[slo]` from a TOML file, or an object (optionally under "slo") from a JSON file."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"SLO file {p}: cannot read ({exc.strerror or exc})") from None
        try:
            data: Any = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"SLO file {p} is malformed: {exc}") from None
        if isinstance(data, dict) and "slo" in data:
            data = data["slo"]
        return cls.from_mapping(data, f"SLO file {p}")

    @classmethod
    def from_env(cls, slo_file: str | Path | None = None) -> SLO:
        """SLO file first (LOAD_SLO_FILE or the argument), then SLO_* variables override it."""
        path = slo_file or _env("LOAD_SLO_FILE")
        base = cls.from_file(path) if path else cls()
        env = {k: _env(f"SLO_{k.upper()}") for k in SLO_FIELDS}
        env_values = {k: v for k, v in env.items() if v is not None}
        if not env_values:
            return base
        from_env = cls.from_mapping(env_values, "environment")
        return replace(base, **{k: getattr(from_env, k) for k in env_values})


def evaluate_slo(load_test: dict[str, Any], slo: SLO) -> list[str]:
    """Violations as one-line findings, e.g. 'p95 latency 350ms > threshold 200ms'."""
    findings = []
    for name, threshold in slo.active().items():
        key, kind, label, unit = SLO_FIELDS[name]
        measured = load_test.get(key)
        if measured is None:
            findings.append(f"{label} not measured (no successful samples) but an SLO of {threshold:g}{unit} is set")
            continue
        if kind == "max" and measured > threshold:
            findings.append(f"{label} {_fmt(measured)}{unit} > threshold {_fmt(threshold)}{unit}")
        elif kind == "min" and measured < threshold:
            findings.append(f"{label} {_fmt(measured)}{unit} < threshold {_fmt(threshold)}{unit}")
    return findings


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1 else f"{x:.1f}".removesuffix(".0")


# --- the run -----------------------------------------------------------------------------------


def parse_mix(raw: str) -> dict[str, int]:
    mix: dict[str, int] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if name not in REQUEST_KINDS:
            raise ConfigError(f"LOAD_MIX: unknown request kind {name!r}; known: {', '.join(REQUEST_KINDS)}")
        mix[name] = parse_int(f"LOAD_MIX weight of {name}", weight.strip() if sep else "1")
    if not any(mix.values()):
        raise ConfigError(f"LOAD_MIX {raw!r} has no request kind with a positive weight")
    return mix


def parse_max_tokens(raw: str) -> tuple[int, ...]:
    values = tuple(parse_int("LOAD_MAX_TOKENS", p.strip(), minimum=1) for p in raw.split(",") if p.strip())
    if not values:
        raise ConfigError(f"LOAD_MAX_TOKENS {raw!r} names no value")
    return values


@dataclass(frozen=True)
class LoadConfig:
    shape: str = "constant"
    users: int = 10
    spawn_rate: float = 2.0
    duration: float = 60.0
    rate: float = 2.0
    max_inflight: int = 64
    sweep_max_users: int = 32
    sweep_step: float = 15.0
    sweep_min_gain: float = 0.10
    mix: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    max_tokens: tuple[int, ...] = (32, 64, 128)
    ignore_eos: bool = True
    seed: int = 0
    request_timeout: float = 120.0
    results_dir: Path = PROJECT_ROOT / "results" / "load"
    # Percentiles of fewer samples say nothing: below this many completed requests the verdict is
    # "inconclusive" (exit 1). 20 is the smallest count whose p95 is not simply the maximum.
    min_requests: int = 20
    max_duration: float | None = None  # None: max(120 s, 3 x duration), see effective_max_duration
    plots: bool = True
    slo: SLO = field(default_factory=SLO)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ConfigError(f"unknown load shape {self.shape!r}; choose one of: {', '.join(SHAPES)}")
        parse_int("users", self.users, minimum=1, maximum=100_000)
        if self.spawn_rate <= 0:
            raise ConfigError(f"spawn rate must be > 0, got {self.spawn_rate}")
        if self.duration <= 0:
            raise ConfigError(f"duration must be a positive number of seconds, got {self.duration:g}")
        if self.rate <= 0:
            raise ConfigError(f"arrival rate must be > 0 requests/s, got {self.rate:g}")
        parse_int("max in-flight requests", self.max_inflight, minimum=1)
        parse_int("sweep max users", self.sweep_max_users, minimum=1, maximum=100_000)
        parse_float("LOAD_SWEEP_MIN_GAIN (sweep_min_gain)", self.sweep_min_gain, minimum=0, maximum=1)
        if self.sweep_step < 2:
            raise ConfigError(f"sweep step must be >= 2 seconds, got {self.sweep_step:g}")
        parse_int("LOAD_MIN_REQUESTS (min_requests)", self.min_requests, minimum=1)
        if self.max_duration is not None and self.max_duration < self.duration:
            raise ConfigError(
                f"LOAD_MAX_DURATION {self.max_duration:g}s is shorter than the run's duration {self.duration:g}s"
            )
        object.__setattr__(self, "results_dir", Path(self.results_dir))

    @property
    def sweep_levels(self) -> list[int]:
        levels, u = [], 1
        while u <= self.sweep_max_users:
            levels.append(u)
            u *= 2
        if levels[-1] != self.sweep_max_users:
            levels.append(self.sweep_max_users)
        return levels

    @property
    def effective_max_duration(self) -> float:
        """How long a constant/rate run may go on past its duration to complete min_requests.

        A 2-core box shared with other work was seen completing ~0.2 requests/s at 10 users with
        the default token mix: 20 requests take ~100 s there, so 120 s is the floor; beyond that the
        run is honestly inconclusive rather than endless."""
        return self.max_duration if self.max_duration is not None else max(120.0, 3 * self.duration)

    @property
    def planned_seconds(self) -> float:
        """The longest the test phase can take."""
        return self.sweep_step * len(self.sweep_levels) if self.shape == "sweep" else self.effective_max_duration

    def shape_description(self) -> dict[str, Any]:
        if self.shape == "constant":
            return {"type": "constant_users", "users": self.users, "spawn_rate": self.spawn_rate,
                    "duration_seconds": self.duration}  # fmt: skip
        if self.shape == "rate":
            return {"type": "constant_arrival_rate", "requests_per_second": self.rate,
                    "max_inflight": self.max_inflight, "duration_seconds": self.duration}  # fmt: skip
        return {"type": "scaling_sweep", "levels": self.sweep_levels, "step_seconds": self.sweep_step,
                "min_gain": self.sweep_min_gain}  # fmt: skip

    def to_env(self) -> dict[str, str]:
        """The environment a locust process (master or worker) needs to rebuild this config."""
        env = {
            "LOAD_SHAPE": self.shape, "LOAD_USERS": str(self.users), "LOAD_SPAWN_RATE": str(self.spawn_rate),
            "LOAD_DURATION": str(self.duration), "LOAD_RATE": str(self.rate),
            "LOAD_MAX_INFLIGHT": str(self.max_inflight), "LOAD_SWEEP_MAX_USERS": str(self.sweep_max_users),
            "LOAD_SWEEP_STEP": str(self.sweep_step), "LOAD_SWEEP_MIN_GAIN": str(self.sweep_min_gain),
            "LOAD_MIX": ",".join(f"{k}={v}" for k, v in self.mix.items()),
            "LOAD_MAX_TOKENS": ",".join(map(str, self.max_tokens)), "LOAD_IGNORE_EOS": "1" if self.ignore_eos else "0",
            "LOAD_SEED": str(self.seed), "LOAD_REQUEST_TIMEOUT": str(self.request_timeout),
            "LOAD_RESULTS_DIR": str(self.results_dir), "LOAD_MIN_REQUESTS": str(self.min_requests),
            "LOAD_PLOTS": "1" if self.plots else "0",
        }  # fmt: skip
        if self.max_duration is not None:
            env["LOAD_MAX_DURATION"] = str(self.max_duration)
        for name in SLO_FIELDS:
            value = getattr(self.slo, name)
            env[f"SLO_{name.upper()}"] = "off" if value is None else repr(value)
        return env

    @classmethod
    def from_env(cls, slo_file: str | Path | None = None, **overrides: Any) -> LoadConfig:
        """Environment first, keyword overrides (CLI flags) win; None overrides are ignored."""
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown load setting(s): {', '.join(sorted(unknown))}")
        d = {f.name: f for f in fields(cls)}
        v: dict[str, Any] = {}

        pairs = {
            "shape": "LOAD_SHAPE", "users": "LOAD_USERS", "spawn_rate": "LOAD_SPAWN_RATE",
            "duration": "LOAD_DURATION", "rate": "LOAD_RATE", "max_inflight": "LOAD_MAX_INFLIGHT",
            "sweep_max_users": "LOAD_SWEEP_MAX_USERS", "sweep_step": "LOAD_SWEEP_STEP",
            "sweep_min_gain": "LOAD_SWEEP_MIN_GAIN", "mix": "LOAD_MIX", "max_tokens": "LOAD_MAX_TOKENS",
            "ignore_eos": "LOAD_IGNORE_EOS", "seed": "LOAD_SEED", "request_timeout": "LOAD_REQUEST_TIMEOUT",
            "results_dir": "LOAD_RESULTS_DIR", "min_requests": "LOAD_MIN_REQUESTS",
            "max_duration": "LOAD_MAX_DURATION", "plots": "LOAD_PLOTS",
        }  # fmt: skip
        for name, env in pairs.items():
            raw = overrides.get(name)
            if raw is None:
                raw = _env(env)
            if raw is None:
                continue
            v[name] = _coerce(name, env, raw, d[name].type)
        slo = overrides.get("slo")
        v["slo"] = slo if isinstance(slo, SLO) else SLO.from_env(slo_file)
        return cls(**v)


def _coerce(name: str, env: str, raw: Any, _type: Any) -> Any:
    label = f"{env} ({name})"
    if name == "shape":
        return str(raw).strip().lower()
    if name in ("users", "max_inflight", "sweep_max_users", "seed", "min_requests"):
        return parse_int(label, raw, minimum=-(2**31))
    if name in ("duration", "max_duration", "request_timeout"):
        return parse_duration(label, raw, minimum=None)
    if name in ("spawn_rate", "rate", "sweep_step", "sweep_min_gain"):
        return parse_float(label, raw, minimum=None)
    if name == "mix":
        return parse_mix(raw) if isinstance(raw, str) else dict(raw)
    if name == "max_tokens":
        return parse_max_tokens(raw) if isinstance(raw, str) else tuple(raw)
    if name in ("ignore_eos", "plots"):
        return parse_bool(env, raw)
    if name == "results_dir":
        return Path(raw)
    return raw
