"""Settings of the hybrid layer: which router and backends, how hard to push, when to give up.

With no HYBRID_ROUTER_URL the layer builds the reference topology on loopback: two embedded
llama.cpp stacks behind a reference router, HYBRID_ROUTER = litellm (LiteLLM's proxy, router/litellm.yaml)
or haproxy (router/haproxy.cfg), with a fault proxy in front of base. With a URL, it tests that
router; HYBRID_BASE_URL / HYBRID_BURST_URL name the backends behind it (health and capacity), and
the stop/start commands let it fault a remote backend (without them only scenarios a and b run).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmpyramid.cloud import CLOUDS
from llmpyramid.config import (
    PROJECT_ROOT,
    Settings,
    knob,
    parse_duration,
    parse_float,
    parse_int,
    parse_list,
    parse_path,
    parse_str,
    parse_url,
)
from llmpyramid.errors import ConfigError

ROUTERS = ("litellm", "haproxy")
REFERENCE_CONFIGS = {
    "litellm": PROJECT_ROOT / "router" / "litellm.yaml",
    "haproxy": PROJECT_ROOT / "router" / "haproxy.cfg",
}
BACKEND_HEADERS = {"litellm": "x-litellm-model-id", "haproxy": "x-llmpyramid-backend"}
DEFAULT_RESULTS_DIR = PROJECT_ROOT / "results" / "hybrid"


SCENARIO_KEYS = ("a", "b", "c", "d", "e", "f", "g", "h")
FAULT_PROXY_SCENARIOS = ("f", "g", "h")  # need the reference topology's fault proxy in front of base
# f-h need both backends serving: they run before c kills base (d restores it, e kills burst)
RUN_ORDER = ("a", "b", "f", "g", "h", "c", "d", "e")


def parse_scenarios(name: str, raw: object) -> tuple[str, ...]:
    """`a,b,c` (any subset of SCENARIO_KEYS, any order; run in RUN_ORDER)."""
    items = raw if isinstance(raw, tuple | list) else str(raw).replace(" ", "").split(",")
    keys = {str(k).strip().lower() for k in items if str(k).strip()}
    unknown = keys - set(SCENARIO_KEYS)
    if unknown or not keys:
        raise ConfigError(f"{name} must be a comma-separated subset of {','.join(SCENARIO_KEYS)}, got {raw!r}")
    return tuple(k for k in RUN_ORDER if k in keys)


def parse_command(name: str, raw: object) -> str:
    """A shell-free command line (split with shlex, run without a shell); must not be empty."""
    text = str(raw).strip()
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid command line: {exc}") from None
    if not argv:
        raise ConfigError(f"{name} must be a command, got {raw!r}")
    return text


@dataclass(frozen=True)
class HybridSettings(Settings):
    section: ClassVar[str] = "hybrid setting"

    scenarios: tuple[str, ...] = knob(SCENARIO_KEYS, "HYBRID_SCENARIOS", parse_scenarios)  # which to run
    router: str | None = knob(None, "HYBRID_ROUTER", parse_str, choices=ROUTERS)  # the reference router to build
    haproxy_bin: Path | None = knob(None, "HYBRID_HAPROXY_BIN", parse_path)  # else PATH, else Debian's package
    router_url: str | None = knob(None, "HYBRID_ROUTER_URL", parse_url)  # else: the reference topology
    base_url: str | None = knob(None, "HYBRID_BASE_URL", parse_url)  # the base backend behind the router
    burst_url: str | None = knob(None, "HYBRID_BURST_URL", parse_url)
    base_stop_cmd: str | None = knob(None, "HYBRID_BASE_STOP_CMD", parse_command)  # remote fault injection
    base_start_cmd: str | None = knob(None, "HYBRID_BASE_START_CMD", parse_command)
    burst_stop_cmd: str | None = knob(None, "HYBRID_BURST_STOP_CMD", parse_command)
    router_api_key: str | None = knob(None, "HYBRID_ROUTER_API_KEY")  # Bearer key for an external router
    model: str = knob("llm", "HYBRID_MODEL", parse_str)  # the model name clients send to the router
    backend_header: str | None = knob(None, "HYBRID_BACKEND_HEADER", parse_str)  # names the backend (router's)
    base_id: str = knob("base", "HYBRID_BASE_ID", parse_str)  # that header's value for base ...
    burst_id: str = knob("burst", "HYBRID_BURST_ID", parse_str)  # ... and for burst
    base_slots: int = knob(2, "HYBRID_BASE_SLOTS", parse_int, minimum=1, maximum=16)  # reference base --parallel
    burst_slots: int = knob(4, "HYBRID_BURST_SLOTS", parse_int, minimum=1, maximum=32)
    base_capacity: int | None = knob(None, "HYBRID_BASE_CAPACITY", parse_int, minimum=1, maximum=256)
    overload_factor: float = knob(2.0, "HYBRID_OVERLOAD_FACTOR", parse_float, minimum=1.5, maximum=8)
    requests: int = knob(12, "HYBRID_REQUESTS", parse_int, minimum=4, maximum=10_000)  # per scenario phase
    min_samples: int = knob(4, "HYBRID_MIN_SAMPLES", parse_int, minimum=1, maximum=1000)
    max_tokens: int = knob(16, "HYBRID_MAX_TOKENS", parse_int, minimum=1, maximum=4096)
    request_timeout: float = knob(60.0, "HYBRID_REQUEST_TIMEOUT", parse_duration, minimum=1, maximum=3600)
    scenario_timeout: float = knob(120.0, "HYBRID_SCENARIO_TIMEOUT", parse_duration, minimum=5, maximum=7200)
    ttft_p95_ms: float = knob(30_000.0, "HYBRID_TTFT_P95_MS", parse_float, minimum=1)  # gate of scenario b
    # scenario h: base answers this much later than it could (TTFT + delay), judged against its own TTFT SLO
    degraded_delay: float = knob(4.0, "HYBRID_DEGRADED_DELAY", parse_duration, minimum=0.5, maximum=600)
    degraded_ttft_p95_ms: float = knob(2_000.0, "HYBRID_DEGRADED_TTFT_P95_MS", parse_float, minimum=1)
    # deviations from the failover contract the router under test is known to have: `f,g` (scenario keys);
    # the reference routers' own are declared in scenarios.DECLARED_DEVIATIONS
    known_deviations: tuple[str, ...] | None = knob(None, "HYBRID_KNOWN_DEVIATIONS", parse_list, choices=SCENARIO_KEYS)
    # cost per SLO-meeting request: base's monthly price (yours: the default is an example figure) and the
    # burst instance priced from the cloud layer's pinned spot catalog
    base_monthly_usd: float = knob(55.0, "HYBRID_BASE_MONTHLY_USD", parse_float, minimum=0)
    burst_cloud: str = knob("aws", "HYBRID_BURST_CLOUD", parse_str, choices=CLOUDS)
    router_config: Path | None = knob(None, "HYBRID_ROUTER_CONFIG", parse_path)  # else router/<router's file>
    router_startup_timeout: float = knob(
        180.0, "HYBRID_ROUTER_STARTUP_TIMEOUT", parse_duration, minimum=1, maximum=3600
    )
    results_dir: Path = knob(DEFAULT_RESULTS_DIR, "HYBRID_RESULTS_DIR", parse_path)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.degraded_delay * 1000 <= self.degraded_ttft_p95_ms:
            raise ConfigError(f"HYBRID_DEGRADED_DELAY {self.degraded_delay:g}s must exceed HYBRID_DEGRADED_TTFT_P95_MS "
                              f"{self.degraded_ttft_p95_ms:g}ms, or scenario h cannot tell a router that waits on a "
                              "degraded base from one that does not")  # fmt: skip
        if self.router_url is not None and self.router is not None:
            raise ConfigError("HYBRID_ROUTER (--router) picks a reference router to build; HYBRID_ROUTER_URL "
                              "(--router-url) tests yours: give one of them")  # fmt: skip
        if self.router_url is None and (self.base_url or self.burst_url):
            raise ConfigError("HYBRID_BASE_URL/HYBRID_BURST_URL name the backends behind HYBRID_ROUTER_URL; set it too")
        if self.router_url is None and (self.base_stop_cmd or self.base_start_cmd or self.burst_stop_cmd):
            raise ConfigError("stop/start commands are for an external router's backends; set HYBRID_ROUTER_URL too")
        if bool(self.base_stop_cmd) != bool(self.base_start_cmd):
            raise ConfigError("HYBRID_BASE_STOP_CMD and HYBRID_BASE_START_CMD go together (fault, then restore)")
        if self.base_id == self.burst_id:
            raise ConfigError(f"HYBRID_BASE_ID and HYBRID_BURST_ID must differ, both are {self.base_id!r}")
        if self.min_samples > self.requests:
            raise ConfigError(f"HYBRID_MIN_SAMPLES {self.min_samples} > HYBRID_REQUESTS {self.requests}")

    @property
    def router_kind(self) -> str:
        """The reference router to build (LiteLLM unless HYBRID_ROUTER / --router says haproxy)."""
        return self.router or ROUTERS[0]

    @property
    def router_config_path(self) -> Path:
        return self.router_config or REFERENCE_CONFIGS[self.router_kind]

    @property
    def attribution_header(self) -> str:
        return self.backend_header or BACKEND_HEADERS[self.router_kind]

    @property
    def reference(self) -> bool:
        """True: build the reference topology (no router URL given)."""
        return self.router_url is None
