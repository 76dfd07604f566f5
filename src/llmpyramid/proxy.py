"""An HTTP proxy on a loopback port, in its own thread (aiohttp): what the hybrid layer's fault proxy and
the tests' pass-through proxies (a reverse proxy or load balancer in front of an inference server) share.

A subclass says what one request does (`_forward`); this class owns the thread, the event loop, the
listening socket and the upstream session, and `forwarded()` drops the headers a proxy never passes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping
from typing import Self

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOST = "127.0.0.1"
# Per-connection headers (RFC 9110 7.6.1) and the framing the proxy sets itself.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
    "upgrade", "host", "content-length",
})  # fmt: skip


class LoopbackProxy:
    """`with Proxy(upstream) as proxy: proxy.url` — serves until the block ends."""

    not_forwarded: frozenset[str] = HOP_BY_HOP

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def forwarded(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in headers.items() if k.lower() not in self.not_forwarded}

    @property
    def session(self) -> ClientSession:
        assert self._session is not None, "used inside the `with` block"
        return self._session

    def __enter__(self) -> Self:
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
        # One upstream connection per request, as nginx does by default: llama.cpp closes a connection after a
        # stream while still advertising keep-alive, so a pooled one may be dead on reuse.
        self._session = ClientSession(
            connector=TCPConnector(force_close=True), auto_decompress=False, timeout=ClientTimeout(total=None)
        )
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, 0).start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError
