"""A plain pass-through HTTP proxy on loopback (aiohttp), standing in for the reverse proxies and load
balancers found in front of inference servers.

It forwards every request and streams every response back as it arrives (SSE included), dropping
hop-by-hop headers and replacing `Server:` with its own, as proxies and load balancers do.
"""

from __future__ import annotations

import asyncio

from aiohttp import ClientError, web

from llmpyramid.proxy import HOP_BY_HOP, LoopbackProxy


class PassThroughProxy(LoopbackProxy):
    """`with PassThroughProxy("http://127.0.0.1:8080") as proxy: proxy.url` — runs in its own thread.
    `completion_delay_s` holds every completion request that long before forwarding it (a saturated load
    balancer, a slow network path); other requests (health, models) pass at once."""

    not_forwarded = HOP_BY_HOP | {"server", "date"}  # it names itself, as proxies do

    def __init__(self, upstream: str, completion_delay_s: float = 0.0):
        super().__init__(upstream)
        self.completion_delay_s = completion_delay_s
        self.requests = 0

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        if self.completion_delay_s and request.path.endswith("/completions"):
            await asyncio.sleep(self.completion_delay_s)
        try:
            async with self.session.request(
                request.method,
                self.upstream + str(request.rel_url),
                headers=self.forwarded(request.headers),
                data=body or None,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                response.headers.update(self.forwarded(upstream.headers))
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except ClientError as exc:
            return web.Response(status=502, text=f"bad gateway: {type(exc).__name__}: {exc}")
