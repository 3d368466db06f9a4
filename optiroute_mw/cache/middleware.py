"""Cache: answer repeated requests at once; on a miss, tee the answer and keep it.

Two layers: the exact key (:mod:`.keys`) first, then, when one is configured, the
semantic layer (:mod:`.semantic`: same partition, similar last user message, guard
passed).  A hit is served as JSON or as a replayed SSE stream, whichever the caller
asked for, however it was stored.  An answer is stored only when it completed well
(status 200, every choice finished, a stream ended with ``[DONE]``).  A store or model
failing is a miss, logged and counted, never an error.  ``x-optiroute-cache``
``bypass`` skips both layers, ``refresh`` skips both lookups and stores the new answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import send_json
from ..exchange import Exchange, ensure_exchange, header
from ..observe.metrics import Metrics
from .keys import exact_key
from .replay import CacheEntry, as_sse, completion_complete
from .store import CacheStore, MemoryStore, StoreUnavailable
from .tee import CacheTee, Shared

if TYPE_CHECKING:  # numpy and usearch are optional: imported only with the semantic layer
    from .semantic import Probe, SemanticCache

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
        semantic: SemanticCache | None = None,
    ) -> None:
        self.app = app
        self.semantic = semantic
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
        # the semantic partition key is only worth computing once the exact layer missed
        semantic = self.semantic if self.semantic is not None and self.semantic.active else None
        probe = semantic.probe(exchange.tenant, exchange.kind, exchange.raw()) if semantic else None
        if probe is not None:
            _reuse_vector(exchange, probe)
        if exchange.cache_control == "use" and semantic is not None and probe is not None:
            hit = await self._lookup_semantic(semantic, probe)
            _share_vector(exchange, probe)
            if hit is not None:
                entry, similarity = hit
                exchange.response_headers["x-optiroute-cache-similarity"] = f"{similarity:.4f}"
                await self._serve(exchange, entry, send, "hit-semantic")
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
                ttl_s = self._ttl(scope)
                if await self._store(key, entry, ttl_s) and semantic and probe:
                    await self._remember(semantic, probe, key, ttl_s)
            else:
                shared = tee.error()
                if self.metrics:
                    self.metrics.cache_event("exact", "not_stored")
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
            if not isinstance(exc, StoreUnavailable):  # the store logs its own outages
                logger.warning("cache_lookup_failed", error=type(exc).__name__)
            if self.metrics:
                self.metrics.side_errors.labels("cache").inc()
            return None
        if self.metrics:
            self.metrics.cache_event("exact", "hit" if entry else "miss")
        return entry

    async def _store(self, key: str, entry: CacheEntry, ttl_s: float) -> bool:
        try:
            await self.store.set(key, _entry_encoder.encode(entry), ttl_s)
        except Exception as exc:
            if not isinstance(exc, StoreUnavailable):
                logger.warning("cache_store_failed", error=type(exc).__name__)
            if self.metrics:
                self.metrics.side_errors.labels("cache").inc()
            return False
        if self.metrics:
            self.metrics.cache_event("exact", "stored")
        return True

    async def _lookup_semantic(
        self, semantic: SemanticCache, probe: Probe
    ) -> tuple[CacheEntry, float] | None:
        try:
            hit = await semantic.lookup(probe)
            entry = _entry_decoder.decode(hit.entry) if hit is not None else None
        except Exception as exc:  # the model or the store failing is a miss
            if not isinstance(exc, StoreUnavailable):
                logger.warning("semantic_lookup_failed", error=type(exc).__name__)
            if self.metrics:
                self.metrics.side_errors.labels("semantic").inc()
            return None
        if self.metrics:
            self.metrics.cache_event("semantic", "hit" if entry else "miss")
        if hit is None or entry is None:
            return None
        if self.metrics:
            self.metrics.cache_similarity.observe(hit.similarity)
        return entry, hit.similarity

    async def _remember(
        self, semantic: SemanticCache, probe: Probe, key: str, ttl_s: float
    ) -> None:
        try:
            await semantic.remember(probe, key, ttl_s)
        except Exception as exc:
            if not isinstance(exc, StoreUnavailable):
                logger.warning("semantic_store_failed", error=type(exc).__name__)
            if self.metrics:
                self.metrics.side_errors.labels("semantic").inc()
            return
        if self.metrics:
            self.metrics.cache_event("semantic", "stored")

    async def _serve_shared(self, exchange: Exchange, shared: Shared, send: Send) -> None:
        if self.metrics:
            self.metrics.cache_event("inflight", "shared")
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
            if self.metrics and exchange.baseline_cost_usd:
                layer = status.removeprefix("hit-")
                self.metrics.cache_saved.labels(layer).inc(exchange.baseline_cost_usd)
        if not exchange.stream:
            await send_json(send, 200, entry.completion)
            return
        body = as_sse(entry.completion, exchange.request.include_usage)
        await send({"type": "http.response.start", "status": 200, "headers": list(SSE_HEADERS)})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _reuse_vector(exchange: Exchange, probe: Probe) -> None:
    """Take the request's embedding from the Exchange when a stage already made it."""
    if exchange.embedding is not None and exchange.embedding_text == probe.text:
        probe.vector = exchange.embedding


def _share_vector(exchange: Exchange, probe: Probe) -> None:
    """Leave the embedding on the Exchange for the store after the answer, and any later stage."""
    if probe.vector is not None and exchange.embedding is None:
        exchange.embedding, exchange.embedding_text = probe.vector, probe.text
