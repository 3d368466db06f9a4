"""Assembling the stack: ingress → cache → classify → select → breaker → forward.

:class:`Gateway` owns what the stages share in one process (registry, pooled
client, circuits, cache store, metrics, the embedded local model) and builds the
pipeline on start.  :func:`wrap` mounts it in front of an existing ASGI app:
LLM routes go through the stack, everything else reaches the app untouched.
"""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING, Literal

import msgspec
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .breaker.circuit import CircuitBoard
from .breaker.middleware import BreakerMiddleware
from .cache.middleware import CacheMiddleware
from .cache.setup import build_semantic, build_store, close_store
from .cache.store import CacheStore
from .classify.middleware import ClassifyMiddleware
from .classify.setup import RouterSetup
from .client import OutboundClient
from .exchange import get_exchange
from .formats import ClientFormats, EmbeddingsEndpoint
from .forward import Forwarder
from .health import Health
from .ingress.access import Access
from .ingress.middleware import IngressMiddleware
from .ingress.tenants import TenantResolver
from .local_model import LocalModelServer, find_embedded_model
from .observe.metrics import Metrics
from .observe.request_line import flush_request_lines
from .observe.tracing import instrument
from .registry import Registry, build_registry
from .select.balance import Balancer
from .select.middleware import SelectMiddleware
from .select.policy import Selector
from .settings import Settings

if TYPE_CHECKING:
    from .cache.semantic import SemanticCache

logger = structlog.get_logger(__name__)
YOUNG_GC_THRESHOLD = 10_000  # the sidecar's own process only (see Optiroute._lifespan)


class Gateway:
    """The shared state of one process's stack; started once, stopped on shutdown."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: Registry | None = None,
        metrics: Metrics | None = None,
        store: CacheStore | None = None,
        app: ASGIApp | None = None,
        tenant_resolver: TenantResolver | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.metrics = metrics or Metrics()
        # keys, rate limits, budgets and the ledger; the resolver lets a host app name tenants
        self.access = Access(self.settings, metrics=self.metrics, tenant_resolver=tenant_resolver)
        # the exact cache's store (Redis when OPTIROUTE_REDIS_URL is set) and the semantic layer
        self.store = store if store is not None else build_store(self.settings)
        self.semantic: SemanticCache | None = None
        self.board = CircuitBoard(
            self.settings.breaker_failures,
            self.settings.breaker_cooldown_s,
            failure_rate=self.settings.breaker_failure_rate,
            window_s=self.settings.breaker_window_s,
            min_requests=self.settings.breaker_min_requests,
            half_open_probes=self.settings.breaker_half_open_probes,
            close_after=self.settings.breaker_close_after,
        )
        self.client = OutboundClient(self.settings)
        # routing: the classifier (rules, learned, llm) and what select knows of each
        # deployment (calls in flight, latency EWMA, circuits read from the board)
        self.router = RouterSetup(self.settings, metrics=self.metrics)
        self.health = Health(circuits=self.board)
        self.host_app = app  # the app that answers in forward="app" mode
        self.local_model: LocalModelServer | None = None
        self._registry = registry
        self._pipeline: ASGIApp | None = None
        self._lock = asyncio.Lock()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            raise RuntimeError("the gateway has not started")
        return self._registry

    @property
    def started(self) -> bool:
        return self._pipeline is not None

    async def start(self) -> None:
        if self._pipeline is not None:
            return
        async with self._lock:
            if self._pipeline is not None:
                return
            if self._registry is None:
                local_url = await self._start_local_model()
                self._registry = build_registry(self.settings, local_url)
            if not self._registry.models:
                logger.warning(
                    "no_models",
                    hint="install the local model or set OPENAI_API_KEY or OPTIROUTE_CONFIG",
                )
            await self.access.start()
            # build what the first request would otherwise pay for: the outbound engine
            self.client.get()
            await self.router.start()  # the learned router's weights, in a worker thread
            self.semantic = build_semantic(self.settings, self.store, metrics=self.metrics)
            if self.semantic is not None:
                self.semantic.start()  # the embedding model loads in a thread
            # Anthropic-format calls are translated in front of the pipeline; embeddings
            # take a short path of their own (optiroute_mw.formats)
            self._pipeline = ClientFormats(
                instrument(self.build(self._registry), self.settings),  # OPTIROUTE_OTEL
                max_body_bytes=self.settings.max_body_bytes,
                embeddings=EmbeddingsEndpoint(
                    self._registry,
                    self.client,
                    self.settings,
                    self.store,
                    identify=self.access.identify,
                ),
            )
            logger.info(
                "gateway_started", models=self._registry.names(), engine=self.settings.http_engine
            )

    async def _start_local_model(self) -> str | None:
        settings = self.settings
        if settings.local_url or settings.local_model == "off":
            return None
        path = settings.local_model_path or find_embedded_model()
        if path is None:
            return None
        self.local_model = LocalModelServer(
            path, threads=settings.local_threads, alias=settings.local_model_name
        )
        try:
            return await self.local_model.start()
        except Exception as exc:  # the gateway still serves its other backends
            logger.error("local_model_failed", error=str(exc)[:500])
            self.local_model = None
            return None

    def build(self, registry: Registry) -> ASGIApp:
        settings = self.settings
        selector = Selector(registry, settings, balancer=Balancer(self.health), rank_ttl_s=1.0)
        terminal: ASGIApp
        if settings.forward == "app":
            if self.host_app is None:
                raise RuntimeError("forward='app' needs the wrapped app")
            terminal = AppHandoff(self.host_app)
        else:
            terminal = BreakerMiddleware(
                self.health.track(Forwarder(registry, self.client, settings)),
                board=self.board,
                metrics=self.metrics,
                settings=settings,
                registry=registry,
            )
        app: ASGIApp = SelectMiddleware(terminal, selector=selector)
        app = ClassifyMiddleware(
            app, router=self.router.bind(registry, Forwarder(registry, self.client, settings))
        )
        if settings.cache:
            app = CacheMiddleware(
                app,
                store=self.store,
                ttl_s=settings.cache_ttl_s,
                max_entry_bytes=settings.cache_max_entry_bytes,
                baseline_price=selector.baseline_price,
                metrics=self.metrics,
                semantic=self.semantic,
            )
        return IngressMiddleware(app, settings=settings, metrics=self.metrics, access=self.access)

    async def stop(self) -> None:
        await self.access.stop()  # flushes the ledger
        if self.semantic is not None:
            await self.semantic.stop()  # saves the index
        await close_store(self.store)
        await self.client.aclose()
        if self.local_model is not None:
            await self.local_model.stop()
            self.local_model = None
        flush_request_lines()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._pipeline is None:
            await self.start()
        assert self._pipeline is not None
        await self._pipeline(scope, receive, send)


class AppHandoff:
    """forward="app": the host app answers, with the decision in request.state.optiroute."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = get_exchange(scope)
        if exchange is None or exchange.model is None:
            await self.app(scope, receive, send)
            return
        exchange.response_headers["x-optiroute-model"] = exchange.model.name
        exchange.response_headers["x-optiroute-backend"] = "app"
        body = exchange.body_for(exchange.model.upstream_name)
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, exchange.receive_replay(receive, body), send)


