"""Locust glue: turns a locustfile's namespace into the LLM load test.

`install(globals())` (called by tests/locustfile.py) defines the concrete user class (and the
sweep shape when LOAD_SHAPE=sweep) in the locustfile's namespace and registers event listeners:

- init (master/local): validate flags (-u 0 -> exit 3), find the target (--host, BASE_URL, a
  running embedded stack, else start one owned by this process), fail fast if unreachable (exit 2);
- worker -> master: LLM samples ride on locust's periodic worker reports, and the tail is sent as
  a custom message when the worker stops, so the master's test_stop sees every sample;
- test_stop (master/local): summarise, evaluate SLOs, write the results JSON, samples and plots,
  and set the process exit code (1 on an SLO violation).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from locust import events
from locust.runners import MasterRunner, WorkerRunner

from llmpyramid.errors import ConfigError, InfrastructureError, PyramidError
from llmpyramid.load.config import LoadConfig, evaluate_slo
from llmpyramid.load.knee import find_knee, score_levels
from llmpyramid.load.metrics import summarize
from llmpyramid.load.report import RESULTS_FILE, SAMPLES_FILE, plot_run, write_json, write_samples
from llmpyramid.load.shapes import ScalingSweep
from llmpyramid.load.users import COLLECTOR, ArrivalRateUser, LLMUser

LOAD_TEST_KEYS = (
    "requests_per_second", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "ttft_p50_ms", "ttft_p95_ms",
    "ttft_p99_ms", "itl_p50_ms", "itl_p95_ms", "itl_p99_ms", "tpot_p50_ms", "tpot_p95_ms",
    "output_tokens_per_second", "output_tokens", "error_rate", "requests", "failures", "duration_seconds", "errors",
)  # fmt: skip


IN_FLIGHT_GRACE_S = 15.0  # default --stop-timeout for closed-loop users (locust's own default is 0)


def _die(exc: PyramidError) -> None:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(int(exc.exit_code))


class _State:
    def __init__(self) -> None:
        self.config: LoadConfig
        self.shape: ScalingSweep | None = None
        self.started_at: float | None = None
        self.stack: Any = None  # an EmbeddedStack this process started (stopped on quit)
        self.tails: set[str] = set()  # workers whose final samples have arrived (master)
        self.cpu_at_start: float | None = None  # this process's CPU seconds when the test started
        self.worker_cpu = 0.0  # CPU seconds the workers spent during the test (master)


STATE = _State()


def install(namespace: dict[str, Any]) -> None:
    try:
        config = LoadConfig.from_env()
    except PyramidError as exc:
        _die(exc)
    STATE.config = config
    LLMUser.config = ArrivalRateUser.config = config
    LLMUser.network_timeout = ArrivalRateUser.network_timeout = config.request_timeout
    if config.shape == "rate":
        namespace["ArrivalRate"] = type("ArrivalRate", (ArrivalRateUser,), {"__module__": namespace["__name__"]})
    else:
        namespace["LLM"] = type("LLM", (LLMUser,), {"__module__": namespace["__name__"]})
    if config.shape == "sweep":
        namespace["Sweep"] = type("Sweep", (ScalingSweep,), {"config": config, "samples_source": COLLECTOR})
    _register()


def _strict_parser(parser: Any, **_: Any) -> None:
    """Bad locust flags (`-t -5s`, `-u x`) are configuration errors: exit 3, one line (argparse says 2)."""

    def error(message: str) -> None:
        _die(ConfigError(f"locust: {message}"))

    parser.error = error


def _register() -> None:
    events.init_command_line_parser.add_listener(_strict_parser)
    events.init.add_listener(_on_init)
    events.report_to_master.add_listener(_on_report_to_master)
    events.worker_report.add_listener(_on_worker_report)
    events.test_start.add_listener(_on_test_start)
    events.test_stop.add_listener(_on_test_stop)
    events.quitting.add_listener(_on_quitting)


def _resolve_host(environment: Any) -> str:
    from llmpyramid.stack import EmbeddedStack, Target, check_reachable, normalize_base_url

    raw = environment.host or os.environ.get("BASE_URL")
    if raw:
        host = normalize_base_url(raw)
    else:
        stack = EmbeddedStack()
        state = stack.running()
        if state is None:
            print("no --host or BASE_URL: starting the embedded llama.cpp stack", file=sys.stderr, flush=True)
            state = stack.up(owner_pid=os.getpid())
            STATE.stack = stack
        host = state.base_url
        if state.api_key and not os.environ.get("API_KEY"):
            os.environ["API_KEY"] = state.api_key
    check_reachable(Target(host))
    return host


def _on_init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        opts = environment.parsed_options
        try:
            if opts is not None and opts.num_users is not None and opts.num_users < 1:
                raise ConfigError(f"users must be >= 1, got {opts.num_users} (-u/--users)")
            if opts is not None and opts.spawn_rate is not None and opts.spawn_rate <= 0:
                raise ConfigError(f"spawn rate must be > 0, got {opts.spawn_rate} (-r/--spawn-rate)")
            if opts is not None and STATE.config.shape == "constant":
                overrides: dict[str, Any] = {}
                if opts.num_users:
                    overrides["users"] = opts.num_users
                if opts.spawn_rate:
                    overrides["spawn_rate"] = opts.spawn_rate
                if opts.run_time:
                    overrides["duration"] = float(opts.run_time)
                if overrides:
                    STATE.config = LoadConfig.from_env(slo=STATE.config.slo, **overrides)
            if opts is not None and not opts.stop_timeout and STATE.config.shape != "rate":
                # LLM requests are long: let the one in flight finish at the end so it is counted
                environment.stop_timeout = IN_FLIGHT_GRACE_S
            environment.host = _resolve_host(environment)
        except PyramidError as exc:
            _stop_own_stack()
            _die(exc)
        except Exception as exc:  # e.g. the embedded stack could not start
            _stop_own_stack()
            _die(InfrastructureError(f"{type(exc).__name__}: {exc}"))
    if isinstance(runner, MasterRunner):
        runner.register_message("llm_samples", _on_samples_message)
    if isinstance(runner, WorkerRunner):
        events.test_stop.add_listener(_send_tail)


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _send_tail(environment: Any, **_: Any) -> None:
    cpu = _cpu_seconds() - STATE.cpu_at_start if STATE.cpu_at_start is not None else None
    environment.runner.send_message("llm_samples", {"samples": COLLECTOR.drain_wire(), "cpu": cpu})


def _on_samples_message(environment: Any, msg: Any, **_: Any) -> None:
    data = msg.data or {}
    COLLECTOR.extend_wire(data.get("samples") or [])
    if data.get("cpu") is not None:
        STATE.worker_cpu += float(data["cpu"])
    STATE.tails.add(msg.node_id)


def _wait_for_tails(runner: MasterRunner, timeout: float = 10.0) -> None:
    """Workers send their last samples when they stop; the master's test_stop can race ahead of them."""
    import gevent

    expected = {c.id for c in runner.clients.all}
    deadline = time.monotonic() + timeout
    while expected - STATE.tails and time.monotonic() < deadline:
        gevent.sleep(0.1)


