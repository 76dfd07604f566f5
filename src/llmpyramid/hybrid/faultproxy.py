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
scenario measures is the router's handling of the request itself. It counts the requests each fault hit;
the loopback server and its thread are llmpyramid.proxy's.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter

from aiohttp import ClientError, web

from llmpyramid.proxy import LoopbackProxy

MODES = ("pass", "reset", "cut", "slow")
GENERATED_TEXT = re.compile(rb'"(?:content|text)":"[^"]')  # a chunk that carries generated text


class FaultProxy(LoopbackProxy):
    """`with FaultProxy("http://127.0.0.1:8080") as proxy: proxy.url; proxy.set_mode("cut")`."""

    def __init__(self, upstream: str, *, delay_s: float = 4.0) -> None:
        super().__init__(upstream)
        self.delay_s = delay_s
        self.mode = "pass"
        self.faulted: Counter[str] = Counter()  # completion requests each fault hit

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"fault proxy mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        """Close the router's connection without another byte: what a dead backend looks like."""
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # aiohttp ends the handler quietly; nothing more is written

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        mode = self.mode if request.path.endswith("/completions") else "pass"
        if mode != "pass":
            self.faulted[mode] += 1
        if mode == "reset":
            return self._drop(request)
        if mode == "slow":
            await asyncio.sleep(self.delay_s)
        try:
            async with self.session.request(
                request.method, self.upstream + str(request.rel_url), headers=self.forwarded(request.headers),
                data=body or None, allow_redirects=False,
            ) as upstream:  # fmt: skip
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                response.headers.update(self.forwarded(upstream.headers))
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                    if mode == "cut" and GENERATED_TEXT.search(chunk):
                        return self._drop(request)
                await response.write_eof()
                return response
        except (ClientError, ConnectionError):
            return self._drop(request)
