"""OpenTelemetry traces: one span per request and per stage, GenAI conventions.

Optional (``pip install 'optiroute-mw[otel]'``) and off unless
``OPTIROUTE_OTEL=on``: when off, nothing here is imported and the pipeline is the
same objects as without this module; the forward stage only checks :data:`ACTIVE`.

When on, :func:`instrument` puts a span around every stage of a built pipeline
(each stage keeps its inner app in ``.app``, read at call time, so a wrapper is
slipped in between): the request span (SERVER, a child of the caller's
``traceparent``), ``optiroute.<stage>`` spans inside it, and one CLIENT span per
backend call, whose context goes to the backend in a ``traceparent`` header.
Request and backend spans carry the GenAI semantic-convention attributes
(``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``, ``gen_ai.system`` /
``gen_ai.provider.name``, …) plus ``optiroute.*`` ones (tier, cache, cost).

Spans go to the global tracer provider; if the application configured none, the
SDK's is set up with ``OTEL_*`` variables (``OTEL_TRACES_EXPORTER=console``, or
OTLP when ``opentelemetry-exporter-otlp`` is installed).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from ..exchange import Exchange, get_exchange
from ..settings import Settings

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

logger = structlog.get_logger(__name__)
ACTIVE = False  # some pipeline in this process is traced: outbound calls carry context
STAGES = {
    "IngressMiddleware": "ingress",
    "CacheMiddleware": "cache",
    "ClassifyMiddleware": "classify",
    "SelectMiddleware": "select",
    "BreakerMiddleware": "breaker",
    "Forwarder": "forward",
    "AppHandoff": "app",
}
OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
PROVIDERS = {"azure": "azure.ai.openai", "huggingface": "huggingface", "ollama": "ollama"}


def inject(headers: MutableMapping[str, str]) -> None:
    """Put the current span's context (``traceparent``) on an outbound request."""
    from opentelemetry import propagate

    propagate.inject(headers)


def instrument(
    app: ASGIApp, settings: Settings, tracer_provider: TracerProvider | None = None
) -> ASGIApp:
    """The pipeline with spans when ``OPTIROUTE_OTEL=on``, else ``app`` itself."""
    global ACTIVE
    if settings.otel != "on":
        return app
    try:
        from opentelemetry import trace
    except ImportError:
        logger.error("otel_unavailable", hint="pip install 'optiroute-mw[otel]'")
        return app
    if tracer_provider is None:
        _ensure_provider()
    tracer = trace.get_tracer("optiroute_mw", tracer_provider=tracer_provider)
    providers: dict[str, tuple[str, str | None, int | None]] = {}
    node: Any = app
    for _ in range(32):  # other wrappers between stages are passed over, not traced
        inner = getattr(node, "app", None)
        if not callable(inner):
            break
        stage = STAGES.get(type(inner).__name__)
        if stage == "forward":
            for name, backend in inner.registry.backends.items():
                url = urlsplit(backend.base_url)
                provider = PROVIDERS.get(backend.adapter, backend.adapter)
                providers[name] = (provider, url.hostname, url.port)
            node.app = BackendSpan(inner, tracer, providers)
        elif stage is not None:
            node.app = StageSpan(inner, tracer, stage)
        if stage in ("forward", "app"):
            break  # the terminal: past it is the host's app
        node = inner
    ACTIVE = True
    root = STAGES.get(type(app).__name__)
    return RequestSpan(StageSpan(app, tracer, root) if root else app, tracer, providers)


def _ensure_provider() -> None:
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return  # the application (or opentelemetry-instrument) set one up
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        logger.warning("otel_no_sdk", hint="spans are dropped: install opentelemetry-sdk")
        return
    service = os.environ.get("OTEL_SERVICE_NAME", "optiroute-mw")
    provider = SdkProvider(resource=Resource.create({"service.name": service}))
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    exporter: Any = None
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        try:
            module = importlib.import_module(
                "opentelemetry.exporter.otlp.proto.http.trace_exporter"
            )
            exporter = module.OTLPSpanExporter()
        except ImportError:
            logger.warning(
                "otel_no_exporter", hint="pip install opentelemetry-exporter-otlp-proto-http"
            )
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def _header_getter() -> Any:
    from opentelemetry.propagators.textmap import Getter

    class ScopeHeaders(Getter[Scope]):
        def get(self, carrier: Scope, key: str) -> list[str] | None:
            name = key.lower().encode("latin-1")
            found = [v.decode("latin-1") for k, v in carrier.get("headers", ()) if k == name]
            return found or None

        def keys(self, carrier: Scope) -> list[str]:
            return [k.decode("latin-1") for k, _ in carrier.get("headers", ())]

    return ScopeHeaders()


def _request_attributes(span: Span, exchange: Exchange) -> None:
    request = exchange.request
    span.set_attribute("gen_ai.operation.name", OPERATIONS.get(exchange.kind, exchange.kind))
    span.set_attribute("gen_ai.request.model", exchange.requested_model)
    for name in ("max_tokens", "temperature", "top_p", "seed"):
        value = getattr(request, name, None)
        if value is not None:
            span.set_attribute(f"gen_ai.request.{name}", value)


