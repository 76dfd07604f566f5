"""Locust glue: turns a locustfile's namespace into the LLM load test.

`install(globals())` (called by tests/locustfile.py) defines the concrete user class (and the
sweep shape when LOAD_SHAPE=sweep) in the locustfile's namespace and registers event listeners:

- init (master/local): validate flags (-u 0 -> exit 3), find the target (--host, BASE_URL, a
  running embedded stack, else start one owned by this process), fail fast if unreachable (exit 2);
  credentials (API_KEY, or `user:password@` in the URL) become request headers, and locust only
  ever sees the URL without them (its report, its command line);
- test_start (master/local): the run ends when LOAD_DURATION is up and LOAD_MIN_REQUESTS requests
  are done, or at LOAD_MAX_DURATION (this replaces locust's own -t timer, which only counts time);
- worker -> master: LLM samples ride on locust's periodic worker reports, and the tail is sent as
  a custom message when the worker stops, so the master's test_stop sees every sample;
- test_stop (master/local): summarise, evaluate SLOs, write the results JSON and samples, print the
  verdict, set the process exit code (1 on an SLO violation or an inconclusive run); plots and the
  LLM HTML report come after the verdict, in a child (see report.render_reports).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from llmpyramid.config import env_value, parse_url, redact_url
from llmpyramid.errors import ConfigError, InfrastructureError, PyramidError
from llmpyramid.load.config import LoadConfig, evaluate_slo
from llmpyramid.load.knee import find_knee, score_levels
from llmpyramid.load.metrics import percentile_note, summarize
from llmpyramid.load.protocol import auth_headers, without_userinfo
from llmpyramid.load.report import (
    RESULTS_FILE,
    SAMPLES_FILE,
    inconclusive,
    render_reports,
    verdict_of,
    write_json,
    write_samples,
)
from llmpyramid.load.server_metrics import ServerMetrics
from llmpyramid.load.shapes import ScalingSweep
from llmpyramid.load.users import ARRIVALS, COLLECTOR, ArrivalRateUser, LLMUser

LOAD_TEST_KEYS = (
    "requests_per_second", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "ttft_p50_ms", "ttft_p95_ms",
    "ttft_p99_ms", "itl_p50_ms", "itl_p95_ms", "itl_p99_ms", "tpot_p50_ms", "tpot_p95_ms",
    "output_tokens_per_second", "output_tokens", "error_rate", "requests", "completed", "failures",
    "duration_seconds", "errors", "goodput_rps", "goodput_share", "goodput_limits", "p50_latency_with_failures_ms",
    "p95_latency_with_failures_ms", "p99_latency_with_failures_ms", "ttft_p95_with_failures_ms",
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
        self.target_shown: str | None = None  # the target as reports show it (credentials redacted)
        self.ended_by: str | None = None  # why the run ended (duration, request count, cap)
        self.server_metrics: ServerMetrics | None = None  # the target's /metrics, sampled by the master
        self.scraping: Any = None  # its greenlet


STATE = _State()


def install(namespace: dict[str, Any]) -> None:
    try:
        config = LoadConfig.from_env()
    except PyramidError as exc:
        _die(exc)
    STATE.config = config
    LLMUser.config = ArrivalRateUser.config = config
    # every process (workers too) builds the credentials from its own environment
    _set_credentials(env_value("API_KEY"), env_value("BASE_URL"))
    LLMUser.network_timeout = ArrivalRateUser.network_timeout = config.request_timeout
    if config.shape == "rate":
        namespace["ArrivalRate"] = type("ArrivalRate", (ArrivalRateUser,), {"__module__": namespace["__name__"]})
    else:
        namespace["LLM"] = type("LLM", (LLMUser,), {"__module__": namespace["__name__"]})
    if config.shape == "sweep":
        namespace["Sweep"] = type("Sweep", (ScalingSweep,), {"config": config, "samples_source": COLLECTOR})
    _register()


def _set_credentials(api_key: str | None, url: str | None) -> None:
    headers = auth_headers(api_key, url)
    LLMUser.default_headers = ArrivalRateUser.default_headers = headers or None


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
    """The target without credentials (what locust may show); the credentials go into headers."""
    raw = environment.host or env_value("BASE_URL")
    if raw:
        url = parse_url("--host" if environment.host else "BASE_URL", raw)
        _set_credentials(env_value("API_KEY"), url)
    else:
        from llmpyramid.stack.embedded import EmbeddedStack

        stack = EmbeddedStack()
        state = stack.running()
        if state is None:
            print("no --host or BASE_URL: starting the embedded llama.cpp stack", file=sys.stderr, flush=True)
            state = stack.up(owner_pid=os.getpid())
            STATE.stack = stack
        url = state.base_url
        _set_credentials(env_value("API_KEY") or state.api_key, url)
    STATE.target_shown = redact_url(url)
    from llmpyramid.target import PROBED_ENV, Target, check_reachable

    if env_value(PROBED_ENV) != url:  # the front door has not probed it: raw `locust -f ...`
        check_reachable(Target(url))
    return without_userinfo(url)


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
            if opts is not None and STATE.config.shape != "sweep":
                opts.run_time = None  # _end_when_conclusive decides when the run ends
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
        _stop_workers_before_quitting(runner)
    if isinstance(runner, WorkerRunner):
        events.test_stop.add_listener(_send_tail)


def _stop_workers_before_quitting(runner: MasterRunner) -> None:
    """Locust's master quits without stopping its workers first, so test_stop fires on the master
    before the workers have finished their in-flight requests and sent their last samples (a short
    distributed run on a busy box then counted 0 requests). Stop them first, then quit."""
    quit_now = runner.quit

    def stop_then_quit() -> None:
        runner.stop()
        quit_now()

    runner.quit = stop_then_quit  # type: ignore[method-assign]


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _send_tail(environment: Any, **_: Any) -> None:
    cpu = _cpu_seconds() - STATE.cpu_at_start if STATE.cpu_at_start is not None else None
    tail = {"samples": COLLECTOR.drain_wire(), "cpu": cpu, "arrivals": ARRIVALS.to_dict()}
    environment.runner.send_message("llm_samples", tail)


def _on_samples_message(environment: Any, msg: Any, **_: Any) -> None:
    data = msg.data or {}
    COLLECTOR.extend_wire(data.get("samples") or [])
    if data.get("cpu") is not None:
        STATE.worker_cpu += float(data["cpu"])
    if data.get("arrivals"):
        ARRIVALS.merge(data["arrivals"])
    STATE.tails.add(msg.node_id)


def _wait_for_tails(runner: MasterRunner, timeout: float = 10.0) -> None:
    """Workers send their last samples when they stop; the master's test_stop can race ahead of them."""
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
    ARRIVALS.clear()
    if not isinstance(environment.runner, WorkerRunner):
        COLLECTOR.clear()
        STATE.tails = set()
        STATE.worker_cpu = 0.0
        STATE.started_at = time.time()
        STATE.shape = environment.shape_class
        STATE.ended_by = None
        if STATE.config.shape != "sweep":
            gevent.spawn(_end_when_conclusive, environment.runner)
        if environment.host:
            STATE.server_metrics = ServerMetrics(environment.host, LLMUser.default_headers,
                                                 interval_s=STATE.config.server_metrics_interval)  # fmt: skip
            STATE.scraping = gevent.spawn(_scrape, STATE.server_metrics)


