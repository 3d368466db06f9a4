"""The cache stage's tee: the answer passes through untouched while a good one is kept."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from starlette.types import Message, Send

from ..sse import EventSplitter
from .replay import CacheEntry, StreamAssembler, completion_complete


@dataclass(slots=True)
class Shared:
    """What a single-flight leader got: a good answer, or the error to hand on."""

    entry: CacheEntry | None = None
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


class CacheTee:
    """Passes the answer through untouched while keeping a copy of a good one."""

    def __init__(self, send: Send, stream: bool, limit: int) -> None:
        self.wrapped_send = send
        self.limit = limit
        self.status = 0
        self.size = 0
        self.parts: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.assembler = StreamAssembler() if stream else None
        self.splitter = EventSplitter() if stream else None
        self.ended = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body" and self.status >= 400:
            self.parts.append(message.get("body", b""))
            self.ended = not message.get("more_body", False)
        elif message["type"] == "http.response.body" and self.status == 200:
            body = message.get("body", b"")
            self.size += len(body)
            if self.size <= self.limit:
                if self.splitter is not None and self.assembler is not None:
                    for event in self.splitter.feed(body):
                        self.assembler.feed(event)
                else:
                    self.parts.append(body)
            self.ended = not message.get("more_body", False)
        await self.wrapped_send(message)

    def error(self) -> Shared | None:
        """An error answer whole, to give waiters the same error."""
        if self.status < 400 or not self.ended:
            return None
        return Shared(status=self.status, headers=self.headers, body=b"".join(self.parts))

    def result(self) -> bytes | None:
        """The answer as chat.completion JSON, or None if it must not be stored."""
        if self.status != 200 or not self.ended or self.size > self.limit:
            return None
        if self.assembler is not None:
            if not self.assembler.complete:
                return None
            return msgspec.json.encode(self.assembler.completion())
        body = b"".join(self.parts)
        return body if completion_complete(body) is not None else None
