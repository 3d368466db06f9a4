"""A real HTTP server on 127.0.0.1 that records requests and replays provider answers.

Each provider fake (Anthropic, Ollama, TGI, Azure) gives it the routes of its wire
format and a default answer per route; a test can queue exact replies (a recorded
body, a stream split into chosen chunks, an error status) with :meth:`script`.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings
from support.serve import ServerThread


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lowercased
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Reply:
    """One answer: a JSON value, raw bytes, or a stream of chunks sent one by one."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    chunks: Sequence[bytes] | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Recorded], Reply]


class FakeProvider:
    def __init__(self, routes: Mapping[str, Handler]) -> None:
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._script: deque[Reply] = deque()
        app = Starlette(
            routes=[
                Route(path, self._endpoint(handler), methods=["POST"])
                for path, handler in routes.items()
            ]
        )
        self.server = ServerThread(app, lifespan="off")

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeProvider:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before the defaults."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def _endpoint(self, handler: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            recorded = Recorded(
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.body(),
            )
            with self._lock:
                self._requests.append(recorded)
                scripted = self._script.popleft() if self._script else None
            return _response(scripted or handler(recorded))

        return endpoint


def _response(reply: Reply) -> Response:
    if reply.chunks is not None:
        chunks = list(reply.chunks)

        async def stream() -> Any:
            for chunk in chunks:
                yield chunk

        return StreamingResponse(
            stream(), reply.status, dict(reply.headers), media_type=reply.content_type
        )
    body = reply.body if reply.body is not None else json.dumps(reply.json).encode()
    return Response(body, reply.status, dict(reply.headers), media_type=reply.content_type)


def split_every(data: bytes, size: int) -> list[bytes]:
    """A recorded stream cut into pieces of ``size`` bytes: events split mid-line."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def last_user_text(body: Any) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(
                b.get("text", "")
                for b in content
                if isinstance(b, dict) and b.get("type") == "text"
            )
    return ""


def sidecar_settings(registry_yaml: str, directory: Path, **overrides: object) -> Settings:
    """Settings for a sidecar whose registry is ``registry_yaml`` (written to ``directory``)."""
    path = directory / "registry.yaml"
    path.write_text(registry_yaml)
    options: dict[str, object] = {
        "config": str(path),
        "local_model": "off",
        "read_timeout_s": 5.0,
        "connect_timeout_s": 1.0,
        # a failure is answered at once, and scripted failures never open a circuit or
        # cool a deployment down for the tests after them
        "retry_rounds": 0,
        "retry_backoff_s": 0.0,
        "breaker_failures": 1000,
        "breaker_min_requests": 1000,
    }
    options.update(overrides)
    return Settings.from_env({}, **options)


def sidecar(registry_yaml: str, directory: Path, **overrides: object) -> ServerThread:
    """A real sidecar on 127.0.0.1 (use as a context manager)."""
    return ServerThread(create_app(sidecar_settings(registry_yaml, directory, **overrides)))