class Optiroute:
    """An ASGI app: LLM routes through the stack, the rest straight to the wrapped app."""

    def __init__(self, app: ASGIApp, gateway: Gateway, *, freeze_gc: bool = False) -> None:
        self.app = app
        self.gateway = gateway
        self.routes = frozenset(gateway.settings.routes)
        # only for a process of its own (the sidecar): see _lifespan
        self.freeze_gc = freeze_gc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["method"] == "POST" and self._is_llm_route(scope["path"]):
            await self.gateway(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _is_llm_route(self, path: str) -> bool:
        return path in self.routes or (path.endswith("/") and path[:-1] in self.routes)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.gateway

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await gateway.start()
                if self.freeze_gc:
                    # what is alive after start-up lives as long as the process: out of the
                    # collector's scans (a full collection with 1,000 streams in flight
                    # paused every stream for 60-140 ms)
                    gc.freeze()
                    # a call's objects are freed by reference counting, but the young
                    # generation's count follows the calls in flight: at the default 700
                    # the collector ran every ~14 calls at c=16, scanning their live
                    # objects (11 µs a call; 23 at c=64); at 10,000, 3 times in 14,600
                    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
            elif message["type"] == "lifespan.shutdown":
                await gateway.stop()
            return message

        await self.app(scope, lifespan_receive, send)


def wrap(
    app: ASGIApp,
    settings: Settings | None = None,
    *,
    forward: Literal["proxy", "app"] | None = None,
    registry: Registry | None = None,
    metrics: Metrics | None = None,
    tenant_resolver: TenantResolver | None = None,
) -> Optiroute:
    """Put the stack in front of ``app``; ``forward="app"`` lets the app answer.

    ``tenant_resolver(scope)`` may name the caller from the app's own auth (a
    :class:`~optiroute_mw.ingress.Tenant`, or None to fall back to API keys).
    """
    settings = settings or Settings.from_env()
    if forward is not None and forward != settings.forward:
        settings = msgspec.structs.replace(settings, forward=forward)
    gateway = Gateway(
        settings, registry=registry, metrics=metrics, app=app, tenant_resolver=tenant_resolver
    )
    return Optiroute(app, gateway)
