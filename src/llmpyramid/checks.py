"""The checks behind the smoke, integration and contract suites, as small library functions.

Two layers:
- `check_*` judge something already received (a response, a body, a stream) and raise
  `CheckFailed` — one actionable line plus measured `metrics` — when it is wrong;
- `probe_*` send the requests a suite test needs and apply the checks; they return metrics.

The suites in tests/ are one-line wrappers around the probes, and tests/unit runs the very same
probes against a fake server that serves each broken form, proving every check can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import httpx
import jsonschema

from llmpyramid.client import Client, Kind, StreamResult, media_type, message_text, percentile
from llmpyramid.results import one_line

Metrics = dict[str, Any]
FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls", "function_call"}
CHAT: Any = [{"role": "user", "content": "Say hello in one short sentence."}]
PROMPT = "The capital of France is"
DETERMINISTIC = {"temperature": 0, "seed": 42}


class CheckFailed(AssertionError):
    """A check's verdict: one line a person can act on, with what was measured."""

    def __init__(self, message: str, metrics: Mapping[str, Any] | None = None):
        super().__init__(one_line(message))
        self.metrics: Metrics = dict(metrics or {})

    def __str__(self) -> str:
        return str(self.args[0])


def require(condition: object, message: str, metrics: Mapping[str, Any] | None = None) -> None:
    if not condition:
        raise CheckFailed(message, metrics)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return one_line(text, limit)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- generic response checks --------------------------------------------------------------------


def check_status(response: httpx.Response, expected: int, what: str) -> None:
    require(
        response.status_code == expected,
        f"{what}: expected HTTP {expected}, got {response.status_code}: {_short(response.text)}",
        {"status_code": response.status_code},
    )


