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
    SLO_MIN_OUTPUT_TOKENS_PER_SECOND  SLO_MIN_GOODPUT_SHARE  (a number, or "off"; SLO_ERROR_RATE defaults to 0)
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from llmpyramid.config import (
    PROJECT_ROOT,
    Settings,
    env_value,
    knob,
    parse_bool,
    parse_duration,
    parse_float,
    parse_int,
    parse_path,
    parse_str,
)
from llmpyramid.errors import ConfigError

SHAPES = ("constant", "sweep", "rate")
REQUEST_KINDS = ("chat_stream", "completion_stream", "chat", "completion")


# --- SLO ---------------------------------------------------------------------------------------

# field name -> (load_test key, comparison, human label, unit)
SLO_FIELDS: dict[str, tuple[str, str, str, str]] = {
    "p95_latency_ms": ("p95_latency_ms", "max", "p95 latency", "ms"),
    "ttft_p95_ms": ("ttft_p95_ms", "max", "TTFT p95", "ms"),
    "itl_p95_ms": ("itl_p95_ms", "max", "ITL p95", "ms"),
    "error_rate": ("error_rate", "max", "error rate", ""),
    "min_rps": ("requests_per_second", "min", "requests/s", ""),
    "min_output_tokens_per_second": ("output_tokens_per_second", "min", "output tokens/s", ""),
    "min_goodput_share": ("goodput_share", "min", "goodput (share of requests meeting every SLO)", ""),
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
    min_goodput_share: float | None = None  # 0..1: requests that met latency, TTFT and ITL limits, failures missing

    def active(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def per_request(self) -> dict[str, float]:
        """The latency SLOs as limits one request must meet to count for goodput: its own latency, TTFT, and
        TPOT against the ITL limit (a request's average gap between tokens)."""
        limits = {"latency_ms": self.p95_latency_ms, "ttft_ms": self.ttft_p95_ms, "tpot_ms": self.itl_p95_ms}
        return {k: v for k, v in limits.items() if v is not None}

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
        for share in ("error_rate", "min_goodput_share"):
            if (values.get(share) or 0) > 1:
                raise ConfigError(f"{source}: SLO {share} is a fraction between 0 and 1, got {values[share]}")
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
    def from_env(cls, slo_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> SLO:
        """SLO file first (LOAD_SLO_FILE or the argument), then SLO_* variables override it."""
        path = slo_file or env_value("LOAD_SLO_FILE", environ=environ)
        base = cls.from_file(path) if path else cls()
        env = {k: env_value(f"SLO_{k.upper()}", environ=environ) for k in SLO_FIELDS}
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


def parse_shape(name: str, raw: object) -> str:
    return parse_str(name, str(raw).lower(), choices=SHAPES)


def parse_mix(name: str, raw: object) -> dict[str, int]:
    """`chat_stream=6,completion=1` (a missing weight is 1), or a mapping of the same."""
    pairs = raw.items() if isinstance(raw, Mapping) else [p.partition("=")[::2] for p in str(raw).split(",")]
    mix: dict[str, int] = {}
    for kind, weight in pairs:
        kind = str(kind).strip()
        if not kind:
            continue
        if kind not in REQUEST_KINDS:
            raise ConfigError(f"{name}: unknown request kind {kind!r}; known: {', '.join(REQUEST_KINDS)}")
        mix[kind] = parse_int(f"{name} weight of {kind}", str(weight).strip() or "1")
    if not any(mix.values()):
        raise ConfigError(f"{name} {raw!r} has no request kind with a positive weight")
    return mix


def parse_max_tokens(name: str, raw: object) -> tuple[int, ...]:
    """`32,64,128`, or a sequence of the same: each a whole number >= 1."""
    parts = str(raw).split(",") if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
    values = tuple(parse_int(name, str(p).strip(), minimum=1) for p in parts if str(p).strip())
    if not values:
        raise ConfigError(f"{name} {raw!r} names no value")
    return values


WEEK_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class LoadConfig(Settings):
    """One load run. Every knob has an environment variable, so locust processes (master, workers)
    rebuild the same configuration from `to_env()`."""

    section: ClassVar[str] = "load setting"
    shape: str = knob("constant", "LOAD_SHAPE", parse_shape)
    users: int = knob(10, "LOAD_USERS", parse_int, minimum=1, maximum=100_000)
    spawn_rate: float = knob(2.0, "LOAD_SPAWN_RATE", parse_float, minimum=0.001, maximum=100_000)
    duration: float = knob(60.0, "LOAD_DURATION", parse_duration, minimum=0.1, maximum=WEEK_S)
    rate: float = knob(2.0, "LOAD_RATE", parse_float, minimum=0.001, maximum=100_000)
    max_inflight: int = knob(64, "LOAD_MAX_INFLIGHT", parse_int, minimum=1, maximum=100_000)
    sweep_max_users: int = knob(32, "LOAD_SWEEP_MAX_USERS", parse_int, minimum=1, maximum=100_000)
    sweep_step: float = knob(15.0, "LOAD_SWEEP_STEP", parse_duration, minimum=2, maximum=WEEK_S)
    sweep_min_gain: float = knob(0.10, "LOAD_SWEEP_MIN_GAIN", parse_float, minimum=0, maximum=1)
    # parsed into {kind: weight} like any value given
    mix: dict[str, int] = knob("chat_stream=6,completion_stream=2,chat=1,completion=1", "LOAD_MIX", parse_mix)
    max_tokens: tuple[int, ...] = knob((32, 64, 128), "LOAD_MAX_TOKENS", parse_max_tokens)
    ignore_eos: bool = knob(True, "LOAD_IGNORE_EOS", parse_bool)
    seed: int = knob(0, "LOAD_SEED", parse_int, minimum=-(2**31), maximum=2**31 - 1)
    request_timeout: float = knob(120.0, "LOAD_REQUEST_TIMEOUT", parse_duration, minimum=0.1, maximum=3600)
    # the same shape this many times: mean and 95 % interval per metric, a noise-aware baseline gate (load.repeat)
    repeat: int = knob(1, "LOAD_REPEAT", parse_int, minimum=1, maximum=50)
    # above this share of the cores taken by other work during a run, a slowdown is "inconclusive" (load.repeat)
    machine_busy_bound: float = knob(0.25, "LOAD_MACHINE_BUSY_BOUND", parse_float, minimum=0, maximum=1)
    # the target's /metrics and /slots sampled this often during the run (llmpyramid.load.server_metrics)
    server_metrics_interval: float = knob(2.0, "LOAD_SERVER_METRICS_INTERVAL", parse_duration, minimum=0.2,
                                          maximum=600)  # fmt: skip
    results_dir: Path = knob(PROJECT_ROOT / "results" / "load", "LOAD_RESULTS_DIR", parse_path)
    # Percentiles of fewer samples say nothing: below this many completed requests the verdict is
    # "inconclusive" (exit 1). 20 is the smallest count whose p95 is not simply the maximum.
    min_requests: int = knob(20, "LOAD_MIN_REQUESTS", parse_int, minimum=1, maximum=10**9)
    # None: max(120 s, 3 x duration), see effective_max_duration
    max_duration: float | None = knob(None, "LOAD_MAX_DURATION", parse_duration, minimum=0.1, maximum=WEEK_S)
    plots: bool = knob(True, "LOAD_PLOTS", parse_bool)
    slo: SLO = field(default_factory=SLO)  # SLO file, then SLO_* variables: see SLO.from_env

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_duration is not None and self.max_duration < self.duration:
            raise ConfigError(
                f"LOAD_MAX_DURATION {self.max_duration:g}s is shorter than the run's duration {self.duration:g}s"
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, slo_file: str | Path | None = None, **overrides: Any
    ) -> LoadConfig:
        """Defaults < LOAD_* variables < keyword overrides (CLI flags; None = not given); the SLO from
        `slo_file` or LOAD_SLO_FILE, then SLO_* variables, unless an SLO is given."""
        if not isinstance(overrides.get("slo"), SLO):
            overrides["slo"] = SLO.from_env(slo_file, environ)
        return super().from_env(environ, **overrides)

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
        env = {var: _env_text(getattr(self, name)) for name, var in self.env_names().items()}
        if self.max_duration is None:
            del env["LOAD_MAX_DURATION"]
        for name in SLO_FIELDS:
            value = getattr(self.slo, name)
            env[f"SLO_{name.upper()}"] = "off" if value is None else repr(value)
        return env


def _env_text(value: Any) -> str:
    """A field's value as its variable's parser reads it back."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return repr(value) if isinstance(value, float) else str(value)
