"""Contract probes: OpenAI API compatibility — pinned component schemas, the official SDK's types in
strict mode, headers, the error object, and the official `openai` client end to end.

Known deviations: a server may differ from OpenAI in a documented way (llama.cpp serves `error.code`
as the HTTP status, an integer). Such a deviation is expected when the user declares it
(CONTRACT_KNOWN_DEVIATIONS=error_code_int,...) or when the server is identified as an implementation
known to have it. Identification reads llama.cpp's own `GET /props` body, which passes through
proxies and load balancers unchanged; the `Server:` header does not (they replace it). A probe meeting
an expected deviation raises `KnownDeviation` (the suite reports it as xfailed with the reason) only
when the deviation is the sole difference; a declared deviation that the server does not show fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import httpx
import jsonschema

from llmpyramid.checks.shared import (
    CHAT,
    DETERMINISTIC,
    PROMPT,
    CheckFailed,
    Metrics,
    check_content_type,
    check_envelope,
    check_error_response,
    check_models,
    check_status,
    check_stream,
    check_usage,
    is_int,
    json_object,
    require,
)
from llmpyramid.client import KINDS, Client, Kind
from llmpyramid.config import env_value
from llmpyramid.errors import ConfigError

# --- known deviations -----------------------------------------------------------------------------

DEVIATIONS_ENV = "CONTRACT_KNOWN_DEVIATIONS"
DEVIATIONS: dict[str, str] = {  # name -> what differs from OpenAI, and where it comes from
    "error_code_int": "error.code is the HTTP status as an integer (OpenAI: string or null); llama.cpp upstream, "
    "format_error_response in tools/server/utils.hpp",
}
IMPLEMENTATION_DEVIATIONS: dict[str, frozenset[str]] = {"llama.cpp": frozenset({"error_code_int"})}


class KnownDeviation(Exception):
    """The server differs from OpenAI exactly by an expected deviation (reported as xfailed)."""

    def __init__(self, name: str, why: str, metrics: Metrics | None = None):
        super().__init__(f"known deviation {name}: {DEVIATIONS[name]} ({why})")
        self.name = name
        self.metrics: Metrics = dict(metrics or {})


def parse_deviations(name: str, raw: object) -> frozenset[str]:
    """A comma list of deviation names; an unknown name is a configuration error naming `name`."""
    names = frozenset(part.strip() for part in str(raw or "").split(",") if part.strip())
    unknown = sorted(names - DEVIATIONS.keys())
    if unknown:
        raise ConfigError(f"{name}: unknown deviation(s) {', '.join(unknown)}; known: {', '.join(sorted(DEVIATIONS))}")
    return names


def declared_deviations() -> frozenset[str]:
    return parse_deviations(DEVIATIONS_ENV, env_value(DEVIATIONS_ENV))


def identify_server(client: Client) -> str | None:
    """'llama.cpp' when GET /props answers with llama.cpp's server properties, else None."""
    try:
        response = client.get("/props")
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if isinstance(body, dict) and isinstance(body.get("default_generation_settings"), dict) and "total_slots" in body:
        return "llama.cpp"
    return None


@dataclass(frozen=True)
class ServerProfile:
    """Which deviations the contract suite expects of this server, and why."""

    implementation: str | None = None  # identified from the response bodies, e.g. "llama.cpp"
    declared: frozenset[str] = field(default_factory=frozenset)  # CONTRACT_KNOWN_DEVIATIONS

    def why(self, deviation: str) -> str | None:
        """Why `deviation` is expected, or None when it is not."""
        if deviation in self.declared:
            return f"declared in {DEVIATIONS_ENV}"
        if deviation in IMPLEMENTATION_DEVIATIONS.get(self.implementation or "", frozenset()):
            return f"expected of {self.implementation}, identified by GET /props"
        return None


def server_profile(client: Client, declared: frozenset[str] = frozenset()) -> ServerProfile:
    return ServerProfile(identify_server(client), declared)


# --- schemas and SDK types ------------------------------------------------------------------------


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


def check_error_contract(body: Any, status_code: int, profile: ServerProfile, what: str) -> None:
    """The error body follows OpenAI's schema, or differs only by an expected deviation."""
    error = body.get("error") if isinstance(body, dict) else None
    why = profile.why("error_code_int")
    code = error.get("code") if isinstance(error, dict) else None
    if why and isinstance(error, dict) and is_int(code) and code == status_code:
        # Judge the rest of the body as OpenAI would see it; only then is this deviation the sole one.
        conforming = {**body, "error": {**error, "code": None}}
        check_contract("error_response", conforming, what)
        check_sdk_type("error_object", conforming["error"], f"{what} 'error'")
        raise KnownDeviation("error_code_int", why, {"status_code": status_code, "error_code": code})
    check_contract("error_response", body, what)
    check_sdk_type("error_object", body["error"], f"{what} 'error'")
    require(
        not why,
        f"{what}: deviation error_code_int ({why}) was expected but error.code is {code!r}; "
        f"remove it from {DEVIATIONS_ENV} or update the known deviations",
    )


