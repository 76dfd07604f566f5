"""Benchmark of the load harness itself (`nox -s bench`, `python -m llmpyramid.load.bench`).

Printed numbers, not timed assertions:

(a) fidelity  client-measured TTFT and end-to-end latency vs the server's own llama.cpp `timings`
              for the same requests (1 user, streaming, so no queueing hides in the gap);
(b) cost      CPU seconds locust spends per 1,000 streamed output tokens at 8 and 32 users
              (rusage of the locust process between test start and stop: no import/report time),
              and the share of it that the server-metrics scrape takes (its CPU per scrape, measured
              alone against the same target, times the scrapes the run made; budget 5 %);
(c) capacity  requests/s locust sustains with the generator pinned to one core against a trivial
              canned-response HTTP server pinned to the other core.

The machine is shared: each phase prints the 1-minute load average before it ran; rerun when it
is well above the number of cores this benchmark uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from llmpyramid.cli import guarded
from llmpyramid.config import PROJECT_ROOT
from llmpyramid.load.config import SLO, LoadConfig
from llmpyramid.load.report import SAMPLES_FILE, read_samples
from llmpyramid.load.runner import run_load
from llmpyramid.target import Target, target_from_env

# --- a trivial fast endpoint ---------------------------------------------------------------------

_BODY = json.dumps({
    "id": "cmpl-bench", "object": "text_completion", "model": "bench",
    "choices": [{"index": 0, "text": " ok", "finish_reason": "length"}],
    "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
}).encode()  # fmt: skip
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_BODY)).encode()
    + b"\r\nConnection: keep-alive\r\n\r\n"
    + _BODY
)


def _sse(payload: dict[str, Any] | str) -> bytes:
    """One SSE event as one HTTP/1.1 chunk (what llama.cpp's server writes per token)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    event = f"data: {data}\n\n".encode()
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


class _Canned(asyncio.Protocol):
    """A trivial OpenAI-compatible endpoint on HTTP/1.1 keep-alive. Non-streaming requests get a
    canned one-token answer at once; streaming ones get `max_tokens` llama.cpp-shaped chunks, one
    every `pace` seconds, then usage + timings and [DONE] (so the client does its real per-token work)."""

    pace = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length = 0
            i = head.find(b"content-length:")
            if i >= 0:
                length = int(head[i + 15 :].split(b"\r\n", 1)[0])
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            if b'"stream": true' in body or b'"stream":true' in body:
                request = json.loads(body)
                asyncio.get_running_loop().create_task(self._stream(int(request.get("max_tokens") or 16)))
            else:
                self.transport.write(_RESPONSE)

    async def _stream(self, tokens: int) -> None:
        w = self.transport.write
        w(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
          b"Connection: keep-alive\r\n\r\n")  # fmt: skip
        base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "bench", "created": 0}
        for _ in range(tokens):
            if self.pace:
                await asyncio.sleep(self.pace)
            w(_sse({**base, "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": None}]}))
        w(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}))
        w(_sse({**base, "choices": [], "usage": {"completion_tokens": tokens, "prompt_tokens": 8},
                "timings": {"prompt_n": 8, "prompt_ms": 1.0, "predicted_n": tokens, "predicted_ms": 1.0}}))  # fmt: skip
        w(_sse("[DONE]") + b"0\r\n\r\n")


def _serve_canned(port: int, cpu: int | None, pace: float = 0.0) -> None:
    _Canned.pace = pace
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Canned, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- phases ------------------------------------------------------------------------------------


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def _base_config(out: Path, **kw: Any) -> LoadConfig:
    # no SLO gate: a benchmark measures, it does not judge
    return replace(LoadConfig.from_env(results_dir=out, slo=SLO(error_rate=None)), **kw)


