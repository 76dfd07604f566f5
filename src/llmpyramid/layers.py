"""THE table of pyramid layers. Everything that names a layer is derived from it:

- nox sessions (noxfile.py: one session per layer, `default=` and tags from here; CI's matrix is
  `nox --json -l`, so it follows too),
- `scripts/run_tests.py --suite NAME` (same names, plus `all`),
- pytest markers (tests/conftest.py registers one per marked layer),
- invoke pipelines (llmpyramid.pipelines chains layers by name).

Each layer has one executor (llmpyramid.suites.run_layer), whichever front door asks: a pytest
selection (paths + marker, run inside `wrap` when it needs one), a runner function (`run =
"module:function"`, imported only when that layer runs, so a layer's heavy dependencies never load
for the others), or a command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Cost = Literal["free", "cheap", "costs money"]

# What a layer needs; shown by `--dry-run` plans and the README.
EMBEDDED_STACK = "embedded llama.cpp stack (started by the run unless --base-url/BASE_URL is given)"
EMULATORS = "moto + fake-gcs-server on loopback (started by the run)"
TERRAFORM = "terraform on PATH (aws provider from a local mirror)"
NETNS = "root, to create a loopback-only network namespace (unshare -n)"
CREDENTIALS = "cloud credentials (sky check)"
ROUTER = "two embedded stacks behind a router on loopback (or --router-url)"
HAPROXY = "haproxy on PATH, or apt-get to fetch Debian's package (unpacked into .cache/, no root)"


@dataclass(frozen=True)
class Layer:
    name: str  # nox session == --suite name == pytest marker (when it has one)
    checks: str  # what it checks (nox -l, --help, README)
    groups: tuple[str, ...]  # pyproject dependency groups its session installs
    paths: tuple[str, ...] = ()  # pytest selection
    marker: str | None = None  # pytest -m
    pytest_extra: tuple[str, ...] = ()  # further pytest arguments (e.g. --ignore)
    wrap: tuple[str, ...] = ()  # a pytest layer's pytest runs inside this command (e.g. a network namespace)
    command: tuple[str, ...] = ()  # a command layer's command (lint, benchmarks)
    run: str | None = None  # "module:function(RunRequest) -> SuiteRun" for a layer with its own runner
    takes: str = ""  # what a runner layer takes after `--` (a pytest layer takes pytest arguments)
    # a runner layer's defaults, as environment variables: code defaults < these < the environment < flags
    env_defaults: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    cost: Cost = "free"
    needs: tuple[str, ...] = ()
    default: bool = True  # plain `nox` runs it
    target: bool = False  # talks to an inference server (--base-url applies)
    in_all: bool = False  # part of `run_tests.py --suite all`
    flags: tuple[str, ...] = ()  # extra run_tests flags it reads: duration, cloud, router
    estimate_s: int = 30  # rough wall time on a quiet 2-core box (pipeline plans)

    @property
    def pytest_args(self) -> tuple[str, ...]:
        return (*self.paths, *(("-m", self.marker) if self.marker else ()), *self.pytest_extra)

    def environ(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment a runner layer reads its settings from: its defaults under the given one."""
        return {**dict(self.env_defaults), **environ}

    @property
    def is_pytest(self) -> bool:
        return bool(self.paths)

    @property
    def takes_args(self) -> bool:
        return self.is_pytest or bool(self.takes)


TEST = ("test",)
# One pytest worker per core (pytest-xdist), each with its own session fixtures (server, emulators):
# for layers whose cases mostly wait on their own processes. Work stealing: case durations are uneven.
XDIST = ("-n", "auto", "--dist", "worksteal")

# Under a pipeline (llmpyramid.pipelines) a session writes its results document into this directory.
REPORT_DIR_ENV = "LLMPYRAMID_REPORT_DIR"
STEP_RESULTS_FILE = "results.json"


