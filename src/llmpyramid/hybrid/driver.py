"""A small, bounded, closed-loop load generator that records which backend served each request.

Why not locust here: every sample must carry the router's attribution header, faults must be
injected at measured points of the run (when base has streams in flight, not after N seconds), and
eight short runs must fit in a few minutes on a busy 2-core box. The load layer's own wire code
does the protocol work: request bodies (`build_request`), SSE decoding, TTFT/ITL and the verdict on a
stream (`StreamState`), and the per-request record and its percentiles (`Sample`, `summarize`).

Each user sends one streamed chat completion at a time through the router until told to stop; the
number of users is the offered concurrency. Every request ends (success, failure or the client
timeout), so a run cannot hang on a dead backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from llmpyramid.load.metrics import Sample
from llmpyramid.load.protocol import PROMPTS, RequestFailed, StreamState, build_request

KIND = "chat_stream"


@dataclass
class Outcome:
    """One request: the load layer's Sample plus who served it and how it failed."""

    sample: Sample
    backend: str | None = None  # "base" / "burst" (from the attribution header), else the raw value
    status: int | None = None
    streamed: bool = False  # at least one generated token arrived
    timed_out: bool = False
    # how the client saw it end: completed | http_error | error_event (an SSE error) | transport_error (the
    # connection broke) | clean_truncated (text, then a clean end without a finish_reason) | timeout
    ending: str = "completed"

    @property
    def ok(self) -> bool:
        return self.sample.ok

    @property
    def start(self) -> float:
        return self.sample.start

    @property
    def end(self) -> float:
        return self.sample.end

    @property
    def broken(self) -> bool:
        """A stream that had started delivering tokens and then failed (cut mid-flight)."""
        return self.streamed and not self.ok

    @property
    def truncated_clean(self) -> bool:
        """The failure the contract forbids: a cut answer the client cannot tell from a finished one."""
        return self.ending == "clean_truncated"


@dataclass
class InFlight:
    start: float
    backend: str | None = None
    streaming: bool = False


@dataclass
class LoadDriver:
    url: str  # the router
    api_key: str | None
    model: str
    max_tokens: int
    timeout: float
    header: str  # the response header that names the backend
    names: dict[str, str]  # header value -> "base" / "burst"
    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: dict[int, InFlight] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def backend_of(self, value: str | None) -> str | None:
        return self.names.get(value, value) if value else None

    def in_flight_on(self, backend: str, *, streaming: bool = True) -> int:
        return sum(1 for f in self.in_flight.values() if f.backend == backend and (f.streaming or not streaming))

    async def run(self, users: int, stop: asyncio.Event, on_done: Callable[[Outcome], None] | None = None) -> None:
        """`users` closed-loop users until `stop` is set; each finishes the request it has in flight."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=users, max_keepalive_connections=0)
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout, limits=limits) as client:

            async def user(index: int) -> None:
                prompts = itertools.cycle(PROMPTS[index % len(PROMPTS) :] + PROMPTS[: index % len(PROMPTS)])
                while not stop.is_set():
                    outcome = await self.one(client, next(prompts))
                    if on_done is not None:
                        on_done(outcome)
                    if not outcome.ok and outcome.sample.latency_ms < 50:
                        await asyncio.sleep(0.1)  # fast failures: back off instead of spinning a core

            await asyncio.gather(*(user(i) for i in range(users)))

    async def one(self, client: httpx.AsyncClient, prompt: str) -> Outcome:
        path, body = build_request(KIND, prompt, self.max_tokens, self.model, ignore_eos=True)
        sample = Sample(start=time.time(), kind=KIND, latency_ms=0.0, ok=False)
        outcome = Outcome(sample)
        key = next(self._ids)
        flight = self.in_flight[key] = InFlight(sample.start)
        t0 = time.perf_counter()
        try:
            async with client.stream("POST", path, json=body) as response:
                outcome.status = response.status_code
                outcome.backend = flight.backend = self.backend_of(response.headers.get(self.header))
                if response.status_code != 200:
                    outcome.ending = "http_error"
                    detail = " ".join((await response.aread()).decode(errors="replace").split())[:160]
                    raise RequestFailed(f"HTTP {response.status_code}: {detail or 'no body'}")
                state = StreamState(sample, t0)
                try:
                    async for line in response.aiter_lines():
                        state.feed_line(line.encode(), time.perf_counter())
                        if state.chunks_with_text and not flight.streaming:
                            flight.streaming = outcome.streamed = True
                    state.close(time.perf_counter())
                except RequestFailed:
                    outcome.ending = "error_event"  # an SSE error event (or an event no client could read)
                    raise
                if not state.finished:
                    # A stream ends with a chunk carrying finish_reason (then [DONE]). Without it the answer was
                    # cut, and a clean [DONE] or end of body hides that from the client: the contract's breach.
                    outcome.ending = "clean_truncated"
                    end = "[DONE]" if state.done else "end of body"
                    raise RequestFailed(f"truncated answer ended cleanly ({end} after {state.chunks_with_text} "
                                        "text chunks, no finish_reason)")  # fmt: skip
                if state.chunks_with_text == 0:
                    outcome.ending = "error_event"
                    raise RequestFailed("empty answer: no generated text in the stream")
                sample.ok = True
        except RequestFailed as exc:
            sample.error = str(exc)
        except httpx.TimeoutException as exc:
            outcome.timed_out = True
            outcome.ending = "timeout"
            sample.error = f"client timeout after {self.timeout:g}s: {type(exc).__name__}"
        except httpx.HTTPError as exc:
            outcome.ending = "transport_error"
            kind = "broken stream" if outcome.streamed else "connection error"
            sample.error = f"{kind}: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
        finally:
            sample.latency_ms = (time.perf_counter() - t0) * 1000
            with contextlib.suppress(KeyError):
                del self.in_flight[key]
            self.outcomes.append(outcome)
        return outcome