def check_content_type(response: httpx.Response, expected: str, what: str) -> None:
    got = media_type(response)
    require(got == expected, f"{what}: expected Content-Type {expected}, got {got or 'none'!r}")


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The body as a JSON object, served as application/json."""
    check_content_type(response, "application/json", what)
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"{what}: body is not JSON: {_short(response.text)}") from None
    require(isinstance(body, dict), f"{what}: body is not a JSON object: {_short(body)}")
    return dict(body)


# --- body checks ---------------------------------------------------------------------------------


def check_usage(body: Mapping[str, Any], what: str) -> dict[str, int]:
    usage = body.get("usage")
    require(isinstance(usage, dict), f"{what}: 'usage' missing or not an object: {_short(usage)}")
    assert isinstance(usage, dict)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value: Any = usage.get(key)
        require(_is_int(value) and value >= 0, f"{what}: usage.{key} must be a non-negative integer, got {value!r}")
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
    require(
        _is_int(body.get("created")), f"{what}: 'created' must be an integer timestamp, got {body.get('created')!r}"
    )
    require(
        isinstance(body.get("model"), str) and body["model"],
        f"{what}: 'model' must be a non-empty string, got {body.get('model')!r}",
    )
    choices = body.get("choices")
    require(isinstance(choices, list), f"{what}: 'choices' must be a list, got {_short(choices)}")
    if usage:
        require(isinstance(choices, list) and choices, f"{what}: 'choices' is empty")
        check_usage(body, what)


def check_choice(choice: Any, kind: Kind, what: str) -> None:
    require(isinstance(choice, dict), f"{what}: choice is not an object: {_short(choice)}")
    require(_is_int(choice.get("index")), f"{what}: choices[].index must be an integer, got {choice.get('index')!r}")
    reason = choice.get("finish_reason")
    require(reason in FINISH_REASONS, f"{what}: finish_reason must be one of {sorted(FINISH_REASONS)}, got {reason!r}")
    if kind == "completion":
        require(
            isinstance(choice.get("text"), str), f"{what}: choices[].text must be a string, got {choice.get('text')!r}"
        )
    else:
        message = choice.get("message")
        require(isinstance(message, dict), f"{what}: choices[].message must be an object, got {_short(message)}")
        require(
            message.get("role") == "assistant", f"{what}: message.role must be 'assistant', got {message.get('role')!r}"
        )
        require(
            isinstance(message.get("content"), str),
            f"{what}: message.content must be a string, got {message.get('content')!r}",
        )


def check_completion_body(body: Mapping[str, Any], kind: Kind = "completion") -> None:
    what = "POST /v1/completions" if kind == "completion" else "POST /v1/chat/completions"
    check_envelope(body, "text_completion" if kind == "completion" else "chat.completion", what)
    for choice in body["choices"]:
        check_choice(choice, kind, what)


def check_models(body: Mapping[str, Any], expected_model: str | None) -> list[str]:
    what = "GET /v1/models"
    require(body.get("object") == "list", f"{what}: 'object' must be 'list', got {body.get('object')!r}")
    data = body.get("data")
    require(isinstance(data, list) and data, f"{what}: 'data' must be a non-empty list, got {_short(data)}")
    assert isinstance(data, list)
    ids = [m.get("id") for m in data if isinstance(m, dict)]
    require(
        all(isinstance(i, str) and i for i in ids) and len(ids) == len(data),
        f"{what}: every model needs a string 'id': {_short(data)}",
    )
    if expected_model:
        require(expected_model in ids, f"{what}: served model {expected_model!r} is not listed (listed: {ids})")
    return [str(i) for i in ids]


def check_latency(samples_ms: list[float], threshold_ms: float, what: str = "completion") -> Metrics:
    metrics: Metrics = {
        "samples": len(samples_ms),
        "p50_ms": percentile(samples_ms, 50),
        "p95_ms": percentile(samples_ms, 95),
        "p99_ms": percentile(samples_ms, 99),
        "max_ms": max(samples_ms) if samples_ms else None,
        "threshold_ms": threshold_ms,
    }
    p95 = metrics["p95_ms"]
    require(p95 is not None, f"{what} latency: no samples", metrics)
    require(
        p95 <= threshold_ms,
        f"p95 {what} latency {p95:.0f}ms > threshold {threshold_ms:.0f}ms over {len(samples_ms)} requests "
        f"(p50 {metrics['p50_ms']:.0f}ms); raise SMOKE_LATENCY_MS or find what slows the server",
        metrics,
    )
    return metrics


def check_stream(result: StreamResult, what: str, *, min_text_chunks: int = 2) -> Metrics:
    """Incremental chunks, a final chunk with finish_reason, `data: [DONE]` last, SSE content type."""
    metrics: Metrics = {**result.timing(), "status_code": result.status_code}
    require(
        result.status_code == 200,
        f"{what}: expected HTTP 200, got {result.status_code}: {_short(result.body)}",
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
        f"{what}: the stream did not end with 'data: [DONE]' (last event: {_short(result.data[-1])})"
        if "[DONE]" not in [d.strip() for d in result.data]
        else f"{what}: events arrived after 'data: [DONE]'",
        metrics,
    )
    bad = [d for d, c in zip(result.data[:-1], result.chunks[:-1], strict=True) if not isinstance(c, dict)]
    require(not bad, f"{what}: {len(bad)} event(s) are not JSON objects, e.g. {_short(bad[0]) if bad else ''}", metrics)
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


def check_same_text(streamed: str, plain: str, what: str) -> None:
    require(
        streamed == plain,
        f"{what}: streamed text differs from the non-streamed text at temperature 0 and a fixed seed: "
        f"stream {streamed[:60]!r} vs plain {plain[:60]!r}",
        {"streamed_chars": len(streamed), "plain_chars": len(plain)},
    )


def check_error_response(response: httpx.Response, what: str) -> dict[str, Any]:
    """Invalid input must get a 4xx with an OpenAI-style error object; never 200, never 5xx."""
    code = response.status_code
    metrics = {"status_code": code}
    require(not 200 <= code < 300, f"{what}: the server accepted invalid input (HTTP {code}); expected a 4xx", metrics)
    require(
        code < 500,
        f"{what}: server error HTTP {code} for invalid input; expected a 4xx: {_short(response.text)}",
        metrics,
    )
    require(400 <= code < 500, f"{what}: expected a 4xx for invalid input, got HTTP {code}", metrics)
    got = media_type(response)
    require(
        got == "application/json",
        f"{what}: error served as {got or 'no content type'!r}, expected application/json: {_short(response.text)}",
        metrics,
    )
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"{what}: error body is not JSON: {_short(response.text)}", metrics) from None
    error = body.get("error") if isinstance(body, dict) else None
    require(isinstance(error, dict), f"{what}: error body lacks an 'error' object: {_short(body)}", metrics)
    assert isinstance(error, dict)
    require(
        isinstance(error.get("message"), str) and error["message"].strip(),
        f"{what}: error.message must be a non-empty string: {_short(error)}",
        metrics,
    )
    require(
        isinstance(error.get("type"), str) and error["type"],
        f"{what}: error.type must be a non-empty string: {_short(error)}",
        metrics,
    )
    return dict(error)


def check_health(response: httpx.Response, what: str = "GET /health") -> None:
    check_status(response, 200, what)


def check_max_tokens(body: Mapping[str, Any], max_tokens: int, what: str) -> Metrics:
    usage = check_usage(body, what)
    metrics = {"max_tokens": max_tokens, "completion_tokens": usage["completion_tokens"]}
    require(
        usage["completion_tokens"] <= max_tokens,
        f"{what}: max_tokens ignored: usage.completion_tokens {usage['completion_tokens']} > max_tokens {max_tokens}",
        metrics,
    )
    return metrics


def check_stop(text: str, finish_reason: Any, stop: str, reference: str, what: str) -> None:
    """The answer ends where `stop` first appears in the unconstrained answer, without `stop`."""
    expected = reference[: reference.index(stop)]
    require(stop not in text, f"{what}: stop sequence {stop!r} appears in the output {text[:80]!r}")
    require(
        finish_reason == "stop",
        f"{what}: finish_reason must be 'stop' when a stop sequence ends the answer, got {finish_reason!r}",
    )
    require(
        text == expected,
        f"{what}: output should end right before the stop sequence {stop!r}: "
        f"expected {expected[-40:]!r}, got {text[-40:]!r}",
    )


def check_auth(
    no_key: httpx.Response, wrong_key: httpx.Response, good_key: httpx.Response, health: httpx.Response
) -> None:
    require(
        no_key.status_code == 401,
        f"API key not enforced: a request without a key got HTTP {no_key.status_code}, expected 401",
    )
    require(
        wrong_key.status_code == 401,
        f"API key not enforced: a request with a wrong key got HTTP {wrong_key.status_code}, expected 401",
    )
    check_status(good_key, 200, "request with the right API key")
    check_status(health, 200, "GET /health without a key (must stay public)")


def check_memory(before: int, after: int, bound_mb: float, errors: list[str], requests: int, source: str) -> Metrics:
    growth_mb = (after - before) / 2**20
    metrics: Metrics = {
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "growth_mb": round(growth_mb, 1),
        "bound_mb": bound_mb,
        "requests": requests,
        "failed_requests": len(errors),
        "source": source,
    }
    require(
        not errors,
        f"{len(errors)} of {requests} requests failed during the memory run, e.g. {errors[0] if errors else ''}",
        metrics,
    )
    require(
        growth_mb <= bound_mb,
        f"server memory grew {growth_mb:.1f} MB over {requests} requests (bound {bound_mb:.0f} MB, MEMORY_GROWTH_MB)",
        metrics,
    )
    return metrics


@dataclass
class Answer:
    index: int
    status_code: int
    body: Any
    error: str | None = None


def check_concurrent(answers: list[Answer], expected: list[tuple[str, int]]) -> Metrics:
    """All concurrent requests succeeded and each answer is its own (text and prompt_tokens match
    what the same request got when sent alone)."""
    failed = [a for a in answers if a.status_code != 200 or a.error]
    metrics: Metrics = {"requests": len(answers), "failed": len(failed)}
    require(
        not failed,
        f"{len(failed)} of {len(answers)} concurrent requests failed, e.g. #{failed[0].index}: "
        f"{failed[0].error or failed[0].status_code}"
        if failed
        else "",
        metrics,
    )
    mixed = []
    for a in answers:
        text, prompt_tokens = expected[a.index]
        got_tokens = ((a.body or {}).get("usage") or {}).get("prompt_tokens")
        got_text = message_text(a.body or {}, "completion")
        if got_tokens != prompt_tokens or got_text != text:
            mixed.append((a.index, got_tokens, prompt_tokens, got_text, text))
    metrics["mismatched"] = len(mixed)
    require(
        not mixed,
        f"{len(mixed)} of {len(answers)} concurrent answers do not belong to their request, e.g. #{mixed[0][0]}: "
        f"prompt_tokens {mixed[0][1]} (expected {mixed[0][2]}), "
        f"text {mixed[0][3][:30]!r} (expected {mixed[0][4][:30]!r})"
        if mixed
        else "",
        metrics,
    )
    return metrics


# --- schemas (contract) --------------------------------------------------------------------------


@cache
def openai_schema(name: str) -> dict[str, Any]:
    """A pinned OpenAI component schema (src/llmpyramid/schemas/openai/<name>.json)."""
    text = resources.files("llmpyramid.schemas").joinpath("openai", f"{name}.json").read_text()
    return dict(json.loads(text))


def check_schema(name: str, body: Any, what: str) -> None:
    validator = jsonschema.Draft202012Validator(openai_schema(name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise CheckFailed(f"{what}: violates OpenAI {name} schema at {where}: {error.message}")


def _sdk_types() -> dict[str, Any]:
    from openai.types import Completion, Model
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openai.types.shared import ErrorObject

    return {
        "completion": Completion,
        "chat_completion": ChatCompletion,
        "chat_completion_chunk": ChatCompletionChunk,
        "model": Model,
        "error_object": ErrorObject,
    }


def check_sdk_type(name: str, body: Any, what: str) -> None:
    """Strict validation with the official SDK's pydantic type (no coercion: '1' is not 1)."""
    import pydantic

    try:
        _sdk_types()[name].model_validate(body, strict=True)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise CheckFailed(f"{what}: openai SDK type {name} rejects it at {where}: {first['msg']}") from None


