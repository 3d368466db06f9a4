"""What the stack itself costs per call, in-process: no sockets, a canned backend.

The sidecar's app (``server.create_app``) with its outbound engine swapped for one that
answers at once from memory, called one request after another on uvloop: every stage
as shipped (ingress, exact-cache miss and store, rule classifier, selector, breaker,
forward, metrics, the JSON log line into /dev/null, the ledger).  What is left of a
real call is the HTTP server and client (``bench/overhead.py`` measures those too).
Every prompt is new, so each call is a cache miss.  Prints microseconds per call
(best and median of ``--rounds``); ``--profile`` prints cProfile's top functions
instead.  Numbers only: nothing is asserted.

    .venv/bin/python bench/stack_cpu.py [--calls 5000] [--stream] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

REGISTRY = """\
replace_defaults: true
backends:
  - {name: mock, base_url: "http://127.0.0.1:9/v1"}
models:
  - {name: mock-small, backend: mock, tier: simple, input_per_mtok: 0.1, output_per_mtok: 0.4}
  - {name: mock-large, backend: mock, tier: complex, input_per_mtok: 2.5, output_per_mtok: 10}
"""
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
HEAD = {"id": "chatcmpl-mock", "created": 1, "model": "mock-model"}


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _stream_body() -> bytes:
    chunk = {**HEAD, "object": "chat.completion.chunk"}
    deltas = [{"role": "assistant", "content": ""}] + [
        {"content": part} for part in ("The", " answer", " is", " 4.")
    ]
    events = [_event({**chunk, "choices": [{"index": 0, "delta": d}]}) for d in deltas]
    finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
    events.append(_event({**chunk, "choices": [finish]}))
    events.append(_event({**chunk, "choices": [], "usage": USAGE}))
    return b"".join(events) + b"data: [DONE]\n\n"


JSON_BODY = json.dumps(
    {
        **HEAD,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The answer is 4."},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
).encode()
STREAM_BODY = _stream_body()


class CannedAnswer:
    """An Upstream whose whole body is already here (one chunk)."""

    status = 200

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.left = [body]

    def header(self, name: str) -> str | None:
        return None

    async def read(self) -> bytes:
        return self.body

    async def next_chunk(self) -> bytes:
        return self.left.pop() if self.left else b""

    async def aclose(self) -> None:
        return None


class CannedEngine:
    async def send(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes, timeouts: Any
    ) -> CannedAnswer:
        return CannedAnswer(STREAM_BODY if b'"stream":true' in content else JSON_BODY)

    async def aclose(self) -> None:
        return None


async def run(args: argparse.Namespace, log: TextIO) -> None:
    from optiroute_mw.observe.logging import configure
    from optiroute_mw.server import create_app
    from optiroute_mw.settings import Settings

    configure("info", "json", log)  # the request line is written, to /dev/null
    app = create_app(Settings.from_env())
    gateway = app.gateway
    await gateway.start()
    gateway.client._engine = CannedEngine()
    stream = b',"stream":true' if args.stream else b""

    async def call(i: int) -> None:
        body = b'{"model":"mock-large"%s,"messages":[{"role":"user","content":"what is 2+2 #%d"}]}'
        body = body % (stream, i)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8080),
            "state": {},
        }
        replayed = False

        async def receive() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # never disconnects
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise SystemExit(f"the stack answered {sent[0]['status']}: {sent[-1].get('body')!r}")

    serial = iter(range(10**9))
    for _ in range(min(2000, args.calls)):  # warm-up: imports, first-time set-up
        await call(next(serial))
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.calls):
            await call(next(serial))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    per_call = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        for _ in range(args.calls):
            await call(next(serial))
        per_call.append((time.perf_counter() - started) / args.calls * 1e6)
    kind = "stream" if args.stream else "json"
    print(
        f"stack per {kind} call: best {min(per_call):.1f} µs, median "
        f"{statistics.median(per_call):.1f} µs ({args.rounds} rounds of {args.calls})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stream", action="store_true", help="streamed answers (SSE)")
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "registry.yaml"
        config.write_text(REGISTRY)
        os.environ.update(
            OPTIROUTE_CONFIG=str(config),
            OPTIROUTE_DATA_DIR=tmp,
            OPTIROUTE_LOCAL_MODEL="off",
            OPTIROUTE_SEMANTIC="false",
            OPTIROUTE_ROUTER="rules",
        )
        with open(os.devnull, "w") as log:
            try:
                import uvloop

                uvloop.run(run(args, log))
            except ImportError:
                asyncio.run(run(args, log))


if __name__ == "__main__":
    sys.exit(main())
