"""A small, deterministic OpenAI-compatible server for unit tests, with switchable faults.

Healthy by default (every probe in llmpyramid.checks passes against it); each fault serves one
broken form (a missing field, no [DONE], 200 for invalid input, ...) so the unit tests can prove
that the check meant to catch it fails. Loopback only, one thread per request, stdlib only.

The flag `llamacpp` makes it look like llama.cpp in the bodies: `GET /props`, a `timings` object
in each answer (the time the request was handled, as the server measures it), and its one known
deviation, `error.code` as an integer. `server_header` names it only in the `Server:` header.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmpyramid.target import Target

MODEL = "fake-model"
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
]
N_CTX = 2048


class BadRequest(Exception):
    pass


class FakeOpenAI:
    def __init__(self, *faults: str, api_key: str | None = None):
        self.faults = set(faults)
        self.api_key = api_key
        self.requests = 0
        self.in_flight = 0
        self.crashed = False
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)  # notified on every request's arrival
        self.prompts_seen: set[str] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def version_string(self) -> str:
                return "llama.cpp" if fake.has("server_header") else "fake-openai"

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def target(self) -> Target:
        return Target(self.url, self.api_key, None)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def has(self, fault: str) -> bool:
        return fault in self.faults

    # --- responses ----------------------------------------------------------------------------

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def error(self, h: BaseHTTPRequestHandler, status: int, message: str) -> None:
        if self.has("error_plain_text"):
            return self.send(h, status, message, "text/plain")
        if self.has("error_no_object"):
            return self.send(h, status, {"detail": message})
        code: Any = status if self.has("error_code_int") or self.has("llamacpp") else None
        param: Any = 5 if self.has("error_param_int") else None
        self.send(
            h, status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
        )

    def json_type(self) -> str:
        return "text/plain" if self.has("json_as_text") else "application/json"

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?")[0]
        if path == "/health":
            if self.has("health_500") or self.crashed:
                return self.send(h, 500, {"error": {"message": "unhealthy", "type": "server_error"}})
            if self.has("health_needs_auth") and self.api_key and not self.authorized(h):
                return self.error(h, 401, "missing key")
            return self.send(h, 200, {"status": "ok"})
        if path == "/props" and self.has("llamacpp"):
            return self.send(h, 200, {"default_generation_settings": {"n_ctx": N_CTX}, "total_slots": 1})
        if path == "/metrics" and not self.has("no_metrics"):
            with self.lock:
                rss = 200 * 2**20 + (self.requests * 5 * 2**20 if self.has("leak") else 0)
            return self.send(
                h,
                200,
                f"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n",
                "text/plain",
            )
        if self.api_key and not self.authorized(h) and not self.has("auth_ignored"):
            return self.error(h, 401, "invalid api key")
        if path == "/v1/models" and method == "GET":
            return self.models(h)
        if path in ("/v1/completions", "/v1/chat/completions") and method == "POST":
            with self.lock:
                self.requests += 1
                self.in_flight += 1
                number = self.requests
                self.arrived.notify_all()
            try:
                return self.create(h, "completion" if path == "/v1/completions" else "chat", number)
            finally:
                with self.lock:
                    self.in_flight -= 1
        return self.error(h, 404, f"no route {method} {path}")

    def authorized(self, h: BaseHTTPRequestHandler) -> bool:
        got = h.headers.get("Authorization", "")
        if self.has("wrong_key_accepted"):
            return got.startswith("Bearer ")
        return got == f"Bearer {self.api_key}"

    def models(self, h: BaseHTTPRequestHandler) -> None:
        model = {"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "fake", "meta": {"n_ctx": N_CTX}}
        if self.has("models_other"):
            model["id"] = "another-model"
        if self.has("model_created_string"):
            model["created"] = "yesterday"
        body: dict[str, Any] = {"object": "list", "data": [] if self.has("models_empty") else [model]}
        self.send(h, 200, body, self.json_type())

    # --- completions --------------------------------------------------------------------------

    def validate(self, kind: str, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadRequest("malformed JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("body must be an object")
        if kind == "completion":
            if "prompt" not in body:
                raise BadRequest("'prompt' is required")
            if not isinstance(body["prompt"], str | list):
                raise BadRequest("'prompt' must be a string or a list")
        else:
            if "messages" not in body:
                raise BadRequest("'messages' is required")
            if not isinstance(body["messages"], list):
                raise BadRequest("'messages' must be an array")
        mt = body.get("max_tokens", 16)
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 0:
            raise BadRequest("'max_tokens' must be a non-negative integer")
        temp = body.get("temperature", 1.0)
        if not isinstance(temp, int | float) or isinstance(temp, bool):
            raise BadRequest("'temperature' must be a number")
        if len(self.prompt_text(kind, body).split()) > N_CTX:
            raise BadRequest("request exceeds the context size")
        return body

    @staticmethod
    def prompt_text(kind: str, body: dict[str, Any]) -> str:
        if kind == "completion":
            p = body.get("prompt")
            return p if isinstance(p, str) else " ".join(map(str, p or []))
        return " ".join(str(m.get("content", "")) for m in body.get("messages", []) if isinstance(m, dict))

    PEER_WAIT_S = 30.0  # bound only: a concurrent sender's peer arrives long before it

    def overlapped(self, kind: str, body: dict[str, Any], number: int) -> bool:
        """Whether this request overlaps another one, decided by arrivals, not by timing: a prompt sent
        again (the concurrency check sends each prompt alone first, then all at once) waits until another
        request is in flight or arrives, so a concurrent burst always overlaps and a sequential one never."""
        prompt = self.prompt_text(kind, body)
        with self.lock:
            if prompt not in self.prompts_seen:
                self.prompts_seen.add(prompt)
                return self.in_flight > 1
            return self.arrived.wait_for(lambda: self.in_flight > 1 or self.requests > number, self.PEER_WAIT_S)

    def answer(self, kind: str, body: dict[str, Any], overlapped: bool) -> tuple[list[str], str, int]:
        """(pieces, finish_reason, prompt_tokens) — deterministic in the prompt."""
        prompt = self.prompt_text(kind, body)
        prompt_tokens = len(prompt.split()) or 1
        if self.has("swap_answers") and overlapped:
            prompt_tokens += 1  # someone else's answer
        n = body.get("max_tokens", 16) + (3 if self.has("ignore_max_tokens") else 0)
        pieces = [" " + WORDS[(prompt_tokens + i) % len(WORDS)] for i in range(n)]
        finish = "length"
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        if stops and not self.has("ignore_stop"):
            text = "".join(pieces)
            hits = sorted((text.index(s), s) for s in stops if s in text)
            if hits:
                cut, stop = hits[0]
                end = cut + (len(stop) if self.has("stop_keeps_sequence") else 0)
                pieces, finish = [text[:end]], ("length" if self.has("stop_wrong_reason") else "stop")
        return pieces, finish, prompt_tokens

    def create(self, h: BaseHTTPRequestHandler, kind: str, number: int) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        try:
            body = self.validate(kind, raw)
        except BadRequest as exc:
            if self.has("invalid_crash"):
                self.crashed = True
            if self.has("invalid_500"):
                return self.send(h, 500, {"error": {"message": str(exc), "type": "server_error"}})
            if not self.has("invalid_200"):
                return self.error(h, 400, str(exc))
            body = {"prompt": "accepted anyway", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4}
        started = time.perf_counter()
        if self.has("slow"):
            time.sleep(0.2)
        overlapped = (self.has("swap_answers") or self.has("concurrent_500")) and self.overlapped(kind, body, number)
        if self.has("concurrent_500") and overlapped:
            return self.send(h, 500, {"error": {"message": "busy", "type": "server_error"}})
        if self.has("completion_500") or (self.has("flaky_500") and number % 5 == 0):
            return self.send(h, 500, {"error": {"message": "flaky", "type": "server_error"}})
        pieces, finish, prompt_tokens = self.answer(kind, body, overlapped)
        if body.get("stream"):
            if self.has("slow_first_token"):
                time.sleep(0.2)  # a stream whose first token is late (a queue in front of the model)
            return self.stream(h, kind, body, pieces, finish, prompt_tokens)
        text = "".join(pieces)
        completion_tokens = len(pieces) if len(pieces) > 1 else len(text.split())
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if self.has("bad_usage_sum"):
            usage["total_tokens"] += 1
        if kind == "completion":
            choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        else:
            content = "" if self.has("chat_empty") else text
            role = "user" if self.has("chat_role") else "assistant"
            choice = {"index": 0, "message": {"role": role, "content": content}, "finish_reason": finish}
            obj = "chat.completion"
        if self.has("no_finish_reason"):
            choice["finish_reason"] = None
        out: dict[str, Any] = {
            "id": f"cmpl-{number}",
            "object": obj,
            "created": 1700000000,
            "model": MODEL,
            "choices": [choice],
            "usage": usage,
        }
        if self.has("created_float"):
            out["created"] = 1700000000.5
        if self.has("llamacpp"):
            handled_ms = (time.perf_counter() - started) * 1000
            out["timings"] = {"prompt_n": prompt_tokens, "prompt_ms": handled_ms / 2, "predicted_ms": handled_ms / 2}
        if self.has("slow_transport"):
            time.sleep(0.2)  # time outside the server's own measurement (network, a proxy, a busy client)
        self.mangle(out)
        self.send(h, 200, out, self.json_type())

    def mangle(self, out: dict[str, Any]) -> None:
        for fault in self.faults:
            if fault.startswith("missing:"):
                out.pop(fault.split(":", 1)[1], None)
            elif fault.startswith("wrong_type:"):
                key = fault.split(":", 1)[1]
                out[key] = {
                    "id": 123,
                    "created": "yesterday",
                    "usage": "lots",
                    "choices": "many",
                    "model": 7,
                    "object": 1,
                }[key]

    def stream(
        self,
        h: BaseHTTPRequestHandler,
        kind: str,
        body: dict[str, Any],
        pieces: list[str],
        finish: str,
        prompt_tokens: int,
    ) -> None:
        h.send_response(200)
        h.send_header(
            "Content-Type", "application/json" if self.has("stream_json_content_type") else "text/event-stream"
        )
        h.end_headers()
        if self.has("stream_text_differs"):
            pieces = [p.upper() for p in pieces]
        if self.has("stream_single_chunk"):
            pieces = ["".join(pieces)]
        obj = "text_completion" if kind == "completion" else "chat.completion.chunk"

        def chunk(text: str | None, reason: str | None, first: bool = False) -> dict[str, Any]:
            if kind == "completion":
                choice: dict[str, Any] = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}
            else:
                delta: dict[str, Any] = {"content": text} if text is not None else {}
                if first:
                    delta["role"] = "assistant"
                choice = {"index": 0, "delta": delta, "finish_reason": reason}
            c: dict[str, Any] = {
                "id": "cmpl-stream",
                "object": obj,
                "created": 1700000000,
                "model": MODEL,
                "choices": [choice],
            }
            if self.has("stream_chunk_missing_id"):
                del c["id"]
            return c

        events = [chunk(p, None, i == 0) for i, p in enumerate(pieces)]
        if self.has("stream_not_json"):
            events.insert(1, "this is not json")  # type: ignore[arg-type]
        if not self.has("stream_no_finish"):
            events.append(chunk(None if kind == "chat" else "", finish))
        if self.has("stream_text_after_finish"):
            events.append(chunk(" extra", None))
        if (body.get("stream_options") or {}).get("include_usage") and not self.has("stream_usage_ignored"):
            n = len(pieces)
            events.append(
                {
                    **chunk(None, None),
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": n,
                        "total_tokens": prompt_tokens + n,
                    },
                }
            )
        for e in events:
            h.wfile.write(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode())
            h.wfile.flush()
        if not self.has("stream_no_done"):
            h.wfile.write(b"data: [DONE]\n\n")
        if self.has("stream_after_done"):
            h.wfile.write(f"data: {json.dumps(chunk(' late', None))}\n\n".encode())
        h.wfile.flush()
