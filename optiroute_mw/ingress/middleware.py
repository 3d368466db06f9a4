"""Ingress: the outermost stage.

It parses the request once into the Exchange (a bad request ends here with a 4xx
OpenAI-style error), reads the caller's controls, and, given an :class:`Access`,
identifies the caller and admits the call against its model list, budget and rate
limits (401/403/402/429 otherwise), settling the accounts when the call has ended.
It stamps every response with ``x-request-id``, ``x-optiroute-*`` and the overhead
header, and writes the one log line and the metrics of the request when it ends.
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import send_error
from ..exchange import ClientDisconnected, Exchange, ensure_exchange, header, new_request_id
from ..observe.metrics import Metrics
from ..observe.request_line import log_request, request_line
from ..settings import Settings
from ..sse import error_event
from ..wire import RequestError
from .access import Access, AccessDenied, Admitted
from .controls import apply_controls, clean_request_id
from .tenants import Tenant

logger = structlog.get_logger("optiroute_mw.request")


class IngressMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings | None = None,
        metrics: Metrics | None = None,
        access: Access | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or Settings()
        self.metrics = metrics
        self.access = access  # keys, limits, budgets, ledger; None: everyone is welcome

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await IngressResponder(self, scope, send).run(receive)


class IngressResponder:
    def __init__(self, middleware: IngressMiddleware, scope: Scope, send: Send) -> None:
        self.middleware = middleware
        self.scope = scope
        self.wrapped_send = send
        self.started = time.perf_counter()
        self.exchange: Exchange | None = None
        self.response_started = False
        self.body_complete = False
        self.finished = False

    async def run(self, receive: Receive) -> None:
        settings = self.middleware.settings
        request_id = clean_request_id(header(self.scope, b"x-request-id")) or new_request_id()
        metrics = self.middleware.metrics
        access = self.middleware.access
        tenant: Tenant | None = None
        admitted: Admitted | None = None
        judged = False  # past parsing: the call is accounted for, admitted or refused
        if metrics:
            metrics.in_flight.inc()
        try:
            try:
                if access is not None:
                    # from the headers alone: a stranger's body is never read
                    tenant = await access.identify(self.scope)
                exchange, receive = await ensure_exchange(
                    self.scope, receive, settings.max_body_bytes, request_id
                )
                exchange.request_id = request_id  # also if a stage before made the Exchange
                exchange.started = self.started
                self.exchange = exchange
                default_mode = (tenant.default_mode if tenant else None) or settings.default_mode
                apply_controls(exchange, self.scope, default_mode)
            except RequestError as exc:
                await self._refuse(exc, request_id)
                return
            except ClientDisconnected:
                return
            if access is not None and tenant is not None:
                judged = True
                try:
                    admitted = await access.admit(exchange, tenant)
                except AccessDenied as exc:
                    await send_error(
                        self.send,
                        exc.status,
                        exc.message,
                        exc.code,
                        error_type=exc.type,
                        headers=exc.headers,
                    )
                    return
            try:
                await self.middleware.app(self.scope, receive, self.send)
            except Exception:
                logger.exception("stack_error", request_id=request_id)
                if not self.response_started:
                    exchange.status = 500
                    await send_error(
                        self.send,
                        500,
                        "The gateway failed to handle this request.",
                        "internal_error",
                    )
                elif not self.body_complete:
                    # a stream already under way: end it in a way clients understand
                    exchange.status = 500
                    body = error_event("The gateway failed while relaying this answer.")
                    await self.send(
                        {"type": "http.response.body", "body": body, "more_body": False}
                    )
        finally:
            if metrics:
                metrics.in_flight.dec()
            if judged and access is not None and tenant is not None:
                assert self.exchange is not None
                latency = time.perf_counter() - self.started
                await access.settle(self.exchange, admitted or Admitted(tenant), latency)
            self._finish()

    async def _refuse(self, exc: RequestError, request_id: str) -> None:
        self.response_started = True
        await send_error(
            self.wrapped_send,
            exc.status,
            exc.message,
            exc.code,
            error_type=exc.type,
            param=exc.param,
            headers=[(b"x-request-id", request_id.encode())],
        )
        logger.info(
            "request_refused",
            request_id=request_id,
            path=self.scope["path"],
            status=exc.status,
            code=exc.code,
        )

    async def send(self, message: Message) -> None:
        exchange = self.exchange
        if message["type"] == "http.response.start" and exchange is not None:
            self.response_started = True
            now = time.perf_counter()
            exchange.first_byte_at = now
            exchange.status = message["status"]
            if self.middleware.metrics is not None:
                self.middleware.metrics.response_started(exchange)
            headers = list(message.get("headers", ()))
            headers.append((b"x-request-id", exchange.request_id.encode()))
            for name, value in exchange.response_headers.items():
                headers.append((name.encode(), value.encode()))
            if exchange.classification is not None:
                headers.append((b"x-optiroute-tier", exchange.classification.tier.encode()))
            if exchange.cache_status != "off":
                headers.append((b"x-optiroute-cache", exchange.cache_status.encode()))
            if not exchange.stream and exchange.status < 400:
                headers.append((b"x-optiroute-cost", f"{exchange.cost_usd:.8f}".encode()))
            overhead_ms = exchange.overhead_seconds(now) * 1000
            headers.append((b"x-optiroute-overhead-ms", f"{overhead_ms:.3f}".encode()))
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.body_complete = True
        await self.wrapped_send(message)

    def _finish(self) -> None:
        exchange = self.exchange
        if self.finished or exchange is None:
            return
        self.finished = True
        duration = time.perf_counter() - self.started
        metrics = self.middleware.metrics
        if metrics is not None:
            try:
                metrics.observe(exchange, duration)
            except Exception:  # metrics never fail a call
                logger.warning("metrics_failed", exc_info=True)
        log_request(request_line(exchange, self.middleware.settings, duration), logger)