def check_contract(name: str, body: Any, what: str) -> None:
    check_schema(name, body, what)
    if name in _sdk_types():
        check_sdk_type(name, body, what)


# --- probes: requests + checks, shared by the suites and their unit tests -------------------------


def probe_health(client: Client) -> Metrics:
    started = time.perf_counter()
    check_health(client.get("/health"))
    return {"latency_ms": (time.perf_counter() - started) * 1000}


def probe_completion_accepted(client: Client) -> Metrics:
    response, ms = client.timed("completion", "Hello", max_tokens=10)
    check_status(response, 200, "POST /v1/completions")
    body = json_object(response, "POST /v1/completions")
    require("choices" in body, f"POST /v1/completions: no 'choices' in {_short(body)}")
    return {"latency_ms": ms}


def probe_completion_fields(client: Client, kind: Kind = "completion") -> Metrics:
    what = "POST /v1/completions" if kind == "completion" else "POST /v1/chat/completions"
    response, ms = client.timed(kind, PROMPT if kind == "completion" else CHAT, max_tokens=8, **DETERMINISTIC)
    check_status(response, 200, what)
    body = json_object(response, what)
    check_completion_body(body, kind)
    if kind == "chat":
        require(message_text(body, "chat").strip(), f"{what}: the assistant message is empty")
    return {"latency_ms": ms, **check_usage(body, what)}


