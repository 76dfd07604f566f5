"""A plain pass-through HTTP proxy on loopback (aiohttp), standing in for the reverse proxies and load
balancers found in front of inference servers.

It forwards every request and streams every response back as it arrives (SSE included), dropping
hop-by-hop headers and replacing `Server:` with its own, as proxies and load balancers do.
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

# Per-connection headers (RFC 9110 7.6.1), plus the framing and identity the proxy sets itself.
NOT_FORWARDED = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
    "upgrade", "host", "content-length", "server", "date",
}  # fmt: skip


def _forwarded(headers: object) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in NOT_FORWARDED}  # type: ignore[attr-defined]


class PassThroughProxy:
    """`with PassThroughProxy("http://127.0.0.1:8080") as proxy: proxy.url` — runs in its own thread.
    `completion_delay_s` holds every completion request that long before forwarding it (a saturated load
    balancer, a slow network path); other requests (health, models) pass at once."""

    def __init__(self, upstream: str, completion_delay_s: float = 0.0):
        self.upstream = upstream.rstrip("/")
        self.completion_delay_s = completion_delay_s
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pass-through-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PassThroughProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    async def _start(self) -> None:
        # One upstream connection per request, as nginx does by default: llama.cpp closes a connection
        # after a stream while still advertising keep-alive, so a pooled one may be dead on reuse.
        self._session = ClientSession(
            connector=TCPConnector(force_close=True), auto_decompress=False, timeout=ClientTimeout(total=None)
        )
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        self.requests += 1
        body = await request.read()
        if self.completion_delay_s and request.path.endswith("/completions"):
            await asyncio.sleep(self.completion_delay_s)
        try:
            async with self._session.request(
                request.method,
                self.upstream + str(request.rel_url),
                headers=_forwarded(request.headers),
                data=body or None,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                response.headers.update(_forwarded(upstream.headers))
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except ClientError as exc:
            return web.Response(status=502, text=f"bad gateway: {type(exc).__name__}: {exc}")