def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["llm_samples"] = COLLECTOR.drain_wire()


def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    COLLECTOR.extend_wire(data.get("llm_samples") or [])


def _on_test_start(environment: Any, **_: Any) -> None:
    STATE.cpu_at_start = _cpu_seconds()
    if not isinstance(environment.runner, WorkerRunner):
        COLLECTOR.clear()
        STATE.tails = set()
        STATE.worker_cpu = 0.0
        STATE.started_at = time.time()
        STATE.shape = environment.shape_class


def _on_test_stop(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or STATE.started_at is None:
        return
    runner = environment.runner
    workers = 0
    if isinstance(runner, MasterRunner):
        _wait_for_tails(runner)
        workers = len(STATE.tails) or len(runner.clients)
    cpu = _cpu_seconds() - (STATE.cpu_at_start or 0.0) + STATE.worker_cpu
    result = finalize(STATE.config, environment.host, STATE.started_at, time.time(), workers, STATE.shape, cpu)
    environment.process_exit_code = 1 if result["findings"] else 0
    STATE.started_at = None


def _on_quitting(environment: Any, **_: Any) -> None:
    _stop_own_stack()


def _stop_own_stack() -> None:
    if STATE.stack is not None:
        STATE.stack.down()
        STATE.stack = None


def finalize(
    config: LoadConfig,
    host: str | None,
    started: float,
    stopped: float,
    workers: int,
    shape: Any = None,
    generator_cpu: float | None = None,
) -> dict[str, Any]:
    """Summarise the collected samples, evaluate SLOs, write reports; returns the results document."""
    samples = list(COLLECTOR.samples)
    summary = summarize(samples, duration_s=stopped - started)
    load_test: dict[str, Any] = {k: summary.get(k) for k in LOAD_TEST_KEYS}
    load_test["shape"] = config.shape_description()
    load_test["target"] = host
    load_test["workers"] = workers
    # CPU seconds locust (master + workers) spent while the test ran: the harness's own cost
    load_test["generator_cpu_seconds"] = round(generator_cpu, 3) if generator_cpu is not None else None
    tokens_from = sorted({s.tokens_source for s in samples if s.tokens_source})
    load_test["output_tokens_source"] = ",".join(tokens_from) or None
    if isinstance(shape, ScalingSweep) and shape.level_starts:
        n = len(shape.level_starts)
        levels = score_levels(samples, config.sweep_levels[:n], shape.level_starts, config.sweep_step)
        load_test["sweep"] = {"levels": levels, "knee": find_knee(levels, config.sweep_min_gain),
                              "stopped_early": shape.stopped_early}  # fmt: skip
    if not samples:
        load_test["error_rate"] = 1.0  # nothing completed: as bad as every request failing
    findings = evaluate_slo(load_test, config.slo)
    if not samples:
        findings.insert(0, "no request completed during the run (server too slow, or not answering)")
    out = Path(config.results_dir)
    plots: list[str] = []
    try:
        plots = plot_run(samples, out, load_test.get("sweep"))
    except Exception as exc:  # a report must never hide the run's verdict
        findings.append(f"plots not written: {type(exc).__name__}: {exc}")
    write_samples(out / SAMPLES_FILE, samples)
    doc = {
        "load_test": load_test,
        "findings": findings,
        "slo": config.slo.active(),
        "exit_code": 1 if findings else 0,
        "artifacts": {"results": str(out / RESULTS_FILE), "samples": str(out / SAMPLES_FILE), "plots": plots},
        "started_at": started,
        "finished_at": stopped,
    }
    write_json(out / RESULTS_FILE, doc)
    _print_summary(load_test, findings)
    return doc


def _print_summary(lt: dict[str, Any], findings: list[str]) -> None:
    def f(key: str) -> str:
        v = lt.get(key)
        return "-" if v is None else f"{v:g}"

    print(
        f"LLM load: {lt['requests']} requests, {f('requests_per_second')} req/s, "
        f"{f('output_tokens_per_second')} out tok/s, error rate {f('error_rate')} | latency p50/p95/p99 "
        f"{f('p50_latency_ms')}/{f('p95_latency_ms')}/{f('p99_latency_ms')} ms | TTFT p50/p95 "
        f"{f('ttft_p50_ms')}/{f('ttft_p95_ms')} ms | ITL p50/p95 {f('itl_p50_ms')}/{f('itl_p95_ms')} ms",
        file=sys.stderr,
        flush=True,
    )
    if "sweep" in lt:
        knee = lt["sweep"]["knee"]
        where = f"knee at {knee['users']} users" if knee.get("users") else "no knee"
        print(f"LLM load sweep: {where} ({knee['reason']})", file=sys.stderr, flush=True)
    for line in findings:
        print(f"FAIL: {line}", file=sys.stderr, flush=True)