def probe_models(client: Client, expected_model: str | None) -> Metrics:
    response = client.get("/v1/models")
    check_status(response, 200, "GET /v1/models")
    ids = check_models(json_object(response, "GET /v1/models"), expected_model)
    return {"models": len(ids)}


def probe_latency(client: Client, samples: int, threshold_ms: float) -> Metrics:
    client.completion("Hi", max_tokens=1)  # warm-up, not measured
    timings = []
    for i in range(samples):
        response, ms = client.timed("completion", f"Latency probe {i}:", max_tokens=8, **DETERMINISTIC)
        check_status(response, 200, "POST /v1/completions")
        timings.append(ms)
    return check_latency(timings, threshold_ms)


def probe_concurrency(client: Client, n: int) -> Metrics:
    prompts = ["Count with me: " + " ".join(str(j) for j in range(1, 3 + 2 * i)) for i in range(n)]
    params = {"max_tokens": 8, **DETERMINISTIC}

    def send(i: int) -> Answer:
        try:
            r = client.completion(prompts[i], **params)
            return Answer(
                i,
                r.status_code,
                r.json() if r.status_code == 200 else None,
                None if r.status_code == 200 else _short(r.text),
            )
        except (httpx.HTTPError, ValueError) as exc:
            return Answer(i, 0, None, f"{type(exc).__name__}: {exc}")

    baseline: list[tuple[str, int]] = []
    for i in range(n):  # each request alone first: what its own answer looks like
        a = send(i)
        require(a.status_code == 200, f"sequential request #{i} failed: {a.error}")
        baseline.append(
            (message_text(a.body, "completion"), int((a.body.get("usage") or {}).get("prompt_tokens") or -1))
        )
    require(
        len({t for _, t in baseline}) == n,
        f"cannot tell answers apart: prompt_tokens {[t for _, t in baseline]} are not distinct",
    )
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        answers = list(pool.map(send, range(n)))
    metrics = check_concurrent(answers, baseline)
    metrics["wall_ms"] = (time.perf_counter() - started) * 1000
    return metrics