def fidelity(target: Target, out: Path, duration: float) -> dict[str, Any]:
    cfg = _base_config(out / "fidelity", users=1, spawn_rate=1, duration=duration,
                       mix={"chat_stream": 1, "completion_stream": 1}, max_tokens=(64,))  # fmt: skip
    la = _load_avg()
    run_load(cfg, target, notify=lambda m: None)
    rows = [
        (s.ttft_ms, s.server_prompt_ms, s.latency_ms, s.server_predicted_ms)
        for s in read_samples(cfg.results_dir / SAMPLES_FILE)
        if s.ok and None not in (s.ttft_ms, s.server_prompt_ms, s.server_predicted_ms)
    ]
    if not rows:
        return {"requests": 0, "load_avg_before": la, "note": "no request completed; the server is too slow now"}
    ttft_c, ttft_s, e2e_c, predicted = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    e2e_s = ttft_s + predicted
    return {
        "requests": len(rows),
        "load_avg_before": la,
        "latency_client_p50_ms": round(float(np.median(e2e_c)), 2),
        "latency_server_p50_ms": round(float(np.median(e2e_s)), 2),
        "latency_median_gap_ms": round(float(np.median(e2e_c - e2e_s)), 2),
        "latency_median_rel_gap": round(float(np.median((e2e_c - e2e_s) / e2e_s)), 4),
        "ttft_client_p50_ms": round(float(np.median(ttft_c)), 2),
        "ttft_server_prompt_p50_ms": round(float(np.median(ttft_s)), 2),
        "ttft_median_gap_ms": round(float(np.median(ttft_c - ttft_s)), 2),
        "ttft_median_rel_gap": round(float(np.median((ttft_c - ttft_s) / ttft_s)), 4),
    }


def cost(target: Target, out: Path, users: int, duration: float) -> dict[str, Any]:
    cfg = _base_config(out / f"cost_{users}", users=users, spawn_rate=users, duration=duration,
                       mix={"chat_stream": 1, "completion_stream": 1}, max_tokens=(32, 64))  # fmt: skip
    la = _load_avg()
    run = run_load(cfg, target, notify=lambda m: None)
    scrapes = json.loads(Path(run.artifacts["results"]).read_text()).get("server_metrics", {}).get("samples", 0)
    per_scrape = scrape_cpu_seconds(target)
    cpu = run.load_test.get("generator_cpu_seconds") or 0.0
    share = round(per_scrape * scrapes / cpu, 4) if cpu else None
    return _cost_row(users, la, run.load_test, scrapes=scrapes, scrape_cpu_ms=round(per_scrape * 1000, 3),
                     scrape_share_of_generator_cpu=share)  # fmt: skip


def scrape_cpu_seconds(target: Target, samples: int = 20) -> float:
    """CPU seconds of one /metrics + /slots scrape, alone (inside a run it interleaves with the users')."""
    import resource

    from llmpyramid.load.protocol import auth_headers
    from llmpyramid.load.server_metrics import ServerMetrics

    scraper = ServerMetrics(target.base_url, auth_headers(target.api_key, target.base_url) or None)
    scraper.sample()  # connection set up, parser imported: not per-scrape work

    def cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    started = cpu()
    for _ in range(samples):
        scraper.sample()
    scraper.close()
    return (cpu() - started) / samples


def _cost_row(users: int, load_avg_before: Any, lt: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Item (b)'s figures from one run's load_test: generator CPU per 1,000 output tokens."""
    tokens = lt.get("output_tokens") or 0
    cpu = lt.get("generator_cpu_seconds") or 0.0
    return {
        "users": users,
        **extra,
        "load_avg_before": load_avg_before,
        "output_tokens": tokens,
        "output_tokens_per_second": lt.get("output_tokens_per_second"),
        "generator_cpu_seconds": cpu,
        "cpu_seconds_per_1k_tokens": round(cpu / tokens * 1000, 4) if tokens else None,
        "generator_core_utilisation": round(cpu / lt["duration_seconds"], 3) if lt.get("duration_seconds") else None,
        "error_rate": lt.get("error_rate"),
    }


@contextlib.contextmanager
def canned_endpoint(pace: float) -> Iterator[tuple[Target, psutil.Process, int, int | None]]:
    """The trivial endpoint in its own process, pinned to the last core; yields the generator's core too."""
    from llmpyramid.ports import free_port

    cores = sorted(os.sched_getaffinity(0))
    gen_core, srv_core = cores[0], (cores[-1] if len(cores) > 1 else None)
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve_canned, args=(port, srv_core, pace), daemon=True
    )
    server.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            time.sleep(0.05)
        yield Target(f"http://127.0.0.1:{port}", None, "bench"), psutil.Process(server.pid), gen_core, srv_core
    finally:
        server.terminate()
        server.join(5)


