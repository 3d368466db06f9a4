"""A fast OpenAI-compatible mock upstream for benchmarks.

A bare asyncio protocol (on uvloop when it is installed) speaking just enough
HTTP/1.1 with keep-alive and pipelining.  Every answer is prebuilt bytes, so a
request costs a header scan and one ``transport.write``:

* ``POST .../chat/completions`` (or ``.../completions``): a chat.completion JSON
  with usage, or, when the body asks for ``"stream": true``, an SSE answer in
  chunked encoding: a role chunk, a few content chunks, a finish chunk, a usage
  chunk (``choices: []``) and ``data: [DONE]``, all in one write.
* ``GET /health`` or ``/healthz``: ``ok``.  ``GET .../models``: a model list.
* anything else: 404.

Run it with ``python bench/mock_upstream.py --port N``; ``--cpu K`` pins it to a core.

``--stream-chunks K --stream-interval-ms D`` makes streams slow, as a model is: the
role chunk at once, then K content chunks D ms apart (timers on the event loop, which
never blocks), then the finish and usage chunks and ``data: [DONE]``.  Without them
streams are answered in one write as above.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from functools import partial

MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
MODEL = "mock-model"
CONTENT_PARTS = ["The", " answer", " is", " 4."]


def _response(status: str, content_type: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\n"
        b"content-type: " + content_type + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


def _json_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(CONTENT_PARTS)},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        },
        separators=(",", ":"),
    ).encode()


def _sse_chunk(
    created: int,
    delta: dict[str, str],
    finish: str | None = None,
    choices: bool = True,
    usage: dict[str, int] | None = None,
) -> bytes:
    event: dict[str, object] = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if choices
        else [],
    }
    if usage is not None:
        event["usage"] = usage
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def _sse_events() -> list[bytes]:
    created = int(time.time())
    events = [_sse_chunk(created, {"role": "assistant", "content": ""})]
    events += [_sse_chunk(created, {"content": part}) for part in CONTENT_PARTS]
    events.append(_sse_chunk(created, {}, finish="stop"))
    events.append(
        _sse_chunk(
            created,
            {},
            choices=False,
            usage={"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        )
    )
    events.append(b"data: [DONE]\n\n")
    return events


def _chunked(parts: list[bytes]) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return out + b"0\r\n\r\n"


JSON_RESPONSE = _response("200 OK", b"application/json", _json_body())
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
SSE_RESPONSE = SSE_HEAD + _chunked(_sse_events())
HEALTH_RESPONSE = _response("200 OK", b"text/plain", b"ok")
MODELS_RESPONSE = _response(
    "200 OK",
    b"application/json",
    json.dumps(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "mock"}]}
    ).encode(),
)
NOT_FOUND = _response(
    "404 Not Found",
    b"application/json",
    b'{"error":{"message":"not found","type":"invalid_request_error"}}',
)
BAD_REQUEST = _response("400 Bad Request", b"text/plain", b"bad request", b"connection: close\r\n")


class MockProtocol(asyncio.Protocol):
    __slots__ = ("buf", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out: list[bytes] = []
        while buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    return self._fail(out)
                break
            head = buf[:end]
            length = 0
            close = False
            lines = head.split(b"\r\n")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        return self._fail(out)
                elif name == b"transfer-encoding":
                    return self._fail(out)  # clients of this mock send content-length
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length < 0 or length > MAX_BODY:
                return self._fail(out)
            start = end + 4
            if len(buf) - start < length:
                break
            body = buf[start : start + length]
            buf = buf[start + length :]
            method, _, rest = lines[0].partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            out.append(self._answer(method, path, body))
            if close:
                self.transport.write(b"".join(out))  # type: ignore[union-attr]
                self.transport.close()  # type: ignore[union-attr]
                self.buf = b""
                return
        self.buf = buf
        if out and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    @staticmethod
    def _answer(method: bytes, path: bytes, body: bytes) -> bytes:
        if method == b"POST" and path.endswith(b"completions"):
            return SSE_RESPONSE if STREAM_RE.search(body) else JSON_RESPONSE
        if method == b"GET":
            if path in (b"/health", b"/healthz"):
                return HEALTH_RESPONSE
            if path.endswith(b"/models"):
                return MODELS_RESPONSE
        return NOT_FOUND

    def _fail(self, out: list[bytes]) -> None:
        if self.transport is not None:
            self.transport.write(b"".join(out) + BAD_REQUEST)
            self.transport.close()
        self.buf = b""


class SlowStream:
    """The prebuilt pieces of a slow stream: a head with the role chunk, ``chunks``
    content chunks sent ``interval_ms`` apart, and a tail (finish, usage, [DONE])."""

    def __init__(self, chunks: int, interval_ms: float) -> None:
        created = int(time.time())
        self.interval = interval_ms / 1000
        role = _sse_chunk(created, {"role": "assistant", "content": ""})
        self.head = SSE_HEAD + _frame(role)
        self.parts = [_frame(_sse_chunk(created, {"content": f" w{i}"})) for i in range(chunks)]
        usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
        finish = _sse_chunk(created, {}, finish="stop")
        final = _sse_chunk(created, {}, choices=False, usage=usage)
        self.tail = _chunked([finish, final, b"data: [DONE]\n\n"])


def _frame(part: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(part), part)


class SlowStreamProtocol(MockProtocol):
    """A MockProtocol whose streams trickle out on loop timers (one pending timer per
    connection).  Requests pipelined behind a slow stream wait in ``backlog`` so the
    answers keep their order.  A ``connection: close`` request is answered with the
    head only (the clients of this mode keep connections alive)."""

    __slots__ = ("backlog", "sent", "started", "stream", "streaming", "timer")

    def __init__(self, stream: SlowStream) -> None:
        super().__init__()
        self.stream = stream
        self.streaming = False
        self.backlog: list[bytes | None] = []  # None: another slow stream
        self.timer: asyncio.TimerHandle | None = None
        self.sent = 0
        self.started = 0.0

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        super().connection_lost(exc)

    def _answer(self, method: bytes, path: bytes, body: bytes) -> bytes:  # type: ignore[override]
        slow = method == b"POST" and path.endswith(b"completions") and STREAM_RE.search(body)
        answer = None if slow else MockProtocol._answer(method, path, body)
        if self.streaming:
            self.backlog.append(answer)
            return b""
        # the caller writes the head in order with any answers before it
        return self._begin() if answer is None else answer

    def _begin(self) -> bytes:
        if not self.stream.parts:
            return self.stream.head + self.stream.tail
        self.streaming = True
        self.sent = 0
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.timer = loop.call_at(self.started + self.stream.interval, self._tick)
        return self.stream.head

    def _tick(self) -> None:
        if self.transport is None:
            return
        parts = self.stream.parts
        self.sent += 1
        if self.sent < len(parts):
            self.transport.write(parts[self.sent - 1])
            # absolute times: a late tick does not push the later chunks back
            when = self.started + (self.sent + 1) * self.stream.interval
            self.timer = asyncio.get_running_loop().call_at(when, self._tick)
            return
        self.transport.write(parts[-1] + self.stream.tail)
        self.timer = None
        self.streaming = False
        self._drain()

    def _drain(self) -> None:
        out: list[bytes] = []
        while self.backlog and not self.streaming:
            answer = self.backlog.pop(0)
            out.append(self._begin() if answer is None else answer)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int, slow: SlowStream | None = None) -> None:
    loop = asyncio.get_running_loop()
    factory: Callable[[], asyncio.Protocol] = MockProtocol
    if slow is not None:
        factory = partial(SlowStreamProtocol, slow)
    server = await loop.create_server(factory, host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock upstream on http://{host}:{port}/v1", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fast OpenAI-compatible mock upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9009)
    parser.add_argument("--cpu", type=int, help="pin the process to this core")
    parser.add_argument(
        "--stream-chunks",
        type=int,
        help="slow streams: this many content chunks, --stream-interval-ms apart "
        "(default: every stream in one write)",
    )
    parser.add_argument(
        "--stream-interval-ms",
        type=float,
        default=200.0,
        help="gap between the content chunks of a slow stream (default 200)",
    )
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    slow = None
    if args.stream_chunks is not None:
        if args.stream_chunks < 0 or args.stream_interval_ms < 0:
            parser.error("--stream-chunks and --stream-interval-ms must not be negative")
        slow = SlowStream(args.stream_chunks, args.stream_interval_ms)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, slow))
    else:
        uvloop.run(serve(args.host, args.port, slow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
