"""Cache: answer repeated requests at once; on a miss, tee the answer and keep it.

A hit is served as JSON or as a replayed SSE stream, whichever the caller asked
for, however it was stored.  An answer is stored only when it completed well
(status 200, every choice finished, a stream ended with ``[DONE]``).  The store
failing is a miss, logged and counted, never an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import send_json
from ..exchange import Exchange, ensure_exchange, header
from ..observe.metrics import Metrics
from ..sse import EventSplitter
from .keys import exact_key
from .replay import CacheEntry, StreamAssembler, as_sse, completion_complete
from .store import CacheStore, MemoryStore

logger = structlog.get_logger(__name__)
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
BaselinePrice = Callable[[str], "tuple[float, float] | None"]
_entry_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(CacheEntry)


class CacheMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        store: CacheStore | None = None,
        ttl_s: float = 3600.0,
        max_entry_bytes: int = 1024 * 1024,
        baseline_price: BaselinePrice | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.store = store if store is not None else MemoryStore()  # an empty store is falsy
        self.ttl_s = ttl_s
        self.max_entry_bytes = max_entry_bytes
        self.baseline_price = baseline_price
        self.metrics = metrics
        self.flights: dict[str, asyncio.Future[Shared | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange, receive = await ensure_exchange(scope, receive)
        if exchange.kind != "chat" or exchange.cache_control == "bypass":
            exchange.cache_status = "bypass" if exchange.cache_control == "bypass" else "off"
            await self.app(scope, receive, send)
            return
        key = exact_key(exchange.tenant, exchange.kind, exchange.raw())
        if exchange.cache_control == "use":
            entry = await self._lookup(key)
            if entry is not None:
                await self._serve(exchange, entry, send)
                return
        exchange.cache_status = "miss" if exchange.cache_control == "use" else "refresh"
        # single-flight: identical requests in flight at once make one backend call
        leader = self.flights.get(key)
        if leader is not None:
            shared = await asyncio.shield(leader)
            if shared is not None:
                await self._serve_shared(exchange, shared, send)
                return
        flight: asyncio.Future[Shared | None] = asyncio.get_running_loop().create_future()
        self.flights[key] = flight
        shared = None
        try:
            tee = CacheTee(send, exchange.stream, self.max_entry_bytes)
            await self.app(scope, receive, tee.send)
            completion = tee.result()
            if completion is not None and exchange.model is not None:
                entry = CacheEntry(
                    completion, exchange.model.name, exchange.model.backend, time.time()
                )
                shared = Shared(entry=entry)
                await self._store(key, entry, self._ttl(scope))
            else:
                shared = tee.error()
                if self.metrics:
                    self.metrics.cache_events.labels("exact", "not_stored").inc()
        finally:
            if self.flights.get(key) is flight:
                del self.flights[key]
            flight.set_result(shared)  # None: waiters make their own call

    def _ttl(self, scope: Scope) -> float:
        value = header(scope, b"x-optiroute-cache-ttl")
        try:
            return float(value) if value and float(value) > 0 else self.ttl_s
        except ValueError:
            return self.ttl_s

    async def _lookup(self, key: str) -> CacheEntry | None:
        try:
            raw = await self.store.get(key)
            entry = _entry_decoder.decode(raw) if raw is not None else None
        except Exception as exc:  # a side system: fail open
            logger.warning("cache_lookup_failed", error=type(exc).__name__)
            if self.metrics:
                self.metrics.side_errors.labels("cache").inc()
            return None
        if self.metrics:
            self.metrics.cache_events.labels("exact", "hit" if entry else "miss").inc()
        return entry

    async def _store(self, key: str, entry: CacheEntry, ttl_s: float) -> None:
        try:
            await self.store.set(key, _entry_encoder.encode(entry), ttl_s)
        except Exception as exc:
            logger.warning("cache_store_failed", error=type(exc).__name__)
            if self.metrics:
                self.metrics.side_errors.labels("cache").inc()
            return
        if self.metrics:
            self.metrics.cache_events.labels("exact", "stored").inc()

    async def _serve_shared(self, exchange: Exchange, shared: Shared, send: Send) -> None:
        if self.metrics:
            self.metrics.cache_events.labels("inflight", "shared").inc()
        if shared.entry is not None:
            await self._serve(exchange, shared.entry, send, "hit-inflight")
            return
        exchange.cache_status = "hit-inflight"
        await send(
            {
                "type": "http.response.start",
                "status": shared.status,
                "headers": list(shared.headers),
            }
        )
        await send({"type": "http.response.body", "body": shared.body, "more_body": False})

    async def _serve(
        self, exchange: Exchange, entry: CacheEntry, send: Send, status: str = "hit-exact"
    ) -> None:
        exchange.cache_status = status
        exchange.response_headers["x-optiroute-model"] = entry.model
        exchange.response_headers["x-optiroute-backend"] = "cache"
        completion = completion_complete(entry.completion)
        usage = completion.usage if completion else None
        if self.baseline_price is not None:
            exchange.baseline_price = self.baseline_price(exchange.requested_model)
        if usage is not None:
            exchange.account(usage.prompt_tokens, usage.completion_tokens)  # no model: cost 0
        if not exchange.stream:
            await send_json(send, 200, entry.completion)
            return
        body = as_sse(entry.completion, exchange.request.include_usage)
        await send({"type": "http.response.start", "status": 200, "headers": list(SSE_HEADERS)})
        await send({"type": "http.response.body", "body": body, "more_body": False})


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