def _outcome_attributes(
    span: Span, exchange: Exchange, providers: dict[str, tuple[str, str | None, int | None]]
) -> None:
    model = exchange.model
    if model is not None:
        span.set_attribute("gen_ai.response.model", exchange.response_model or model.upstream_name)
        provider = providers.get(model.backend)
        if provider is not None:
            span.set_attribute("gen_ai.provider.name", provider[0])
            span.set_attribute("gen_ai.system", provider[0])
        span.set_attribute("optiroute.model", model.name)
        span.set_attribute("optiroute.backend", model.backend)
    if exchange.prompt_tokens or exchange.completion_tokens:
        span.set_attribute("gen_ai.usage.input_tokens", exchange.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", exchange.completion_tokens)
    span.set_attribute("optiroute.cost_usd", exchange.cost_usd)


class RequestSpan:
    """The request's SERVER span, continuing the caller's trace when it sent one."""

    def __init__(
        self,
        app: ASGIApp,
        tracer: Tracer,
        providers: dict[str, tuple[str, str | None, int | None]],
    ) -> None:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        self.app, self.tracer, self.providers = app, tracer, providers
        self.extract = propagate.extract
        self.getter = _header_getter()
        self.kind = SpanKind.SERVER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import Status, StatusCode

        parent = self.extract(scope, getter=self.getter)
        with self.tracer.start_as_current_span(
            f"POST {scope['path']}", context=parent, kind=self.kind
        ) as span:
            span.set_attribute("http.request.method", scope.get("method", "POST"))
            span.set_attribute("url.path", scope["path"])
            await self.app(scope, receive, send)
            exchange = get_exchange(scope)
            if exchange is None:
                return
            operation = OPERATIONS.get(exchange.kind, exchange.kind)
            span.update_name(f"{operation} {exchange.requested_model}")
            _request_attributes(span, exchange)
            _outcome_attributes(span, exchange, self.providers)
            span.set_attribute("http.response.status_code", exchange.status)
            span.set_attribute("optiroute.request_id", exchange.request_id)
            span.set_attribute("optiroute.tenant", exchange.tenant)
            span.set_attribute("optiroute.tier", _tier(exchange))
            span.set_attribute("optiroute.cache", exchange.cache_status)
            span.set_attribute("optiroute.mode", exchange.mode)
            span.set_attribute("optiroute.stream", exchange.stream)
            span.set_attribute("optiroute.baseline_cost_usd", exchange.baseline_cost_usd)
            span.set_attribute("optiroute.overhead_ms", exchange.overhead_seconds() * 1000)
            span.set_attribute("optiroute.attempts", len(exchange.attempts))
            if exchange.status >= 500 or exchange.status == 0:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {exchange.status}"))


def _tier(exchange: Exchange) -> str:
    return exchange.classification.tier if exchange.classification else "none"


class StageSpan:
    """``optiroute.<stage>``: the stage and everything inside it (stages nest)."""

    def __init__(self, app: ASGIApp, tracer: Tracer, stage: str) -> None:
        self.app, self.tracer, self.stage = app, tracer, stage
        self.name = f"optiroute.{stage}"

    def __getattr__(self, name: str) -> Any:  # the wrapped stage's own attributes
        if name == "app":  # not set yet (copy, pickle): no endless lookup
            raise AttributeError(name)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.tracer.start_as_current_span(self.name) as span:
            await self.app(scope, receive, send)
            exchange = get_exchange(scope)
            if exchange is None:
                return
            if self.stage == "cache":
                span.set_attribute("optiroute.cache", exchange.cache_status)
            elif self.stage == "classify":
                span.set_attribute("optiroute.tier", _tier(exchange))
            elif self.stage == "select" and exchange.selection is not None:
                span.set_attribute("optiroute.selected_model", exchange.selection.primary.name)
                span.set_attribute("optiroute.selection_reason", exchange.selection.reason)
            elif self.stage == "breaker":
                span.set_attribute("optiroute.attempts", len(exchange.attempts))


class BackendSpan(StageSpan):
    """One CLIENT span per backend call, named and attributed by the GenAI conventions."""

    def __init__(
        self,
        app: ASGIApp,
        tracer: Tracer,
        providers: dict[str, tuple[str, str | None, int | None]],
    ) -> None:
        from opentelemetry.trace import SpanKind

        super().__init__(app, tracer, "forward")
        self.providers = providers
        self.kind = SpanKind.CLIENT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from opentelemetry.trace import Status, StatusCode

        exchange = get_exchange(scope)
        model = exchange.model if exchange is not None else None
        if exchange is None or model is None:
            await self.app(scope, receive, send)
            return
        operation = OPERATIONS.get(exchange.kind, exchange.kind)
        with self.tracer.start_as_current_span(
            f"{operation} {model.upstream_name}", kind=self.kind
        ) as span:
            _request_attributes(span, exchange)
            span.set_attribute("gen_ai.request.model", model.upstream_name)
            provider = self.providers.get(model.backend)
            if provider is not None and provider[1]:
                span.set_attribute("server.address", provider[1])
                if provider[2]:
                    span.set_attribute("server.port", provider[2])
            before = len(exchange.attempts)
            await self.app(scope, receive, send)
            _outcome_attributes(span, exchange, self.providers)
            if len(exchange.attempts) > before:
                attempt = exchange.attempts[-1]
                span.set_attribute("optiroute.outcome", attempt.outcome)
                if attempt.outcome != "ok":
                    span.set_attribute("error.type", attempt.outcome)
                    span.set_status(Status(StatusCode.ERROR, attempt.outcome))
