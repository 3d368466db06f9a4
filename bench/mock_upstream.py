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


def _sse_events() -> list[bytes]:
    created = int(time.time())

    def chunk(
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

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": part}) for part in CONTENT_PARTS]
    events.append(chunk({}, finish="stop"))
    events.append(
        chunk(
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
SSE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n" + _chunked(_sse_events())
)
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


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, host, port, backlog=1024, reuse_address=True)
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
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
