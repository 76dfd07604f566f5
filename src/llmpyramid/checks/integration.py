"""Integration probes: end-to-end behaviour — concurrency, streaming, invalid input, max_tokens /
stop, API keys and memory stability."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from llmpyramid.checks.shared import (
    CHAT,
    DETERMINISTIC,
    PROMPT,
    CheckFailed,
    Metrics,
    check_error_response,
    check_health,
    check_status,
    check_stream,
    check_usage,
    require,
    short,
)
from llmpyramid.client import KINDS, Client, Kind, message_text

# --- checks ---------------------------------------------------------------------------------------


def check_same_text(streamed: str, plain: str, what: str) -> None:
    require(
        streamed == plain,
        f"{what}: streamed text differs from the non-streamed text at temperature 0 and a fixed seed: "
        f"stream {streamed[:60]!r} vs plain {plain[:60]!r}",
        {"streamed_chars": len(streamed), "plain_chars": len(plain)},
    )


def check_max_tokens(body: dict[str, Any], max_tokens: int, what: str) -> Metrics:
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


def check_concurrent(answers: list[Answer], expected: list[int]) -> Metrics:
    """All concurrent requests succeeded and each answer is its own: its prompt_tokens are what the same
    request got alone (each prompt has a distinct length). The text is not compared: under batching
    llama.cpp may sample a different continuation for the same request."""
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
        prompt_tokens = expected[a.index]
        got_tokens = ((a.body or {}).get("usage") or {}).get("prompt_tokens")
        if got_tokens != prompt_tokens:
            mixed.append((a.index, got_tokens, prompt_tokens))
    metrics["mismatched"] = len(mixed)
    require(
        not mixed,
        f"{len(mixed)} of {len(answers)} concurrent answers do not belong to their request, e.g. #{mixed[0][0]}: "
        f"prompt_tokens {mixed[0][1]} (expected {mixed[0][2]})"
        if mixed
        else "",
        metrics,
    )
    return metrics


# --- probes ---------------------------------------------------------------------------------------


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
                None if r.status_code == 200 else short(r.text),
            )
        except (httpx.HTTPError, ValueError) as exc:
            return Answer(i, 0, None, f"{type(exc).__name__}: {exc}")

    baseline: list[int] = []  # each request alone first: its own prompt_tokens
    for i in range(n):
        a = send(i)
        require(a.status_code == 200, f"sequential request #{i} failed: {a.error}")
        baseline.append(int((a.body.get("usage") or {}).get("prompt_tokens") or -1))
    require(len(set(baseline)) == n, f"cannot tell answers apart: prompt_tokens {baseline} are not distinct")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        answers = list(pool.map(send, range(n)))
    metrics = check_concurrent(answers, baseline)
    metrics["wall_ms"] = (time.perf_counter() - started) * 1000
    return metrics


def probe_stream(client: Client, kind: Kind) -> Metrics:
    spec = KINDS[kind]
    what = f"streamed {spec.what}"
    result = client.stream(kind, spec.payload(PROMPT), max_tokens=16, **DETERMINISTIC)
    metrics = check_stream(result, what)
    plain = client.create(kind, spec.payload(PROMPT), max_tokens=16, **DETERMINISTIC)
    check_status(plain, 200, spec.what)
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
        KINDS["completion"].path, content=b'{"prompt": "Hello", ', headers={"Content-Type": "application/json"}
    ),
    "missing-prompt": lambda c: c.post(KINDS["completion"].path, json={"max_tokens": 5}),
    "missing-messages": lambda c: c.post(KINDS["chat"].path, json={"max_tokens": 5}),
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
    payload = KINDS[kind].payload("Write a long story about a dragon.")
    response = client.create(kind, payload, max_tokens=max_tokens, **DETERMINISTIC)
    check_status(response, 200, what)
    return check_max_tokens(response.json(), max_tokens, what)


def probe_stop(client: Client, kind: Kind) -> Metrics:
    what = f"{kind} with a stop sequence"
    payload = KINDS[kind].payload("List the days of the week: Monday, Tuesday,")
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
    path, body = KINDS["completion"].path, c.body("completion", "Hi", max_tokens=2)
    no_key = c.post(path, json=body)
    wrong = c.post(path, json=body, headers={"Authorization": "Bearer wrong-" + api_key})
    good = c.post(path, json=body, headers={"Authorization": f"Bearer {api_key}"})
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
    kinds: tuple[Kind, Kind] = ("chat", "completion")

    def send(i: int) -> str | None:
        kind = kinds[i % 2]
        payload = KINDS[kind].payload(f"Memory probe {i}: tell me a fact.")
        try:
            if i % 3 == 0:
                s = client.stream(kind, payload, max_tokens=8)
                return None if s.done else f"stream #{i}: HTTP {s.status_code}, no [DONE]"
            r = client.create(kind, payload, max_tokens=8)
            return None if r.status_code == 200 else f"#{i}: HTTP {r.status_code} {short(r.text, 80)}"
        except httpx.HTTPError as exc:
            return f"#{i}: {type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        errors = [e for e in pool.map(send, range(requests)) if e]
    after = rss()
    require(after is not None, f"cannot read server memory after the run ({source})")
    metrics = check_memory(int(before or 0), int(after or 0), bound_mb, errors, requests, source)
    check_health(client.get("/health"), "GET /health after the memory run")
    return metrics


__all__ = [
    "INVALID_INPUTS", "Answer", "CheckFailed", "check_auth", "check_concurrent", "check_max_tokens", "check_memory",
    "check_same_text", "check_stop", "metrics_rss", "probe_auth", "probe_concurrency", "probe_invalid_input",
    "probe_max_tokens", "probe_memory", "probe_stop", "probe_stream",
]  # fmt: skip