def probe_stream(client: Client, kind: Kind) -> Metrics:
    what = f"streamed {'POST /v1/completions' if kind == 'completion' else 'POST /v1/chat/completions'}"
    payload = PROMPT if kind == "completion" else CHAT
    result = client.stream(kind, payload, max_tokens=16, **DETERMINISTIC)
    metrics = check_stream(result, what)
    plain = client.create(kind, payload, max_tokens=16, **DETERMINISTIC)
    check_status(plain, 200, what.replace("streamed ", ""))
    check_same_text(result.text, message_text(plain.json(), kind), what)
    return metrics


def _long_prompt(client: Client) -> str:
    """A prompt longer than the served context (n_ctx from /v1/models metadata when offered)."""
    n_ctx = 32768
    try:
        meta = client.get("/v1/models").json()["data"][0].get("meta") or {}
        n_ctx = int(meta.get("n_ctx") or meta.get("n_ctx_train") or n_ctx)
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass
    return "hello world " * (n_ctx + 64)


InvalidRequest = Callable[[Client], httpx.Response]

INVALID_INPUTS: dict[str, InvalidRequest] = {
    "malformed-json": lambda c: c.post(
        "/v1/completions", content=b'{"prompt": "Hello", ', headers={"Content-Type": "application/json"}
    ),
    "missing-prompt": lambda c: c.post("/v1/completions", json={"max_tokens": 5}),
    "missing-messages": lambda c: c.post("/v1/chat/completions", json={"max_tokens": 5}),
    "prompt-wrong-type": lambda c: c.completion(12345, max_tokens=5),
    "messages-wrong-type": lambda c: c.chat("hello", max_tokens=5),
    "max-tokens-wrong-type": lambda c: c.completion("Hello", max_tokens="ten"),
    "temperature-wrong-type": lambda c: c.chat(CHAT, max_tokens=5, temperature="hot"),
    "negative-max-tokens": lambda c: c.completion("Hello", max_tokens=-5),
    "negative-max-tokens-chat": lambda c: c.chat(CHAT, max_tokens=-5),
    "prompt-longer-than-context": lambda c: c.completion(_long_prompt(c), max_tokens=5),
}


def probe_invalid_input(client: Client, case: str) -> Metrics:
    response = INVALID_INPUTS[case](client)
    error = check_error_response(response, f"invalid input ({case})")
    check_health(client.get("/health"), f"GET /health after invalid input ({case})")
    return {"status_code": response.status_code, "error_type": str(error.get("type"))}


def probe_max_tokens(client: Client, kind: Kind, max_tokens: int) -> Metrics:
    what = f"{kind} with max_tokens={max_tokens}"
    payload = (
        "Write a long story about a dragon:"
        if kind == "completion"
        else [{"role": "user", "content": "Write a long story about a dragon."}]
    )
    response = client.create(kind, payload, max_tokens=max_tokens, **DETERMINISTIC)
    check_status(response, 200, what)
    return check_max_tokens(response.json(), max_tokens, what)


