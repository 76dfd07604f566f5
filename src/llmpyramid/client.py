"""OpenAI-compatible HTTP helpers: plain requests, SSE streaming, and client-side timing.

    with Client(target) as c:
        r = c.completion("Hello", max_tokens=8)            # httpx.Response
        s = c.stream("chat", KINDS["chat"].payload("Hi"), max_tokens=8)
        s.text, s.ttft_ms, s.itl_ms, s.done, s.chunks

`KINDS` is the one table of what differs between a completion and a chat request: path, input
field, where the answer's text sits, the `object` names and the OpenAI schema names.

A `StreamResult` records everything a check needs (status, content type, every `data:` payload,
whether `[DONE]` came last) without judging it; judging is llmpyramid.checks' job. Timing:
TTFT is request start to the first chunk carrying text; ITL are the gaps between text chunks.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from httpx_sse import EventSource, SSEError

from llmpyramid.target import Target

Kind = Literal["completion", "chat"]


@dataclass(frozen=True)
class RequestKind:
    """What differs between the two OpenAI generation requests; everything else is shared."""

    name: Kind
    path: str
    input_field: str  # "prompt" (a string) or "messages" (a list of role/content objects)
    text_at: tuple[str, ...]  # where a choice of a plain answer carries its text
    delta_text_at: tuple[str, ...]  # where a choice of a streamed chunk carries its text
    role_at: tuple[str, ...] | None  # where a choice says who speaks (chat only)
    obj: str  # `object` of a plain answer
    chunk_obj: str  # `object` of a streamed chunk
    schema: str  # pinned OpenAI component schema (and SDK type) of a plain answer
    chunk_schema: str  # ... of a streamed chunk

    @property
    def what(self) -> str:
        return f"POST {self.path}"

    def payload(self, text: str) -> Any:
        """The request input for `text`: the prompt itself, or one user message."""
        return text if self.input_field == "prompt" else [{"role": "user", "content": text}]


KINDS: dict[Kind, RequestKind] = {
    "completion": RequestKind(
        "completion", "/v1/completions", "prompt", ("text",), ("text",), None,
        "text_completion", "text_completion", "completion", "completion_chunk",
    ),
    "chat": RequestKind(
        "chat", "/v1/chat/completions", "messages", ("message", "content"), ("delta", "content"), ("message", "role"),
        "chat.completion", "chat.completion.chunk", "chat_completion", "chat_completion_chunk",
    ),
}  # fmt: skip


def dig(value: Any, path: tuple[str, ...]) -> Any:
    """value[path[0]][path[1]]..., or None where an object or key is missing."""
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) — numpy's default; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").partition(";")[0].strip().lower()


@dataclass
class StreamResult:
    kind: Kind
    status_code: int
    content_type: str  # media type only, e.g. text/event-stream
    headers: dict[str, str]
    data: list[str] = field(default_factory=list)  # every `data:` payload, in order, incl. [DONE]
    chunks: list[Any] = field(default_factory=list)  # parsed JSON per payload (None: not JSON)
    body: str = ""  # the raw body when the answer was not a stream (errors)
    started: float = 0.0
    text_times: list[float] = field(default_factory=list)  # monotonic time of each text chunk
    finished: float = 0.0

    @property
    def done(self) -> bool:
        """`data: [DONE]` arrived and nothing came after it."""
        return bool(self.data) and self.data[-1].strip() == "[DONE]"

    @property
    def json_chunks(self) -> list[dict[str, Any]]:
        return [c for c in self.chunks if isinstance(c, dict)]

    @property
    def pieces(self) -> list[str]:
        return [p for p in (chunk_text(c, self.kind) for c in self.json_chunks) if p]

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def finish_reason(self) -> str | None:
        reasons = [
            ch.get("finish_reason")
            for c in self.json_chunks
            for ch in (c.get("choices") or [])
            if isinstance(ch, dict) and ch.get("finish_reason")
        ]
        return reasons[-1] if reasons else None

    @property
    def ttft_ms(self) -> float | None:
        return (self.text_times[0] - self.started) * 1000 if self.text_times else None

    @property
    def itl_ms(self) -> list[float]:
        t = self.text_times
        return [(b - a) * 1000 for a, b in itertools.pairwise(t)]

    @property
    def total_ms(self) -> float:
        return (self.finished - self.started) * 1000

    def timing(self) -> dict[str, float | None]:
        itl = self.itl_ms
        return {
            "ttft_ms": self.ttft_ms,
            "itl_p50_ms": percentile(itl, 50),
            "itl_p95_ms": percentile(itl, 95),
            "total_ms": self.total_ms,
            "chunks": len(self.json_chunks),
        }


def _first_choice(body: Any) -> Any:
    choices = body.get("choices") if isinstance(body, dict) else None
    return choices[0] if isinstance(choices, list) and choices else None


def chunk_text(chunk: dict[str, Any], kind: Kind) -> str:
    """The text a streamed chunk carries (completions: choices[0].text; chat: delta.content)."""
    text = dig(_first_choice(chunk), KINDS[kind].delta_text_at)
    return text if isinstance(text, str) else ""


def message_text(body: dict[str, Any], kind: Kind) -> str:
    """The text of a non-streamed answer."""
    text = dig(_first_choice(body), KINDS[kind].text_at)
    return text if isinstance(text, str) else ""


def _parse_sse_body(text: str) -> list[str]:
    """`data:` payloads from a body that was not served as text/event-stream."""
    payloads, current = [], []
    for line in text.splitlines():
        if line.startswith("data:"):
            current.append(line[5:].lstrip(" "))
        elif not line.strip() and current:
            payloads.append("\n".join(current))
            current = []
    if current:
        payloads.append("\n".join(current))
    return payloads


class Client:
    """A thin httpx wrapper bound to one target (base URL, API key, model)."""

    def __init__(self, target: Target, *, timeout: float = 60.0, api_key: str | bool | None = True):
        self.target = target
        headers = target.headers() if api_key is True else {}
        if isinstance(api_key, str):
            headers = {"Authorization": f"Bearer {api_key}"}
        # Drop idle connections before servers do (llama.cpp: Keep-Alive timeout=5): reusing one
        # the server is closing gives "Server disconnected without sending a response".
        limits = httpx.Limits(keepalive_expiry=1.0)
        self.http = httpx.Client(base_url=target.base_url, headers=headers, timeout=timeout, limits=limits)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- plain requests ---------------------------------------------------------------------

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, **kwargs)

    def body(self, kind: Kind, payload: Any, **params: Any) -> dict[str, Any]:
        """Request body for a completion (payload = prompt) or chat (payload = messages)."""
        body: dict[str, Any] = {KINDS[kind].input_field: payload}
        if self.target.model:
            body["model"] = self.target.model
        body.update(params)
        return body

    def create(self, kind: Kind, payload: Any, **params: Any) -> httpx.Response:
        return self.http.post(KINDS[kind].path, json=self.body(kind, payload, **params))

    def completion(self, prompt: Any, **params: Any) -> httpx.Response:
        return self.create("completion", prompt, **params)

    def chat(self, messages: Any, **params: Any) -> httpx.Response:
        return self.create("chat", messages, **params)

    def timed(self, kind: Kind, payload: Any, **params: Any) -> tuple[httpx.Response, float]:
        """A request and its wall time in milliseconds."""
        started = time.perf_counter()
        response = self.create(kind, payload, **params)
        return response, (time.perf_counter() - started) * 1000

    # --- streaming --------------------------------------------------------------------------

    def stream(self, kind: Kind, payload: Any, **params: Any) -> StreamResult:
        """POST with stream=true and record every SSE `data:` payload with its arrival time."""
        body = self.body(kind, payload, stream=True, **params)
        started = time.monotonic()
        # Connection: close — llama.cpp's server closes the connection after a stream while still
        # advertising keep-alive; reusing it races ("Server disconnected without sending a response").
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store", "Connection": "close"}
        with self.http.stream("POST", KINDS[kind].path, json=body, headers=headers) as response:
            result = StreamResult(
                kind=kind,
                status_code=response.status_code,
                content_type=media_type(response),
                headers=dict(response.headers),
                started=started,
            )
            if response.status_code != 200:
                result.body = response.read().decode(errors="replace")
            else:
                try:
                    for sse in EventSource(response).iter_sse():
                        self._record(result, sse.data)
                except SSEError:  # wrong content type: keep what the body says, checks judge it
                    result.body = response.read().decode(errors="replace")
                    for payload_ in _parse_sse_body(result.body):
                        self._record(result, payload_)
        result.finished = time.monotonic()
        return result

    @staticmethod
    def _record(result: StreamResult, data: str) -> None:
        result.data.append(data)
        if data.strip() == "[DONE]":
            result.chunks.append(None)
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        result.chunks.append(chunk)
        if isinstance(chunk, dict) and chunk_text(chunk, result.kind):
            result.text_times.append(time.monotonic())
