"""Outbound: an httpx transport that runs an app's own LLM SDK calls through the stack.

``openai.AsyncOpenAI(http_client=httpx2.AsyncClient(transport=OptirouteTransport2(gw)))``
(the openai SDK 3.x builds on httpx2; :class:`OptirouteTransport` is the same for
httpx 0.28 clients) sends every chat/completions call through cache, classify,
select, breaker and forward in-process, to the backend the stack chooses.  The
response streams as the stack produces it.  Other calls (files, batches, …) go
out unchanged through the ordinary transport.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.types import ASGIApp, Message

ROUTES = (
    ("/chat/completions", "/v1/chat/completions"),
    ("/completions", "/v1/completions"),
    # the Anthropic SDK; a suffix no OpenAI route has (/v1/threads/{id}/messages is not it)
    ("/v1/messages", "/v1/messages"),
)


def stack_path(path: str) -> str | None:
    for suffix, route in ROUTES:
        if path.endswith(suffix):
            return route
    return None


class StackCall:
    """One request run through the ASGI stack in a task, its answer read as it comes."""

    def __init__(
        self, app: ASGIApp, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        self.app = app
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": ("in-process", 0),
            "state": {},
        }
        self.body: bytes | None = body
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def receive(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await self.queue.put(message)

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception as exc:
            self.error = exc
        finally:
            self.queue.put_nowait(None)

    async def start(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        self.task = asyncio.create_task(self._run())
        message = await self.queue.get()
        if message is None or message["type"] != "http.response.start":
            raise RuntimeError("the stack ended without a response") from self.error
        return message["status"], list(message.get("headers", ()))

    async def chunks(self) -> AsyncIterator[bytes]:
        while (message := await self.queue.get()) is not None:
            if message["type"] == "http.response.body":
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body", False):
                    return

    async def aclose(self) -> None:
        self.disconnected.set()
        task = self.task
        if task is not None and not task.done():
            # a caller that stops reading early: let the stack see the disconnect, then stop
            try:
                await asyncio.wait_for(asyncio.shield(task), 1.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class _Stream(httpx.AsyncByteStream):
    def __init__(self, call: StackCall) -> None:
        self.call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.call.chunks():
            yield chunk

    async def aclose(self) -> None:
        await self.call.aclose()


class OptirouteTransport(httpx.AsyncBaseTransport):
    """For httpx clients: LLM calls through the stack, the rest through ``fallback``."""

    def __init__(self, app: ASGIApp, fallback: httpx.AsyncBaseTransport | None = None) -> None:
        self.app = app
        self.fallback = fallback or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = stack_path(request.url.path)
        if path is None or request.method != "POST":
            return await self.fallback.handle_async_request(request)
        call = StackCall(
            self.app, request.method, path, list(request.headers.raw), await request.aread()
        )
        status, headers = await call.start()
        return httpx.Response(status, headers=headers, stream=_Stream(call), request=request)

    async def aclose(self) -> None:
        await self.fallback.aclose()


try:  # the openai SDK 3.x builds on httpx2, an httpx fork with the same API
    import httpx2
except ImportError:  # pragma: no cover - httpx2 is optional
    httpx2 = None  # type: ignore[assignment]

if httpx2 is not None:

    class _Stream2(httpx2.AsyncByteStream):
        def __init__(self, call: StackCall) -> None:
            self.call = call

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self.call.chunks():
                yield chunk

        async def aclose(self) -> None:
            await self.call.aclose()

    class OptirouteTransport2(httpx2.AsyncBaseTransport):
        """For httpx2 clients (the openai SDK 3.x)."""

        def __init__(self, app: ASGIApp, fallback: httpx2.AsyncBaseTransport | None = None):
            self.app = app
            self.fallback = fallback or httpx2.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            path = stack_path(request.url.path)
            if path is None or request.method != "POST":
                return await self.fallback.handle_async_request(request)
            call = StackCall(
                self.app, request.method, path, list(request.headers.raw), await request.aread()
            )
            status, headers = await call.start()
            return httpx2.Response(status, headers=headers, stream=_Stream2(call), request=request)

        async def aclose(self) -> None:
            await self.fallback.aclose()
