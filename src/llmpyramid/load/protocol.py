"""The OpenAI-compatible wire protocol as the load users speak it (no locust import: unit-testable).

Request bodies for chat / text completions, streaming or not; token counts and llama.cpp timings
from `usage` / `timings` (never re-tokenised); and StreamState, which turns the SSE lines of one
streamed completion into TTFT, inter-token gaps and a verdict (broken stream, empty answer).
SSE fields are decoded by httpx-sse's SSEDecoder, the decoder httpx-sse itself runs.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from httpx_sse._decoders import SSEDecoder  # the incremental SSE field decoder httpx-sse itself uses

from llmpyramid.load.metrics import Sample

# A small, fixed prompt set of different lengths: short chat, medium instruction, long context.
PROMPTS: tuple[str, ...] = (
    "Say hello in one short sentence.",
    "List three practical uses of a small language model running on a laptop CPU.",
    "Explain, step by step, how a hash map handles collisions, and compare open addressing with "
    "separate chaining in terms of memory use, cache behaviour and worst-case lookups.",
    "You are reviewing an incident report. The inference service returned HTTP 503 for four minutes "
    "after a deploy because the model was still loading while the load balancer already sent traffic. "
    "The health check only tested that the port was open. Summarise the root cause, the user impact, "
    "and propose two concrete changes to the health checking and the rollout procedure.",
)


def without_userinfo(url: str) -> str:
    """The URL without `user:password@`: what locust is given (it shows its host in reports)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def auth_headers(api_key: str | None, url: str | None) -> dict[str, str]:
    """Authorization for every request: the API key as a Bearer token, else the URL's user:password
    as HTTP Basic (what a browser or httpx would send for such a URL)."""
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    parts = urlsplit(url or "")
    if parts.username is None:
        return {}
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


class RequestFailed(Exception):
    """A request that must count as a failure in locust's stats and the LLM samples."""


def build_request(kind: str, prompt: str, max_tokens: int, model: str | None, ignore_eos: bool) -> tuple[str, dict]:
    stream = kind.endswith("_stream")
    body: dict[str, Any] = {"max_tokens": max_tokens, "stream": stream}
    if kind.startswith("chat"):
        path = "/v1/chat/completions"
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        path = "/v1/completions"
        body["prompt"] = prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
    if model:
        body["model"] = model
    if ignore_eos:
        body["ignore_eos"] = True
    return path, body


def text_of(choice: dict[str, Any]) -> str:
    delta = choice.get("delta")
    if delta is not None:
        return delta.get("content") or ""
    message = choice.get("message")
    if message is not None:
        return message.get("content") or ""
    return choice.get("text") or ""


def apply_usage(sample: Sample, payload: dict[str, Any]) -> None:
    """Take token counts and server timings from a response or final chunk (never re-tokenise)."""
    usage = payload.get("usage") or {}
    timings = payload.get("timings") or {}
    if usage.get("completion_tokens") is not None:
        sample.output_tokens, sample.tokens_source = int(usage["completion_tokens"]), "usage"
    elif timings.get("predicted_n") is not None:
        sample.output_tokens, sample.tokens_source = int(timings["predicted_n"]), "timings"
    if usage.get("prompt_tokens") is not None:
        sample.prompt_tokens = int(usage["prompt_tokens"])
    if timings:
        sample.server_prompt_ms = timings.get("prompt_ms")
        sample.server_predicted_ms = timings.get("predicted_ms")


class StreamState:
    """Consumes SSE body chunks of one streamed completion and records TTFT / ITL on a Sample."""

    def __init__(self, sample: Sample, t0: float) -> None:
        self.sample, self.t0 = sample, t0
        self.events = SSEDecoder()
        self.last_token_at: float | None = None
        self.chunks_with_text = 0
        self.done = False
        self.finished = False  # a finish_reason was seen

    def feed_line(self, raw: bytes, now: float) -> None:
        event = self.events.decode(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        if event is not None:
            self._event(event.data, now)

    def close(self, now: float) -> None:
        event = self.events.decode("")  # a stream may end without the final blank line
        if event is not None:
            self._event(event.data, now)

    def _event(self, data: str, now: float) -> None:
        if data == "[DONE]":
            self.done = True
            return
        try:
            payload = json.loads(data)
        except ValueError:
            raise RequestFailed(f"malformed stream event: {data[:80]!r}") from None
        if "error" in payload:
            raise RequestFailed(f"server error in stream: {str(payload['error'])[:100]}")
        for choice in payload.get("choices") or ():
            if text_of(choice):
                if self.last_token_at is None:
                    self.sample.ttft_ms = (now - self.t0) * 1000
                else:
                    self.sample.itl_ms.append(round((now - self.last_token_at) * 1000, 3))
                self.last_token_at = now
                self.chunks_with_text += 1
            if choice.get("finish_reason"):
                self.finished = True
        if payload.get("usage") or payload.get("timings"):
            apply_usage(self.sample, payload)