LAYERS: tuple[Layer, ...] = (
    Layer("lint", "ruff, mypy, GitHub workflow schema and zizmor", ("dev",),
          command=("python", "-m", "llmpyramid.lint"), tags=("quality",), estimate_s=45),
    Layer("unit", "instant, no network: config, mocked endpoints, schemas, math",
          ("test", "load", "iac", "emulators", "lint", "cloud"),
          paths=("tests/unit",), pytest_extra=XDIST, tags=("pyramid",), estimate_s=75),
    Layer("stack", "the embedded llama.cpp stack: lifecycle, failure modes, invoke tasks", TEST,
          paths=("tests/stack",), pytest_extra=XDIST, tags=("pyramid",), needs=(EMBEDDED_STACK,), estimate_s=60),
    # the cases wait on their own nested runs (nox, invoke, servers): one pytest worker per core overlaps them
    Layer("pipelines", "invoke pipelines for real (offline staging, preprod) and Ctrl-C/SIGTERM at every entry point",
          TEST, paths=("tests/pipelines",), pytest_extra=XDIST, tags=("pyramid",), needs=(EMBEDDED_STACK,),
          estimate_s=150),
    Layer("smoke", "health, completions, chat, models, latency", TEST, paths=("tests/test_smoke.py",),
          marker="smoke", tags=("pyramid", "target"), needs=(EMBEDDED_STACK,), target=True, in_all=True,
          estimate_s=10),
    Layer("integration", "concurrency, streaming, invalid input, max_tokens/stop, API key, memory", TEST,
          paths=("tests/test_integration.py",), marker="integration", tags=("pyramid", "target"),
          needs=(EMBEDDED_STACK,), target=True, in_all=True, estimate_s=25),
    Layer("contract", "OpenAI schemas for bodies and SSE chunks, headers, error object, official client", TEST,
          # its proxy and deviation cases wait on child pytest runs: one worker per core
          paths=("tests/test_contract.py", "tests/contract"), marker="contract", pytest_extra=XDIST,
          tags=("pyramid", "target"),
          needs=(EMBEDDED_STACK,), target=True, in_all=True, estimate_s=25),
    Layer("load", "LLM load (locust): throughput, latency, TTFT/ITL percentiles, SLO gates", ("load",),
          # short answers and a generous cap: the verdict needs LOAD_MIN_REQUESTS samples, even on a busy box
          run="llmpyramid.load.suite:run_suite", takes="the load command's flags (python -m llmpyramid.load --help)",
          env_defaults=(("LOAD_DURATION", "20"), ("LOAD_MAX_TOKENS", "16,32,64"), ("LOAD_MAX_DURATION", "240")),
          tags=("load", "target"), needs=(EMBEDDED_STACK,), target=True, flags=("duration",), estimate_s=45),
    # ~60 % of two cores: each case drives a one-thread llama.cpp server with locust for fixed seconds
    Layer("load_faults", "the load layer for real: seed locust command, bad input, dying server, no leftovers",
          ("test", "load"), paths=("tests/load_faults",), marker="load", pytest_extra=XDIST, tags=("load",),
          needs=(EMBEDDED_STACK,),
          estimate_s=180),
    Layer("static_iac", "terraform fmt, TFLint, Checkov SARIF, Rego policies, broken fixtures caught", ("test", "iac"),
          paths=("tests/static_iac",), tags=("iac",),
          estimate_s=60),
    Layer("terraform", "terraform test per module (plan-only, mocked providers)", ("test", "iac"),
          paths=("tests/terraform",), marker="terraform", pytest_extra=XDIST, tags=("iac",), needs=(TERRAFORM,),
          estimate_s=45),
    Layer("localstack", "emulated AWS/GCS: terraform/aws applied to moto and destroyed; model storage",
          # a file per worker: the apply, the interrupted apply and the lifecycle overlap their waits (the aws
          # provider waits ~55 s after writing a lifecycle configuration, in each apply)
          ("test", "emulators", "iac"), paths=("tests/integration",), pytest_extra=("-n", "auto", "--dist", "loadfile"),
          tags=("iac", "emulated"),
          needs=(EMULATORS, TERRAFORM), estimate_s=190),
    # pytest runs inside a loopback-only network namespace: SkyPilot probes moto's fake public IPs. Its cases wait
    # on SkyPilot (a deliberate 60 s launch timeout, provisioning): two workers, one per group of cases
    # (tests/cloud_emulated/groups.py), each starting its own SkyPilot API server
    Layer("cloud_emulated", "SkyPilot spot launch -> teardown -> sweep against moto in a loopback-only netns",
          ("test", "cloud"), paths=("tests/cloud_emulated",), wrap=("python", "-m", "llmpyramid.cloud", "netns", "--"),
          pytest_extra=("-n", "2", "--dist", "loadgroup"),
          tags=("cloud", "emulated"), needs=(NETNS,), estimate_s=450),
    Layer("cloud", "real spot instance via SkyPilot: credentials, launch, health, inference, teardown",
          ("test", "cloud"), run="llmpyramid.cloud.suite:run_suite",
          tags=("cloud",), cost="costs money", needs=(CREDENTIALS,), default=False, flags=("cloud",),
          estimate_s=600),
    # the hybrid layer with each reference router: eight scenarios, two stacks, a fault proxy and the router
    Layer("hybrid", "base + burst behind LiteLLM: overflow, failover contract, fail-back, degraded base, cost",
          ("test", "load", "hybrid"), run="llmpyramid.hybrid.suite:run_suite",
          tags=("hybrid",), needs=(ROUTER,), flags=("router",), estimate_s=75),
    Layer("hybrid_haproxy", "the same scenarios behind HAProxy (Debian's package, unpacked without root)",
          ("test", "load"), run="llmpyramid.hybrid.suite:run_suite", env_defaults=(("HYBRID_ROUTER", "haproxy"),),
          tags=("hybrid",), needs=(ROUTER, HAPROXY), flags=("router",), estimate_s=60),
    Layer("hybrid_faults", "the hybrid layer's front door for real: broken router configs, interrupts, kills, "
          "unreachable router", ("test", "load", "hybrid"), paths=("tests/hybrid_faults",), tags=("hybrid",),
          needs=(ROUTER, HAPROXY), estimate_s=120),
    Layer("frontdoors", "bad input at every front door: one line, exit 3 (2 unreachable), no traceback, no stale file",
          # independent cases, most in-process (a subprocess sample per front door): one pytest worker per core
          ("dev", "cloud", "hybrid"), paths=("tests/frontdoors",), pytest_extra=XDIST, tags=("security",),
          estimate_s=45),
    Layer("bench_pyramid", "benchmark: per default nox session wall time, CPU-seconds, core utilisation (JSON)", TEST,
          command=("python", "-m", "llmpyramid.bench_pyramid"), takes="its flags (--sessions, --pipeline, --burners)",
          tags=("bench",), default=False, estimate_s=900),
    Layer("bench_interrupts", "benchmark: SIGINT/SIGTERM/a second signal at random points of every front door, "
          "N runs each: exit codes and leftovers", ("test", "load", "emulators"),
          command=("python", "-m", "llmpyramid.bench_interrupts"), takes="its flags (--doors, --runs, --burners)",
          tags=("bench",), default=False, estimate_s=3600),
    Layer("bench_stack", "benchmark: embedded stack up-to-healthy, RSS, tok/s at n_parallel 1/4/8", TEST,
          command=("python", "-m", "llmpyramid.stack.bench"), tags=("bench",), default=False, estimate_s=120),
    Layer("bench", "benchmark: load harness fidelity, CPU per 1k tokens, max rps on one core", ("load",),
          command=("python", "-m", "llmpyramid.load.bench"), tags=("load", "bench"), default=False, estimate_s=180),
)  # fmt: skip

BY_NAME = {layer.name: layer for layer in LAYERS}
ALL = "all"  # run_tests.py: every `in_all` layer against one target


def names() -> list[str]:
    return [layer.name for layer in LAYERS]


def default_names() -> list[str]:
    """What plain `nox` runs (and `invoke ci`)."""
    return [layer.name for layer in LAYERS if layer.default]


# Markers that cut across layers (a layer's own marker is its name).
CROSS_LAYER_MARKERS = {
    "localstack": "emulated AWS/GCS (moto, fake-gcs-server or LocalStack): `pytest -m localstack`",
    "terraform": "runs the terraform CLI",
    "cloud": "SkyPilot against a cloud (emulated or real)",
    "slow": "takes more than a few seconds",
}


def markers() -> dict[str, str]:
    """pytest marker -> description: every marked layer, plus the cross-layer markers."""
    return {**{layer.marker: layer.checks for layer in LAYERS if layer.marker}, **CROSS_LAYER_MARKERS}


def get(name: str) -> Layer:
    from llmpyramid.errors import ConfigError

    try:
        return BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown layer {name!r}; choose one of: {', '.join([*names(), ALL])}") from None
