"""The floor: uvicorn and aiohttp with nothing between them.

A bare ASGI pass-through on the sidecar's own server and client settings (uvloop,
httptools, one pooled aiohttp ``ClientSession``): it reads the body, posts it to the
upstream and relays the answer, JSON whole and SSE chunk by chunk.  No parsing, no
cache, no routing, no metrics, no logs.  ``overhead.py --vs floor`` measures it in
the same run as the sidecar, so what the gateway's own features cost is the
difference between the two rows.  Not part of the product.

    FLOOR_UPSTREAM=http://127.0.0.1:PORT python -m uvicorn floor_app:app \\
        --loop uvloop --http httptools --no-access-log --port N
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from starlette.types import Message, Receive, Scope, Send


class PassThrough:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        chunks = []
        while True:
            message: Message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        assert self.session is not None
        url = self.upstream + scope["path"]
        headers = {"content-type": "application/json"}
        async with self.session.post(url, data=b"".join(chunks), headers=headers) as answer:
            content_type = answer.headers.get("content-type", "application/json")
            start: dict[str, Any] = {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(b"content-type", content_type.encode())],
            }
            await send(start)
            if not content_type.startswith("text/event-stream"):
                body = await answer.read()
                await send({"type": "http.response.body", "body": body})
                return
            async for chunk in answer.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=4096, limit_per_host=0),
                    cookie_jar=aiohttp.DummyCookieJar(),
                    skip_auto_headers=("User-Agent",),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = PassThrough(os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:8001"))
