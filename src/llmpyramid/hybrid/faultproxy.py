"""A fault proxy in front of a backend: the router under test talks to the backend through it.

It forwards every request unchanged and streams every response back as it arrives, and is
transparent to failures: a backend that refuses or drops the connection makes the proxy drop the
router's connection (never a made-up 502). A scenario switches it into one fault at a measured point:

    reset     a completion request gets no response at all (the connection closes before any byte):
              the backend failed before the first token
    cut       a completion's response starts, the first generated token passes, then the connection
              closes mid-body: the backend died mid-stream
    slow      completions wait `delay_s` before they reach the backend (TTFT + delay_s): a degraded
              backend (swapping, overloaded) that is not dead; /health still answers at once

Only completion requests are faulted: the router's health checks see a healthy backend, so what the
scenario measures is the router's handling of the request itself. It runs an aiohttp server on a loopback
port in its own thread and counts the requests each fault hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections import Counter

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

MODES = ("pass", "reset", "cut", "slow")
HOST = "127.0.0.1"
# Per-connection headers (RFC 9110 7.6.1) and the framing the proxy sets itself.
NOT_FORWARDED = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
    "upgrade", "host", "content-length",
}  # fmt: skip
GENERATED_TEXT = re.compile(rb'"(?:content|text)":"[^"]')  # a chunk that carries generated text


def _forwarded(headers: object) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in NOT_FORWARDED}  # type: ignore[attr-defined]


class FaultProxy:
    """`with FaultProxy("http://127.0.0.1:8080") as proxy: proxy.url; proxy.set_mode("cut")`."""

    def __init__(self, upstream: str, *, delay_s: float = 4.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay_s = delay_s
        self.mode = "pass"
        self.faulted: Counter[str] = Counter()  # completion requests each fault hit
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"fault proxy mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    async def _start(self) -> None:
        # One upstream connection per request: llama.cpp closes a connection after a stream while still
        # advertising keep-alive, so a pooled one may be dead on reuse (and would look like a fault).
        self._session = ClientSession(
            connector=TCPConnector(force_close=True), auto_decompress=False, timeout=ClientTimeout(total=None)
        )
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        """Close the router's connection without another byte: what a dead backend looks like."""
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # aiohttp ends the handler quietly; nothing more is written

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        mode = self.mode if request.path.endswith("/completions") else "pass"
        if mode != "pass":
            self.faulted[mode] += 1
        if mode == "reset":
            return self._drop(request)
        if mode == "slow":
            await asyncio.sleep(self.delay_s)
        try:
            async with self._session.request(
                request.method, self.upstream + str(request.rel_url), headers=_forwarded(request.headers),
                data=body or None, allow_redirects=False,
            ) as upstream:  # fmt: skip
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                response.headers.update(_forwarded(upstream.headers))
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                    if mode == "cut" and GENERATED_TEXT.search(chunk):
                        return self._drop(request)
                await response.write_eof()
                return response
        except (ClientError, ConnectionError):
            return self._drop(request)
