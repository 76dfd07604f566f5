"""What every layer's checks share: the verdict type, response and body checks, request texts.

- `check_*` judge something already received (a response, a body, a stream) and raise
  `CheckFailed` — one actionable line plus measured `metrics` — when it is wrong;
- what differs between completions and chat comes from one table, `llmpyramid.client.KINDS`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from llmpyramid.client import KINDS, Kind, StreamResult, dig, media_type
from llmpyramid.results import one_line

Metrics = dict[str, Any]
FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls", "function_call"}
PROMPT = "The capital of France is"  # the short request the probes send, as a prompt or one user message
CHAT: Any = KINDS["chat"].payload(PROMPT)
DETERMINISTIC = {"temperature": 0, "seed": 42}


class CheckFailed(AssertionError):
    """A check's verdict: one line a person can act on, with what was measured."""

    def __init__(self, message: str, metrics: Mapping[str, Any] | None = None):
        super().__init__(one_line(message))
        self.metrics: Metrics = dict(metrics or {})

    def __str__(self) -> str:
        return str(self.args[0])


class Inconclusive(CheckFailed):
    """No verdict could be reached for a reason outside the service under test (the client machine was
    starved): reported as such — a suite skips the test with this line — never as passed or failed."""


def require(condition: object, message: str, metrics: Mapping[str, Any] | None = None) -> None:
    if not condition:
        raise CheckFailed(message, metrics)


def short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return one_line(text, limit)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- responses -----------------------------------------------------------------------------------


def check_status(response: httpx.Response, expected: int, what: str) -> None:
    require(
        response.status_code == expected,
        f"{what}: expected HTTP {expected}, got {response.status_code}: {short(response.text)}",
        {"status_code": response.status_code},
    )


def check_health(response: httpx.Response, what: str = "GET /health") -> None:
    check_status(response, 200, what)