def probe_stop(client: Client, kind: Kind) -> Metrics:
    what = f"{kind} with a stop sequence"
    payload = (
        "List the days of the week: Monday, Tuesday,"
        if kind == "completion"
        else [{"role": "user", "content": "List the days of the week, separated by commas."}]
    )
    reference_response = client.create(kind, payload, max_tokens=24, **DETERMINISTIC)
    check_status(reference_response, 200, what)
    reference = message_text(reference_response.json(), kind)
    words = [w for w in reference.split() if len(w) >= 3]
    require(len(words) >= 2, f"{what}: the reference answer is too short to pick a stop sequence: {reference!r}")
    stop = words[len(words) // 2]
    response = client.create(kind, payload, max_tokens=24, stop=[stop], **DETERMINISTIC)
    check_status(response, 200, what)
    body = response.json()
    finish = (body.get("choices") or [{}])[0].get("finish_reason")
    check_stop(message_text(body, kind), finish, stop, reference, what)
    return {"stop": stop, "chars": len(message_text(body, kind))}


def probe_auth(client_without_key: Client, api_key: str) -> Metrics:
    c = client_without_key
    no_key = c.completion("Hi", max_tokens=2)
    wrong = c.post(
        "/v1/completions",
        json=c.body("completion", "Hi", max_tokens=2),
        headers={"Authorization": "Bearer wrong-" + api_key},
    )
    good = c.post(
        "/v1/completions", json=c.body("completion", "Hi", max_tokens=2), headers={"Authorization": f"Bearer {api_key}"}
    )
    check_auth(no_key, wrong, good, c.get("/health"))
    return {"without_key": no_key.status_code, "wrong_key": wrong.status_code, "with_key": good.status_code}


def metrics_rss(client: Client) -> int | None:
    """process_resident_memory_bytes from Prometheus /metrics, when the server exports it."""
    try:
        response = client.get("/metrics")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    for line in response.text.splitlines():
        if line.startswith("process_resident_memory_bytes"):
            try:
                return int(float(line.split()[-1]))
            except ValueError:
                return None
    return None


def probe_memory(client: Client, rss: Callable[[], int | None], requests: int, bound_mb: float, source: str) -> Metrics:
    for _ in range(2):  # warm-up: first requests allocate buffers that stay
        client.completion("Warm up", max_tokens=4)
    before = rss()
    require(before is not None, f"cannot read server memory ({source})")

    def send(i: int) -> str | None:
        kind: Kind = "completion" if i % 2 else "chat"
        payload: Any = f"Memory probe {i}: tell me a fact."
        if kind == "chat":
            payload = [{"role": "user", "content": f"Fact {i}?"}]
        try:
            if i % 3 == 0:
                s = client.stream(kind, payload, max_tokens=8)
                return None if s.done else f"stream #{i}: HTTP {s.status_code}, no [DONE]"
            r = client.create(kind, payload, max_tokens=8)
            return None if r.status_code == 200 else f"#{i}: HTTP {r.status_code} {_short(r.text, 80)}"
        except httpx.HTTPError as exc:
            return f"#{i}: {type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        errors = [e for e in pool.map(send, range(requests)) if e]
    after = rss()
    require(after is not None, f"cannot read server memory after the run ({source})")
    metrics = check_memory(int(before or 0), int(after or 0), bound_mb, errors, requests, source)
    check_health(client.get("/health"), "GET /health after the memory run")
    return metrics


# --- contract probes -------------------------------------------------------------------------------


def probe_contract_body(client: Client, kind: Kind) -> Metrics:
    what = "POST /v1/completions" if kind == "completion" else "POST /v1/chat/completions"
    response = client.create(kind, PROMPT if kind == "completion" else CHAT, max_tokens=8, **DETERMINISTIC)
    check_status(response, 200, what)
    body = json_object(response, what)
    check_contract("completion" if kind == "completion" else "chat_completion", body, what)
    check_envelope(body, "text_completion" if kind == "completion" else "chat.completion", what)
    return check_usage(body, what)


def probe_contract_models(client: Client) -> Metrics:
    response = client.get("/v1/models")
    check_status(response, 200, "GET /v1/models")
    body = json_object(response, "GET /v1/models")
    check_schema("model_list", body, "GET /v1/models")
    for model in body["data"]:
        check_sdk_type("model", model, "GET /v1/models data[]")
    return {"models": len(body["data"])}


def probe_contract_stream(client: Client, kind: Kind, include_usage: bool = False) -> Metrics:
    what = f"streamed {'POST /v1/completions' if kind == 'completion' else 'POST /v1/chat/completions'}"
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    result = client.stream(kind, PROMPT if kind == "completion" else CHAT, max_tokens=8, **DETERMINISTIC, **extra)
    check_stream(result, what)
    name = "completion_chunk" if kind == "completion" else "chat_completion_chunk"
    obj = "text_completion" if kind == "completion" else "chat.completion.chunk"
    for i, chunk in enumerate(result.json_chunks):
        check_contract(name, chunk, f"{what} chunk {i}")
        check_envelope(chunk, obj, f"{what} chunk {i}", usage=False)
    if include_usage:
        final = result.json_chunks[-1]
        check_usage(final, f"{what} final chunk with stream_options.include_usage")
    return {"chunks": len(result.json_chunks)}


def probe_content_types(client: Client) -> Metrics:
    check_content_type(client.get("/v1/models"), "application/json", "GET /v1/models")
    check_content_type(client.completion("Hi", max_tokens=2), "application/json", "POST /v1/completions")
    check_content_type(client.chat(CHAT, max_tokens=2), "application/json", "POST /v1/chat/completions")
    check_content_type(client.post("/v1/completions", json={}), "application/json", "error response")
    for kind in ("completion", "chat"):
        result = client.stream(kind, PROMPT if kind == "completion" else CHAT, max_tokens=2)
        require(
            result.content_type == "text/event-stream",
            f"streamed {kind}: expected Content-Type text/event-stream, got {result.content_type or 'none'!r}",
        )
    return {}


def probe_contract_error(client: Client) -> Metrics:
    response = client.post("/v1/completions", json={"max_tokens": 5})
    check_error_response(response, "error response")
    check_schema("error_response", response.json(), "error response")
    check_sdk_type("error_object", response.json()["error"], "error response 'error'")
    return {"status_code": response.status_code}


@contextlib.contextmanager
def _openai_errors(what: str) -> Iterator[None]:
    """An error raised by the official client is the check's verdict, in one line."""
    import openai

    try:
        yield
    except openai.OpenAIError as exc:
        raise CheckFailed(f"{what}: {type(exc).__name__}: {exc}") from None


def _openai_kwargs(client: Client) -> dict[str, Any]:
    return {
        "base_url": client.target.url("/v1"),
        "api_key": client.target.api_key or "sk-no-key-required",
        "max_retries": 0,
        "timeout": 60.0,
    }


def _model_name(client: Client) -> str:
    if client.target.model:
        return client.target.model
    return check_models(client.get("/v1/models").json(), None)[0]


def probe_openai_sync(client: Client) -> Metrics:
    import openai

    with _openai_errors("openai client"), openai.OpenAI(**_openai_kwargs(client)) as oai:
        model = _model_name(client)
        listed = [m.id for m in oai.models.list()]
        require(model in listed, f"openai client: models.list() lacks {model!r}: {listed}")
        completion = oai.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0, seed=42)
        require(
            completion.choices and isinstance(completion.choices[0].text, str), "openai client: completion has no text"
        )
        chat = oai.chat.completions.create(model=model, messages=CHAT, max_tokens=8, temperature=0, seed=42)
        require(chat.choices and chat.choices[0].message.content, "openai client: chat completion has no content")
        require(
            chat.usage is not None and chat.usage.completion_tokens > 0, "openai client: chat completion lacks usage"
        )
    return {"completion_tokens": chat.usage.completion_tokens if chat.usage else None}