def _scrape(scraper: ServerMetrics) -> None:
    """Sample the target's own metrics at a fixed interval until the test stops."""
    while True:
        scraper.sample()
        gevent.sleep(scraper.interval_s)


def _end_when_conclusive(runner: Any) -> None:
    """Stop after the duration once min_requests are done (answered, ok or not), at the latest at the cap.

    Counting answered requests rather than wall time keeps the verdict meaningful on a slow or busy
    machine; failures count too, so a failing server ends the run at its duration, not at the cap."""
    cfg = STATE.config
    started = time.monotonic()
    gevent.sleep(cfg.duration)
    announced = False
    while (done := _answered()) < cfg.min_requests and time.monotonic() - started < cfg.effective_max_duration:
        if not announced:
            print(f"LLM load: {done} of {cfg.min_requests} requests done after {cfg.duration:g}s; running on, "
                  f"up to {cfg.effective_max_duration:g}s", file=sys.stderr, flush=True)  # fmt: skip
            announced = True
        gevent.sleep(0.5)
    elapsed = time.monotonic() - started
    STATE.ended_by = (f"duration {cfg.duration:g}s" if not announced else
                      f"{done} requests done after {elapsed:.0f}s" if done >= cfg.min_requests else
                      f"maximum duration {cfg.effective_max_duration:g}s")  # fmt: skip
    runner.quit()


def _answered() -> int:
    return sum(1 for s in COLLECTOR.samples if not (s.error or "").startswith("dropped"))


