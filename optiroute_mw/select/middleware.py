"""Select: choose the primary deployment and ordered fallbacks for the request.

Besides the controls ingress parsed (mode, pin, max cost), this stage reads
``x-optiroute-max-latency-ms``: models whose learned latency is over it are left out.
"""

from __future__ import annotations

import math

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import send_error
from ..exchange import Exchange, ensure_exchange, header
from ..wire import RequestError
from .policy import Selector

MAX_LATENCY_HEADER = b"x-optiroute-max-latency-ms"


def read_max_latency(exchange: Exchange, scope: Scope) -> None:
    value = header(scope, MAX_LATENCY_HEADER)
    if value is None or exchange.max_latency_s is not None:
        return
    try:
        millis = float(value)
    except ValueError:
        millis = math.nan
    if not math.isfinite(millis) or millis <= 0:
        raise RequestError(
            "x-optiroute-max-latency-ms must be a positive number of milliseconds.",
            param="x-optiroute-max-latency-ms",
        )
    exchange.max_latency_s = millis / 1000.0


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
            read_max_latency(exchange, scope)
            selection = self.selector.select(exchange)
        except RequestError as exc:
            await send_error(send, exc.status, exc.message, exc.code, param=exc.param)
            return
        exchange.selection = selection
        exchange.model = selection.primary
        exchange.baseline_price = self.selector.baseline_price(exchange.requested_model)
        await self.app(scope, receive, send)