def probe_openai_stream(client: Client) -> Metrics:
    import openai

    with _openai_errors("openai client stream"), openai.OpenAI(**_openai_kwargs(client)) as oai:
        model = _model_name(client)
        pieces, reasons = [], []
        stream = oai.chat.completions.create(
            model=model, messages=CHAT, max_tokens=16, stream=True, temperature=0, seed=42
        )
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces.append(choice.delta.content)
                if choice.finish_reason:
                    reasons.append(choice.finish_reason)
        require(len(pieces) >= 2, f"openai client stream: expected incremental chunks, got {len(pieces)}")
        require(reasons, "openai client stream: no chunk with a finish_reason")
        cstream = oai.completions.create(model=model, prompt=PROMPT, max_tokens=8, stream=True, temperature=0, seed=42)
        texts = [c.choices[0].text for c in cstream if c.choices]
        require("".join(texts), "openai client stream: streamed completion carried no text")
    return {"chunks": len(pieces)}


def _say(word: str) -> Any:
    return [{"role": "user", "content": f"Say {word}."}]


def probe_openai_async(client: Client) -> Metrics:
    import openai

    model = _model_name(client)

    async def run() -> list[str]:
        async with openai.AsyncOpenAI(**_openai_kwargs(client)) as oai:
            chats = [
                oai.chat.completions.create(model=model, messages=_say(w), max_tokens=8) for w in ("yes", "no", "maybe")
            ]
            answers = await asyncio.gather(*chats)
            stream = await oai.chat.completions.create(model=model, messages=CHAT, max_tokens=8, stream=True)
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return [a.choices[0].message.content or "" for a in answers] + [streamed]

    with _openai_errors("openai async client"):
        texts = asyncio.run(run())
    require(all(t.strip() for t in texts), f"openai async client: empty answer(s): {texts}")
    return {"answers": len(texts)}