def check_content_type(response: httpx.Response, expected: str, what: str) -> None:
    got = media_type(response)
    require(got == expected, f"{what}: expected Content-Type {expected}, got {got or 'none'!r}")


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The body as a JSON object, served as application/json."""
    check_content_type(response, "application/json", what)
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"{what}: body is not JSON: {short(response.text)}") from None
    require(isinstance(body, dict), f"{what}: body is not a JSON object: {short(body)}")
    return dict(body)


def check_error_response(response: httpx.Response, what: str) -> dict[str, Any]:
    """Invalid input must get a 4xx with an OpenAI-style error object; never 200, never 5xx."""
    code = response.status_code
    metrics = {"status_code": code}
    require(not 200 <= code < 300, f"{what}: the server accepted invalid input (HTTP {code}); expected a 4xx", metrics)
    require(
        code < 500,
        f"{what}: server error HTTP {code} for invalid input; expected a 4xx: {short(response.text)}",
        metrics,
    )
    require(400 <= code < 500, f"{what}: expected a 4xx for invalid input, got HTTP {code}", metrics)
    got = media_type(response)
    require(
        got == "application/json",
        f"{what}: error served as {got or 'no content type'!r}, expected application/json: {short(response.text)}",
        metrics,
    )
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"{what}: error body is not JSON: {short(response.text)}", metrics) from None
    error = body.get("error") if isinstance(body, dict) else None
    require(isinstance(error, dict), f"{what}: error body lacks an 'error' object: {short(body)}", metrics)
    assert isinstance(error, dict)
    require(
        isinstance(error.get("message"), str) and error["message"].strip(),
        f"{what}: error.message must be a non-empty string: {short(error)}",
        metrics,
    )
    require(
        isinstance(error.get("type"), str) and error["type"],
        f"{what}: error.type must be a non-empty string: {short(error)}",
        metrics,
    )
    return dict(error)


# --- bodies --------------------------------------------------------------------------------------


def check_usage(body: Mapping[str, Any], what: str) -> dict[str, int]:
    usage = body.get("usage")
    require(isinstance(usage, dict), f"{what}: 'usage' missing or not an object: {short(usage)}")
    assert isinstance(usage, dict)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value: Any = usage.get(key)
        require(is_int(value) and value >= 0, f"{what}: usage.{key} must be a non-negative integer, got {value!r}")
    require(
        usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"],
        f"{what}: usage.total_tokens {usage['total_tokens']} != prompt_tokens {usage['prompt_tokens']} "
        f"+ completion_tokens {usage['completion_tokens']}",
    )
    return {k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def check_envelope(body: Mapping[str, Any], obj: str, what: str, *, usage: bool = True) -> None:
    """`object`, `id`, `created`, `model`, `choices` (and `usage`) present and typed."""
    require(body.get("object") == obj, f"{what}: 'object' must be {obj!r}, got {body.get('object')!r}")
    require(
        isinstance(body.get("id"), str) and body["id"],
        f"{what}: 'id' must be a non-empty string, got {body.get('id')!r}",
    )
    require(is_int(body.get("created")), f"{what}: 'created' must be an integer timestamp, got {body.get('created')!r}")
    require(
        isinstance(body.get("model"), str) and body["model"],
        f"{what}: 'model' must be a non-empty string, got {body.get('model')!r}",
    )
    choices = body.get("choices")
    require(isinstance(choices, list), f"{what}: 'choices' must be a list, got {short(choices)}")
    if usage:
        require(isinstance(choices, list) and choices, f"{what}: 'choices' is empty")
        check_usage(body, what)


def check_choice(choice: Any, kind: Kind, what: str) -> None:
    spec = KINDS[kind]
    require(isinstance(choice, dict), f"{what}: choice is not an object: {short(choice)}")
    require(is_int(choice.get("index")), f"{what}: choices[].index must be an integer, got {choice.get('index')!r}")
    reason = choice.get("finish_reason")
    require(reason in FINISH_REASONS, f"{what}: finish_reason must be one of {sorted(FINISH_REASONS)}, got {reason!r}")
    text = dig(choice, spec.text_at)
    require(isinstance(text, str), f"{what}: choices[].{'.'.join(spec.text_at)} must be a string, got {text!r}")
    if spec.role_at:
        role = dig(choice, spec.role_at)
        require(role == "assistant", f"{what}: choices[].{'.'.join(spec.role_at)} must be 'assistant', got {role!r}")


def check_completion_body(body: Mapping[str, Any], kind: Kind = "completion") -> None:
    spec = KINDS[kind]
    check_envelope(body, spec.obj, spec.what)
    for choice in body["choices"]:
        check_choice(choice, kind, spec.what)


def check_models(body: Mapping[str, Any], expected_model: str | None) -> list[str]:
    what = "GET /v1/models"
    require(body.get("object") == "list", f"{what}: 'object' must be 'list', got {body.get('object')!r}")
    data = body.get("data")
    require(isinstance(data, list) and data, f"{what}: 'data' must be a non-empty list, got {short(data)}")
    assert isinstance(data, list)
    ids = [m.get("id") for m in data if isinstance(m, dict)]
    require(
        all(isinstance(i, str) and i for i in ids) and len(ids) == len(data),
        f"{what}: every model needs a string 'id': {short(data)}",
    )
    if expected_model:
        require(expected_model in ids, f"{what}: served model {expected_model!r} is not listed (listed: {ids})")
    return [str(i) for i in ids]


def check_stream(result: StreamResult, what: str, *, min_text_chunks: int = 2) -> Metrics:
    """Incremental chunks, a final chunk with finish_reason, `data: [DONE]` last, SSE content type."""
    metrics: Metrics = {**result.timing(), "status_code": result.status_code}
    require(
        result.status_code == 200,
        f"{what}: expected HTTP 200, got {result.status_code}: {short(result.body)}",
        metrics,
    )
    require(
        result.content_type == "text/event-stream",
        f"{what}: expected Content-Type text/event-stream, got {result.content_type or 'none'!r}",
        metrics,
    )
    require(result.data, f"{what}: the stream carried no 'data:' events", metrics)
    require(
        result.done,
        f"{what}: the stream did not end with 'data: [DONE]' (last event: {short(result.data[-1])})"
        if "[DONE]" not in [d.strip() for d in result.data]
        else f"{what}: events arrived after 'data: [DONE]'",
        metrics,
    )
    bad = [d for d, c in zip(result.data[:-1], result.chunks[:-1], strict=True) if not isinstance(c, dict)]
    require(not bad, f"{what}: {len(bad)} event(s) are not JSON objects, e.g. {short(bad[0]) if bad else ''}", metrics)
    pieces = result.pieces
    require(
        len(pieces) >= min_text_chunks,
        f"{what}: expected incremental output (>= {min_text_chunks} chunks with text), got {len(pieces)}",
        metrics,
    )
    finals = [
        i for i, c in enumerate(result.json_chunks)
        for ch in (c.get("choices") or []) if isinstance(ch, dict) and ch.get("finish_reason")
    ]  # fmt: skip
    require(finals, f"{what}: no chunk carries a finish_reason", metrics)
    reason = result.finish_reason
    require(
        reason in FINISH_REASONS,
        f"{what}: finish_reason must be one of {sorted(FINISH_REASONS)}, got {reason!r}",
        metrics,
    )
    later_text = [c for c in result.json_chunks[finals[-1] + 1 :] if c.get("choices")]
    require(not later_text, f"{what}: {len(later_text)} chunk(s) with choices after the finish_reason chunk", metrics)
    return metrics