# --- probes ---------------------------------------------------------------------------------------


def probe_contract_body(client: Client, kind: Kind) -> Metrics:
    spec = KINDS[kind]
    response = client.create(kind, spec.payload(PROMPT), max_tokens=8, **DETERMINISTIC)
    check_status(response, 200, spec.what)
    body = json_object(response, spec.what)
    check_contract(spec.schema, body, spec.what)
    check_envelope(body, spec.obj, spec.what)
    return check_usage(body, spec.what)


def probe_contract_models(client: Client) -> Metrics:
    response = client.get("/v1/models")
    check_status(response, 200, "GET /v1/models")
    body = json_object(response, "GET /v1/models")
    check_schema("model_list", body, "GET /v1/models")
    for model in body["data"]:
        check_sdk_type("model", model, "GET /v1/models data[]")
    return {"models": len(body["data"])}


def probe_contract_stream(client: Client, kind: Kind, include_usage: bool = False) -> Metrics:
    spec = KINDS[kind]
    what = f"streamed {spec.what}"
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    result = client.stream(kind, spec.payload(PROMPT), max_tokens=8, **DETERMINISTIC, **extra)
    check_stream(result, what)
    for i, chunk in enumerate(result.json_chunks):
        check_contract(spec.chunk_schema, chunk, f"{what} chunk {i}")
        check_envelope(chunk, spec.chunk_obj, f"{what} chunk {i}", usage=False)
    if include_usage:
        check_usage(result.json_chunks[-1], f"{what} final chunk with stream_options.include_usage")
    return {"chunks": len(result.json_chunks)}


def probe_content_types(client: Client) -> Metrics:
    check_content_type(client.get("/v1/models"), "application/json", "GET /v1/models")
    for kind, spec in KINDS.items():
        check_content_type(client.create(kind, spec.payload(PROMPT), max_tokens=2), "application/json", spec.what)
        result = client.stream(kind, spec.payload(PROMPT), max_tokens=2)
        require(
            result.content_type == "text/event-stream",
            f"streamed {spec.what}: expected Content-Type text/event-stream, got {result.content_type or 'none'!r}",
        )
    check_content_type(client.post(KINDS["completion"].path, json={}), "application/json", "error response")
    return {}


def probe_contract_error(client: Client, profile: ServerProfile | None = None) -> Metrics:
    """OpenAI's error object; raises KnownDeviation when it differs only as `profile` expects."""
    response = client.post(KINDS["completion"].path, json={"max_tokens": 5})
    check_error_response(response, "error response")
    check_error_contract(response.json(), response.status_code, profile or ServerProfile(), "error response")
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


def probe_openai_async(client: Client) -> Metrics:
    import openai

    model = _model_name(client)

    async def run() -> list[str]:
        async with openai.AsyncOpenAI(**_openai_kwargs(client)) as oai:
            chats = [
                oai.chat.completions.create(model=model, messages=KINDS["chat"].payload(f"Say {w}."), max_tokens=8)
                for w in ("yes", "no", "maybe")
            ]
            answers = await asyncio.gather(*chats)
            stream = await oai.chat.completions.create(model=model, messages=CHAT, max_tokens=8, stream=True)
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return [a.choices[0].message.content or "" for a in answers] + [streamed]

    with _openai_errors("openai async client"):
        texts = asyncio.run(run())
    require(all(t.strip() for t in texts), f"openai async client: empty answer(s): {texts}")
    return {"answers": len(texts)}


__all__ = [
    "DEVIATIONS", "DEVIATIONS_ENV", "IMPLEMENTATION_DEVIATIONS", "KnownDeviation", "ServerProfile", "check_contract",
    "check_error_contract", "check_schema", "check_sdk_type", "declared_deviations", "identify_server",
    "openai_schema", "parse_deviations", "probe_content_types", "probe_contract_body", "probe_contract_error",
    "probe_contract_models", "probe_contract_stream", "probe_openai_async", "probe_openai_stream", "probe_openai_sync",
    "server_profile",
]  # fmt: skip
