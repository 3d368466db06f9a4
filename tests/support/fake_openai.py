"""A scriptable fake of an OpenAI-compatible backend, served over real HTTP on 127.0.0.1.

Usage::

    with FakeOpenAI() as fake:
        fake.script(Fault(status=429, headers={"Retry-After": "1"}), Fault(reset_before=True))
        ...  # point a client at fake.base_url
        assert fake.hits == 3

Answers are deterministic: the assistant says ``"echo: " + <last user message>``.
Faults apply to ``/v1/chat/completions`` and ``/v1/completions`` only; ``/v1/models`` and
``/health`` always answer normally so that probes stay usable while a fault is armed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["FakeOpenAI", "Fault", "Recorded"]

# Fixed so that identical requests get byte-identical answers.
CREATED = 1_700_000_000

_Json = dict[str, Any]
_Peer = tuple[str, int]
_Reset = Callable[[Scope, Receive], Awaitable[None]]


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes
    json: Any | None  # None when the body is empty or not JSON


@dataclass(frozen=True)
class Fault:
    """How to (mis)answer one completion request. ``Fault()`` answers normally.

    Checked in this order: ``delay_s``, ``reset_before``, ``status``, ``malformed_json``;
    otherwise the request is answered, and for ``"stream": true`` requests the stream-only
    fields shape the event stream (they are ignored for plain JSON answers).
    """

    status: int | None = None  # answer with an OpenAI-style error body and this status
    headers: Mapping[str, str] = field(default_factory=dict)  # extra response headers
    delay_s: float = 0.0  # sleep before sending anything
    chunk_delay_s: float = 0.0  # stream: sleep between events
    reset_before: bool = False  # send a TCP RST instead of any response
    reset_after_chunks: int | None = None  # stream: TCP RST after this many events
    truncate_after_chunks: int | None = None  # stream: end the body cleanly after this many events
    malformed_json: bool = False  # 200 with a body that is not JSON
    malformed_sse: bool = False  # stream: a garbage `data:` event after the first one
    content: str | None = None  # the answer text instead of the echo
    mid_stream_error: bool = False  # stream: two events, then an error event and the end
    message: str | None = None  # the error message with ``status`` (default: a generic one)


_NORMAL = Fault()

# (type, code) of the error body per status; other statuses fall back by class.
_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def _error_body(status: int, message: str) -> _Json:
    kind, code = _ERROR_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", str(status))
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        _error_body(status, message), status_code=status, headers=dict(headers or {})
    )


def _sse(data: _Json) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _text_of(content: Any) -> str:
    """Message content as plain text: a string, or the text parts of a multimodal list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def _words(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class _Answer:
    """The deterministic answer to one chat (``chat=True``) or legacy completion request."""

    chat: bool
    id: str
    model: str
    content: str
    prompt_tokens: int

    @classmethod
    def for_request(
        cls, payload: _Json, *, chat: bool, number: int, content: str | None
    ) -> _Answer:
        if chat:
            messages = [m for m in payload.get("messages") or [] if isinstance(m, dict)]
            said = next(
                (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
                "",
            )
            prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in messages)
        else:
            prompt = payload.get("prompt", "")
            said = (
                " ".join(p for p in prompt if isinstance(p, str))
                if isinstance(prompt, list)
                else str(prompt)
            )
            prompt_tokens = _words(said)
        return cls(
            chat=chat,
            id=f"{'chatcmpl' if chat else 'cmpl'}-fake-{number}",
            model=str(payload.get("model") or "fake-model"),
            content=f"echo: {said}" if content is None else content,
            prompt_tokens=prompt_tokens,
        )

    @property
    def usage(self) -> _Json:
        completion = _words(self.content)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def _envelope(self, obj: str, choices: list[_Json], usage: _Json | None = None) -> _Json:
        out: _Json = {
            "id": self.id,
            "object": obj,
            "created": CREATED,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            out["usage"] = usage
        return out

    def body(self) -> _Json:
        choice: _Json = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": self.content}
        else:
            choice["text"] = self.content
        return self._envelope(
            "chat.completion" if self.chat else "text_completion", [choice], self.usage
        )

    def _chunk_choice(self, delta: _Json, finish_reason: str | None = None) -> _Json:
        # Legacy completions stream plain text where chat streams a delta object.
        body = {"delta": delta} if self.chat else {"text": delta.get("content", "")}
        return {"index": 0, **body, "finish_reason": finish_reason, "logprobs": None}

    def chunks(self, include_usage: bool) -> list[_Json]:
        words = self.content.split()
        pieces = [w + " " for w in words[:-1]] + words[-1:]
        deltas: list[_Json] = [{"role": "assistant", "content": ""}] if self.chat else []
        deltas += [{"content": p} for p in pieces]
        choices = [self._chunk_choice(d) for d in deltas]
        choices.append(self._chunk_choice({}, "stop"))
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        out = [self._envelope(obj, [c]) for c in choices]
        if include_usage:
            out.append(self._envelope(obj, [], self.usage))
        return out


def _plan_stream(chunks: list[_Json], fault: Fault) -> tuple[list[bytes], bool]:
    """The SSE events to send for `fault`, and whether to reset the connection after them."""
    events = [*map(_sse, chunks), b"data: [DONE]\n\n"]
    if fault.malformed_sse:
        events.insert(1, b"data: {this is not json\n\n")
    if fault.mid_stream_error:
        events = [*events[:2], _sse(_error_body(500, "scripted mid-stream failure"))]
    if fault.truncate_after_chunks is not None:
        events = events[: fault.truncate_after_chunks]
    if fault.reset_after_chunks is not None:
        return events[: fault.reset_after_chunks], True
    return events, False


class _EventStream(Response):
    """Sends each SSE event as its own body chunk, so faults can land between chunks."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: list[bytes],
        headers: Mapping[str, str],
        chunk_delay_s: float,
        reset: _Reset | None,
    ) -> None:
        # Response.__init__ would add a Content-Length; a stream must go out chunked.
        self.status_code = 200
        self.background = None
        self.events = events
        self.chunk_delay_s = chunk_delay_s
        self.reset = reset
        self.init_headers({"cache-control": "no-cache", **headers})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for i, event in enumerate(self.events):
            if i and self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if self.reset is not None:
            await self.reset(scope, receive)
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class _ResetOnly(Response):
    """Sends nothing at all: the connection is reset instead."""

    def __init__(self, reset: _Reset) -> None:
        self.reset = reset

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.reset(scope, receive)


class _TrackedH11(H11Protocol):
    """uvicorn's h11 protocol, remembering each connection's transport by peer address.

    uvicorn puts no transport in the ASGI scope, and a genuine reset needs one; the
    peer address is what the scope's "client" holds.
    """

    transports: dict[_Peer, asyncio.Transport]  # bound per fake by a subclass

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.client is not None:
            self.transports[self.client] = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.transports.pop(self.client, None)
        super().connection_lost(exc)


class FakeOpenAI:
    """A fake OpenAI-compatible backend on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, models: Sequence[str] = ("fake-model",)) -> None:
        self.models = tuple(models)
        self.port = 0
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._script: deque[Fault] = deque()
        self._always: Fault | None = None
        self._hits = 0
        # Touched only on the server's event loop.
        self._transports: dict[_Peer, asyncio.Transport] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )

    # -- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 10.0) -> FakeOpenAI:
        """Serve in a background thread; return once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already running")
        # Binding here, not in uvicorn, gives the port before the thread starts and no race for it.
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it keep-alive requests stall ~40 ms on Nagle and delayed ACKs.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        protocol = type("_FakeH11", (_TrackedH11,), {"transports": self._transports})
        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            http=protocol,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=self._serve, args=(server, sock), name=f"fake-openai-{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeOpenAI failed to start")
            time.sleep(0.005)
        socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s).close()
        return self

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        asyncio.run(main())

    def stop(self) -> None:
        """Shut down without waiting for requests still in flight (e.g. a long `delay_s`)."""
        server, thread, loop = self._server, self._thread, self._loop
        if server is None or thread is None:
            return
        server.should_exit = True
        server.force_exit = True
        if loop is not None and thread.is_alive():
            # Open connections would otherwise hold up the server's wait_closed().
            loop.call_soon_threadsafe(self._abort_all)
        thread.join(timeout=5)
        self._server = self._thread = self._loop = None

    def _abort_all(self) -> None:
        for transport in list(self._transports.values()):
            transport.abort()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting and recordings ------------------------------------------------------

    def script(self, *steps: Fault) -> None:
        """Queue faults, used one per completion request, in order, before `always`."""
        with self._lock:
            self._script.extend(steps)

    def always(self, fault: Fault | None) -> None:
        """Apply `fault` to every completion request the script does not cover; None stops it."""
        with self._lock:
            self._always = fault

    def reset(self) -> None:
        """Forget recordings, hits, the script and `always`."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._always = None
            self._hits = 0

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def hits(self) -> int:
        """How many chat/completions requests arrived (faulted ones included)."""
        with self._lock:
            return self._hits

    def _take_fault(self) -> tuple[Fault, int]:
        """Count a completion request; return its fault and its 1-based number."""
        with self._lock:
            self._hits += 1
            fault = self._script.popleft() if self._script else self._always
            return fault or _NORMAL, self._hits

    # -- endpoints ---------------------------------------------------------------------

    async def _record(self, request: Request) -> Recorded:
        body = await request.body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        recorded = Recorded(request.method, request.url.path, headers, body, parsed)
        with self._lock:
            self._requests.append(recorded)
        return recorded

    async def _chat(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def _completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: Request, *, chat: bool) -> Response:
        recorded = await self._record(request)
        fault, number = self._take_fault()
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.reset_before:
            return _ResetOnly(self._reset_connection)
        if fault.status is not None:
            return _error(
                fault.status,
                fault.message or f"scripted failure with status {fault.status}",
                fault.headers,
            )
        if fault.malformed_json:
            return Response(
                b"{this is not json", media_type="application/json", headers=dict(fault.headers)
            )
        payload = recorded.json
        if not isinstance(payload, dict):
            return _error(400, "the request body must be a JSON object")
        answer = _Answer.for_request(payload, chat=chat, number=number, content=fault.content)
        if not payload.get("stream"):
            return JSONResponse(answer.body(), headers=dict(fault.headers))
        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        events, then_reset = _plan_stream(answer.chunks(include_usage), fault)
        reset = self._reset_connection if then_reset else None
        return _EventStream(events, fault.headers, fault.chunk_delay_s, reset)

    async def _list_models(self, request: Request) -> Response:
        await self._record(request)
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "fake"}
            for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _health(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"status": "ok"})

    async def _reset_connection(self, scope: Scope, receive: Receive) -> None:
        transport = self._transports[tuple(scope["client"])]
        # Let what was already written reach the socket (abort() drops asyncio's own buffer),
        # but give up after a second in case the client has stopped reading.
        for _ in range(1000):
            if not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.001)
        # A zero linger time makes the close send an RST rather than a FIN.
        transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        transport.abort()
        # Wait for uvicorn to see the loss, or it reports an unfinished response.
        while (await receive())["type"] != "http.disconnect":
            pass
