"""The load users' wire protocol: request bodies, server token counts, SSE -> TTFT / ITL / verdicts."""

from __future__ import annotations

import json

import pytest

from llmpyramid.load.metrics import Sample
from llmpyramid.load.protocol import RequestFailed, StreamState, apply_usage, build_request


def _chunk(text: str | None, finish: str | None = None, **extra: object) -> bytes:
    delta = {} if text is None else {"content": text}
    payload = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(payload)}\n".encode()


def _feed(state: StreamState, lines: list[tuple[bytes, float]]) -> None:
    for raw, t in lines:
        state.feed_line(raw, t)
        state.feed_line(b"\n", t)  # the blank line that ends an SSE event
    state.close(lines[-1][1] if lines else 0.0)


def test_build_request_chat_stream_and_completion() -> None:
    path, body = build_request("chat_stream", "hi", 16, "m", ignore_eos=True)
    assert path == "/v1/chat/completions" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True} and body["ignore_eos"]
    path, body = build_request("completion", "hi", 4, None, ignore_eos=False)
    assert path == "/v1/completions" and body == {"max_tokens": 4, "stream": False, "prompt": "hi"}


def test_stream_records_ttft_itl_and_server_tokens() -> None:
    sample = Sample(start=0.0, kind="chat_stream", latency_ms=0.0, ok=False)
    state = StreamState(sample, t0=10.0)
    usage = {"completion_tokens": 3, "prompt_tokens": 7}
    timings = {"prompt_ms": 12.5, "predicted_ms": 30.0, "predicted_n": 3}
    _feed(state, [
        (_chunk(None), 10.010),  # role-only chunk: not a token
        (_chunk("Hel"), 10.050),
        (_chunk("lo"), 10.060),
        (_chunk("!"), 10.075),
        (_chunk(None, "length"), 10.080),
        (f"data: {json.dumps({'choices': [], 'usage': usage, 'timings': timings})}\n".encode(), 10.081),
        (b"data: [DONE]\n", 10.082),
    ])  # fmt: skip
    assert sample.ttft_ms == pytest.approx(50.0)
    assert sample.itl_ms == pytest.approx([10.0, 15.0])
    assert (sample.output_tokens, sample.tokens_source, sample.prompt_tokens) == (3, "usage", 7)
    assert (sample.server_prompt_ms, sample.server_predicted_ms) == (12.5, 30.0)
    assert state.done and state.finished and state.chunks_with_text == 3


def test_timings_are_the_fallback_token_count() -> None:
    sample = Sample(start=0.0, kind="completion", latency_ms=0.0, ok=False)
    apply_usage(sample, {"timings": {"predicted_n": 9, "prompt_ms": 1.0, "predicted_ms": 2.0}})
    assert (sample.output_tokens, sample.tokens_source) == (9, "timings")


def test_crlf_lines_and_comments_are_handled_by_the_sse_decoder() -> None:
    sample = Sample(start=0.0, kind="completion_stream", latency_ms=0.0, ok=False)
    state = StreamState(sample, t0=0.0)
    text_chunk = json.dumps({"choices": [{"text": "x", "finish_reason": "stop"}]})
    for raw in (b": keep-alive\r\n", b"\r\n", f"data: {text_chunk}\r\n".encode(), b"\r\n", b"data: [DONE]\r\n"):
        state.feed_line(raw, 0.001)
    state.close(0.002)
    assert state.done and state.chunks_with_text == 1 and sample.ttft_ms == pytest.approx(1.0)


def test_server_error_event_fails_the_request() -> None:
    state = StreamState(Sample(0.0, "chat_stream", 0.0, False), t0=0.0)
    with pytest.raises(RequestFailed, match="server error in stream"):
        _feed(state, [(b'data: {"error": {"message": "slot unavailable"}}\n', 0.1)])


def test_malformed_event_fails_the_request() -> None:
    state = StreamState(Sample(0.0, "chat_stream", 0.0, False), t0=0.0)
    with pytest.raises(RequestFailed, match="malformed stream event"):
        _feed(state, [(b"data: {not json\n", 0.1)])
