"""A router that hides a backend dying mid-stream: it forwards every request to one backend and, when
the backend's answer breaks off, ends the client's stream with a clean `data: [DONE]` — the failure the
hybrid layer's scenario g exists to catch (the client cannot tell the cut answer from a finished one).

It is the pass-through proxy (tests/support/passthrough.py) with that one behaviour changed, and it names
the backend in the header the layer's HAProxy configuration uses.
"""

from __future__ import annotations

from aiohttp import ClientError, web

from tests.support.passthrough import PassThroughProxy

BACKEND_HEADER = "x-llmpyramid-backend"


class MaskingRouter(PassThroughProxy):
    """`mask=False` is the honest control: a broken answer breaks the client's connection too."""

    def __init__(self, upstream: str, *, mask: bool = True) -> None:
        super().__init__(upstream)
        self.mask = mask

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        response: web.StreamResponse | None = None
        try:
            url = self.upstream + str(request.rel_url)
            async with self.session.request(request.method, url, headers=self.forwarded(request.headers),
                                             data=body or None) as upstream:  # fmt: skip
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                response.headers.update(self.forwarded(upstream.headers))
                response.headers[BACKEND_HEADER] = "base"
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
        except (ClientError, ConnectionError):
            if response is None:
                return web.Response(status=502, text="bad gateway")
            if not self.mask:
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write(b"data: [DONE]\n\n")  # the cut answer, ended as if it were complete
        assert response is not None
        await response.write_eof()
        return response
