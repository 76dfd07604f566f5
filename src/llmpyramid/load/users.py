"""Locust users for OpenAI-compatible LLM servers: chat and text completions, streaming or not.

`LLMUser` is closed-loop (each user sends its next request when the previous one ends: the
seed's constant users, and the scaling sweep). `ArrivalRateUser` is open-loop: it starts requests
at a fixed rate whatever the server does, up to a cap on requests in flight.

Every request is reported twice: to locust's own statistics (name = request kind, response time =
end-to-end latency, so its HTML report and --json are meaningful) and as an LLM `Sample` with TTFT,
ITL and the server's token counts to the process-wide `COLLECTOR`.

Streaming: locust's FastHttpUser with stream=True leaves the body unread; lines are read with
geventhttpclient's own readline (returns each line the moment it arrives, so TTFT and ITL are
per token) and decoded with httpx-sse's SSEDecoder (the code httpx-sse runs on httpx streams), so
there is no hand-written SSE parser here.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from typing import Any, ClassVar

import gevent
from gevent.pool import Pool
from geventhttpclient.response import HTTPConnectionClosed
from locust import FastHttpUser, constant, task

from llmpyramid.config import env_value
from llmpyramid.load.config import LoadConfig
from llmpyramid.load.metrics import Arrivals, Collector, Sample
from llmpyramid.load.protocol import PROMPTS, RequestFailed, StreamState, apply_usage, build_request, text_of

COLLECTOR = Collector()


ARRIVALS = Arrivals()


class _StaleConnection(Exception):
    """A pooled keep-alive connection was closed by the server before any response byte."""


class LLMClientMixin:
    """Shared request logic for both user classes (needs `self.client`, a FastHttpSession)."""

    config: ClassVar[LoadConfig]
    model: ClassVar[str | None] = env_value("MODEL")  # else: the first one /v1/models lists
    _model_resolved: ClassVar[bool] = False
    client: Any
    environment: Any

    def _resolve_model(self) -> None:
        """The model name to send: MODEL, else the first one the server lists (needed by vLLM/OpenAI)."""
        cls = type(self)
        if cls._model_resolved:
            return
        cls._model_resolved = True
        if cls.model:
            return
        with contextlib.suppress(Exception):
            resp = self.client.get("/v1/models", name="/v1/models (setup)")
            data = resp.json().get("data") or []
            if data:
                LLMClientMixin.model = data[0].get("id")

    def send(self, kind: str, prompt: str, max_tokens: int) -> Sample:
        path, body = build_request(kind, prompt, max_tokens, self.model, self.config.ignore_eos)
        stream = body["stream"]
        runner = getattr(self.environment, "runner", None)
        sample = Sample(start=time.time(), kind=kind, latency_ms=0.0, ok=False,
                        users=getattr(runner, "user_count", None))  # fmt: skip
        for attempt in (1, 2):
            try:
                self._send_once(sample, kind, path, body, stream, retry_stale=attempt == 1)
                break
            except _StaleConnection:
                sample.start = time.time()  # the server closed a pooled keep-alive connection: retry once
        COLLECTOR.add(sample)
        return sample

    def _send_once(self, sample: Sample, kind: str, path: str, body: dict, stream: bool, retry_stale: bool) -> None:
        t0 = time.perf_counter()
        nbytes = 0
        with self.client.request("POST", path, json=body, stream=stream, catch_response=True, name=kind) as resp:
            if retry_stale and not resp.status_code and isinstance(getattr(resp, "error", None), HTTPConnectionClosed):
                # Raised inside the block without a verdict, locust does not report this attempt at all.
                raise _StaleConnection
            try:
                err = getattr(resp, "error", None)
                if not resp.status_code:
                    raise RequestFailed(f"connection error: {type(err).__name__}: {err}")
                if resp.status_code != 200:
                    detail = ""
                    with contextlib.suppress(Exception):
                        detail = " ".join((resp.text or "").split())[:100]
                    raise RequestFailed(f"HTTP {resp.status_code}: {detail or err or 'no body'}")
                if stream:
                    state = StreamState(sample, t0)
                    try:
                        # geventhttpclient's readline returns each line as soon as it has arrived
                        # (FastResponse.iter_content would block until a whole chunk_size is buffered,
                        # hiding TTFT/ITL); the SSE fields are then decoded by httpx-sse.
                        raw_response = resp._response
                        while line := raw_response.readline(b"\n"):
                            nbytes += len(line)
                            state.feed_line(line, time.perf_counter())
                    except RequestFailed:
                        raise
                    except Exception as exc:  # socket reset, parse error: the stream broke
                        raise RequestFailed(f"broken stream: {type(exc).__name__}: {exc}") from None
                    state.close(time.perf_counter())
                    if not (state.done or state.finished):
                        raise RequestFailed("broken stream: ended before a finish_reason or [DONE]")
                    if state.chunks_with_text == 0:
                        raise RequestFailed("empty answer: no generated text in the stream")
                    if sample.output_tokens is None:  # server sent no usage/timings: count text chunks
                        sample.output_tokens, sample.tokens_source = state.chunks_with_text, "chunks"
                else:
                    content = resp.content or b""
                    nbytes = len(content)
                    try:
                        payload = json.loads(content)
                    except ValueError:
                        raise RequestFailed(f"malformed JSON response: {content[:80]!r}") from None
                    choices = payload.get("choices") or []
                    if not choices or not text_of(choices[0]):
                        raise RequestFailed("empty answer: no generated text")
                    apply_usage(sample, payload)
                sample.ok = True
                resp.success()
            except RequestFailed as exc:
                sample.error = str(exc)
                resp.failure(sample.error)
            finally:
                sample.latency_ms = (time.perf_counter() - t0) * 1000
                # locust measured only up to the headers for streams: report end-to-end instead
                resp.request_meta["response_time"] = sample.latency_ms
                resp.request_meta["response_length"] = nbytes


class LLMUser(LLMClientMixin, FastHttpUser):
    """Closed-loop user: one request at a time, no think time (what LLM benchmarks call 'concurrency')."""

    abstract = True  # the locustfile creates the concrete class from a LoadConfig
    wait_time = constant(0)
    _index: ClassVar[int] = 0

    def on_start(self) -> None:
        LLMUser._index += 1
        self.rng = random.Random(self.config.seed * 100_003 + LLMUser._index)
        self.kinds = list(self.config.mix)
        self.weights = [self.config.mix[k] for k in self.kinds]
        self._resolve_model()

    @task
    def completion(self) -> None:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        sample = self.send(kind, self.rng.choice(PROMPTS), self.rng.choice(self.config.max_tokens))
        if not sample.ok and sample.latency_ms < 50:
            gevent.sleep(0.1)  # fast failures (server gone): back off instead of spinning a core


class ArrivalRateUser(LLMClientMixin, FastHttpUser):
    """Open-loop: starts `rate / users` requests per second each, never more than max_inflight at once.

    Requests that would exceed the in-flight cap are not sent; they are counted as failures
    ("dropped: ...") so saturation shows up in error_rate instead of silently lowering the rate.
    """

    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.rng = random.Random(self.config.seed * 100_003 + id(self) % 1000)
        self.kinds = list(self.config.mix)
        self.weights = [self.config.mix[k] for k in self.kinds]
        self._resolve_model()
        # the rate is shared by all arrival users (config.users of them, across all workers)
        self.interval = self.config.users / self.config.rate
        self.pool = Pool(self.config.max_inflight)

    @task
    def arrivals(self) -> None:
        next_at = time.perf_counter()
        while True:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            ARRIVALS.scheduled += 1
            ARRIVALS.lags_ms.append(round((time.perf_counter() - next_at) * 1000, 2))
            if self.pool.full():
                ARRIVALS.dropped += 1
                s = Sample(start=time.time(), kind=kind, latency_ms=0.0, ok=False,
                           error=f"dropped: {self.config.max_inflight} requests already in flight")  # fmt: skip
                COLLECTOR.add(s)
                self.environment.events.request.fire(
                    request_type="POST", name=kind, response_time=0, response_length=0,
                    exception=RequestFailed(s.error), context={},
                )  # fmt: skip
            else:
                ARRIVALS.issued += 1
                self.pool.spawn(self.send, kind, self.rng.choice(PROMPTS), self.rng.choice(self.config.max_tokens))
            next_at += self.interval
            gevent.sleep(max(0.0, next_at - time.perf_counter()))

    def on_stop(self) -> None:
        ARRIVALS.in_flight_at_end += len(self.pool)  # open loop: abandoned, neither completed nor failed
        self.pool.kill(block=False)