def _pinned_run(cfg: LoadConfig, target: Target, core: int) -> Any:
    """run_load with locust pinned to one core (the child inherits the affinity)."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        return run_load(cfg, target, notify=lambda m: None)
    finally:
        os.sched_setaffinity(0, cores)


def synthetic_cost(out: Path, users: int, duration: float, pace: float = 0.01) -> dict[str, Any]:
    """(b) against the canned streaming endpoint: the generator's per-token work without a slow server."""
    with canned_endpoint(pace) as (target, _srv, gen_core, _):
        cfg = _base_config(out / f"cost_synthetic_{users}", users=users, spawn_rate=users, duration=duration,
                           mix={"chat_stream": 1}, max_tokens=(64,), ignore_eos=False)  # fmt: skip
        la = _load_avg()
        lt = _pinned_run(cfg, target, gen_core).load_test
    return _cost_row(users, la, lt, endpoint=f"canned SSE, {pace * 1000:g} ms/token per stream")


def capacity(out: Path, duration: float, users: int) -> dict[str, Any]:
    """(c) requests/s of the generator on one core, non-streaming, against the canned endpoint."""
    with canned_endpoint(0.0) as (target, srv, gen_core, srv_core):
        cfg = _base_config(out / "capacity", users=users, spawn_rate=users, duration=duration,
                           mix={"completion": 1}, max_tokens=(1,), ignore_eos=False)  # fmt: skip
        srv_cpu0 = sum(srv.cpu_times()[:2])
        la = _load_avg()
        run = _pinned_run(cfg, target, gen_core)
        srv_cpu = sum(srv.cpu_times()[:2]) - srv_cpu0
    lt = run.load_test
    return {
        "users": users,
        "load_avg_before": la,
        "requests_per_second": lt.get("requests_per_second"),
        "error_rate": lt.get("error_rate"),
        "generator_core_utilisation": round((lt.get("generator_cpu_seconds") or 0) / lt["duration_seconds"], 3),
        "endpoint_cpu_seconds": round(srv_cpu, 2),
        "pinned": {"generator_core": gen_core, "endpoint_core": srv_core},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmpyramid.load.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per phase (default 20)")
    ap.add_argument("--phases", default="fidelity,cost,cost_synthetic,capacity")
    ap.add_argument("--results-dir", default=str(PROJECT_ROOT / "results" / "bench"))
    ap.add_argument("--base-url", help="LLM server for (a) and (b); default: an embedded stack")
    args = ap.parse_args(argv)
    with guarded():
        from llmpyramid.stack.embedded import target_session

        out = Path(args.results_dir)
        phases = set(args.phases.split(","))
        report: dict[str, Any] = {"cores": os.cpu_count()}
        if phases & {"fidelity", "cost"}:
            with target_session(target_from_env(args.base_url)) as (target, _stack):
                if "fidelity" in phases:
                    report["fidelity"] = fidelity(target, out, args.duration)
                    print(f"(a) fidelity: {json.dumps(report['fidelity'])}", file=sys.stderr, flush=True)
                if "cost" in phases:
                    report["cost"] = [cost(target, out, u, args.duration) for u in (8, 32)]
                    for c in report["cost"]:
                        print(f"(b) cost: {json.dumps(c)}", file=sys.stderr, flush=True)
        if "cost_synthetic" in phases:
            report["cost_synthetic"] = [synthetic_cost(out, u, args.duration) for u in (8, 32)]
            for c in report["cost_synthetic"]:
                print(f"(b) cost, synthetic endpoint: {json.dumps(c)}", file=sys.stderr, flush=True)
        if "capacity" in phases:
            report["capacity"] = capacity(out, args.duration, users=32)
            print(f"(c) capacity: {json.dumps(report['capacity'])}", file=sys.stderr, flush=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
