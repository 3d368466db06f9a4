"""Select: choose the primary deployment and ordered fallbacks for the request."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import send_error
from ..exchange import ensure_exchange
from ..wire import RequestError
from .policy import Selector


class SelectMiddleware:
    def __init__(self, app: ASGIApp, *, selector: Selector) -> None:
        self.app = app
        self.selector = selector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange, receive = await ensure_exchange(scope, receive)
        try:
            selection = self.selector.select(exchange)
        except RequestError as exc:
            await send_error(send, exc.status, exc.message, exc.code, param=exc.param)
            return
        exchange.selection = selection
        exchange.model = selection.primary
        exchange.baseline_price = self.selector.baseline_price(exchange.requested_model)
        await self.app(scope, receive, send)
