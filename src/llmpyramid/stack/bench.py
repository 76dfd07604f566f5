"""Benchmark of the embedded stack (prints numbers; no assertions):

- time from `up()` to a healthy /health, on a warm environment (model already on disk);
- server RSS idle and after N requests;
- aggregate generated tokens/s with C concurrent clients, for several n_parallel settings.

    python -m llmpyramid.stack.bench [--parallel 1 4 8] [--concurrency 8] [--requests 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llmpyramid.cli import guarded
from llmpyramid.config import StackSettings
from llmpyramid.stack.embedded import EmbeddedStack

PROMPT = "Write a short story about a lighthouse keeper and a storm."


async def _load(base_url: str, concurrency: int, requests: int, max_tokens: int) -> dict[str, float]:
    """Send `requests` completions through `concurrency` workers; count generated tokens."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    tokens = 0
    failures = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal tokens, failures
        while not queue.empty():
            i = queue.get_nowait()
            body = {"prompt": f"{PROMPT} ({i})", "max_tokens": max_tokens, "temperature": 0.8, "seed": i}
            r = await client.post(f"{base_url}/v1/completions", json=body)
            if r.status_code == 200:
                tokens += r.json()["usage"]["completion_tokens"]
            else:
                failures += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "tokens": tokens,
        "seconds": round(wall, 2),
        "tokens_per_second": round(tokens / wall, 1),
        "failures": failures,
    }


def bench_one(parallel: int, concurrency: int, requests: int, max_tokens: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = EmbeddedStack(StackSettings.from_env(port=0, parallel=parallel, run_dir=Path(tmp)))
        started = time.perf_counter()
        state = stack.up(notify=lambda _: None)
        up_seconds = time.perf_counter() - started
        try:
            idle_rss = stack.rss_bytes() or 0
            asyncio.run(_load(state.base_url, concurrency, concurrency, 8))  # warm-up
            load = asyncio.run(_load(state.base_url, concurrency, requests, max_tokens))
            loaded_rss = stack.rss_bytes() or 0
        finally:
            stack.down()
    return {
        "parallel": parallel,
        "concurrency": concurrency,
        "requests": requests,
        "max_tokens": max_tokens,
        "up_to_healthy_seconds": round(up_seconds, 2),
        "rss_idle_mib": round(idle_rss / 2**20),
        "rss_after_requests_mib": round(loaded_rss / 2**20),
        **load,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with guarded():
        rows = [bench_one(p, args.concurrency, args.requests, args.max_tokens) for p in args.parallel]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'n_parallel':>10} {'up->healthy s':>13} {'RSS idle MiB':>12} {'RSS after MiB':>13} {'tok/s':>7} {'fail':>4}"
    )
    for r in rows:
        print(
            f"{r['parallel']:>10} {r['up_to_healthy_seconds']:>13} {r['rss_idle_mib']:>12} "
            f"{r['rss_after_requests_mib']:>13} {r['tokens_per_second']:>7} {r['failures']:>4}"
        )
    print(
        f"({args.requests} requests x {args.max_tokens} max tokens, {args.concurrency} concurrent clients)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