def _on_test_stop(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or STATE.started_at is None:
        return
    runner = environment.runner
    workers = 0
    if isinstance(runner, MasterRunner):
        _wait_for_tails(runner)
        workers = len(STATE.tails) or len(runner.clients)
    if STATE.scraping is not None:
        STATE.scraping.kill()
        STATE.scraping = None
    cpu = _cpu_seconds() - (STATE.cpu_at_start or 0.0) + STATE.worker_cpu
    target = STATE.target_shown or environment.host
    result = finalize(STATE.config, target, STATE.started_at, time.time(), workers, STATE.shape, cpu)
    environment.process_exit_code = 1 if result["findings"] else 0
    STATE.started_at = None
    if STATE.config.plots:  # after the verdict; the front door sets LOAD_PLOTS=0 and renders itself
        problem = render_reports(STATE.config.results_dir)
        if problem:
            print(f"LLM load: {problem}", file=sys.stderr, flush=True)


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
    summary = summarize(samples, duration_s=stopped - started, limits=config.slo.per_request(),
                        failure_ms=config.request_timeout * 1000)  # fmt: skip
    load_test: dict[str, Any] = {k: summary.get(k) for k in LOAD_TEST_KEYS}
    load_test["percentile_note"] = percentile_note(summary, config.request_timeout)
    load_test["shape"] = config.shape_description()
    load_test["target"] = host
    load_test["workers"] = workers
    load_test["min_requests"] = config.min_requests
    load_test["ended_by"] = STATE.ended_by
    # CPU seconds locust (master + workers) spent while the test ran: the harness's own cost
    load_test["generator_cpu_seconds"] = round(generator_cpu, 3) if generator_cpu is not None else None
    tokens = load_test.get("output_tokens") or 0
    load_test["generator_cpu_seconds_per_1k_tokens"] = (
        round(generator_cpu / tokens * 1000, 4) if generator_cpu is not None and tokens else None
    )
    tokens_from = sorted({s.tokens_source for s in samples if s.tokens_source})
    load_test["output_tokens_source"] = ",".join(tokens_from) or None
    if config.shape == "rate":
        load_test["arrivals"] = ARRIVALS.summary()
    if isinstance(shape, ScalingSweep) and shape.level_starts:
        n = len(shape.level_starts)
        levels = score_levels(samples, config.sweep_levels[:n], shape.level_starts, config.sweep_step)
        load_test["sweep"] = {"levels": levels, "knee": find_knee(levels, config.sweep_min_gain, finished=True),
                              "stopped_early": shape.stopped_early}  # fmt: skip
    if not samples:
        load_test["error_rate"] = 1.0  # nothing completed: as bad as every request failing
    findings = evaluate_slo(load_test, config.slo)
    if load_test.get("errors"):  # say what went wrong, e.g. "HTTP 401: ... Invalid API Key"
        top, count = next(iter(load_test["errors"].items()))
        note = f" (most frequent error, {count}x: {top})"
        findings = [f + note if f.startswith("error rate") else f for f in findings]
    if (load_test["completed"] or 0) < config.min_requests:
        findings.insert(0, inconclusive(load_test["completed"] or 0, config.min_requests))
    out = Path(config.results_dir)
    write_samples(out / SAMPLES_FILE, samples)
    doc = {
        "verdict": verdict_of(findings),
        "load_test": load_test,
        "findings": findings,
        "slo": config.slo.active(),
        "server_metrics": _server_metrics_document(started),
        "exit_code": 1 if findings else 0,
        "artifacts": {"results": str(out / RESULTS_FILE), "samples": str(out / SAMPLES_FILE)},
        "started_at": started,
        "finished_at": stopped,
    }
    write_json(out / RESULTS_FILE, doc)
    _print_summary(load_test, findings)
    return doc


def _server_metrics_document(started: float) -> dict[str, Any]:
    scraper, STATE.server_metrics = STATE.server_metrics, None
    if scraper is None:
        return {"status": "not scraped (no target)"}
    scraper.close()
    return scraper.document(t0=started)


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
    share = "-" if lt.get("goodput_share") is None else f"{lt['goodput_share']:.1%}"
    print(f"LLM load goodput: {f('goodput_rps')} req/s meeting every SLO limit ({share} of requests; failed ones miss)",
          file=sys.stderr, flush=True)  # fmt: skip
    for line in findings:
        print(f"FAIL: {line}", file=sys.stderr, flush=True)
    note = f" ({lt['percentile_note']})" if lt.get("percentile_note") else ""
    print(f"LLM load verdict: {verdict_of(findings)}{note}", file=sys.stderr, flush=True)
