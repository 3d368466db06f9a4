"""Per-request controls: ``x-optiroute-*`` headers, mirrored by an ``optiroute`` body field."""

from __future__ import annotations

import math
import re
from typing import Any

from starlette.types import Scope

from ..exchange import Exchange, header
from ..wire import RequestError, encode

MODES = frozenset({"cost", "balanced", "quality", "speed"})
CACHE_CONTROLS = frozenset({"use", "bypass", "refresh"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def clean_request_id(value: str | None) -> str | None:
    """A caller's request id is echoed and logged, so only a safe shape is kept."""
    return value if value and REQUEST_ID.fullmatch(value) else None


def apply_controls(exchange: Exchange, scope: Scope, default_mode: str) -> None:
    body_controls: dict[str, Any] = {}
    if b'"optiroute"' in exchange.body:
        raw = exchange.raw()
        value = raw.get("optiroute")
        if value is not None:
            if not isinstance(value, dict):
                raise RequestError("'optiroute' must be an object.", param="optiroute")
            body_controls = value
            # the backend must not see our own field
            exchange.body = encode({k: v for k, v in raw.items() if k != "optiroute"})
            exchange._raw = None

    def control(name: str) -> Any:
        value = header(scope, b"x-optiroute-" + name.encode())
        return value if value is not None else body_controls.get(name.replace("-", "_"))

    mode = control("mode") or default_mode
    if not isinstance(mode, str) or mode not in MODES:
        raise RequestError(
            f"x-optiroute-mode must be one of {sorted(MODES)}.", param="x-optiroute-mode"
        )
    exchange.mode = mode

    cache = control("cache")
    if cache is None:
        cache_header = (header(scope, b"cache-control") or "").lower()
        cache = (
            "bypass"
            if "no-store" in cache_header
            else "refresh"
            if "no-cache" in cache_header
            else "use"
        )
    if not isinstance(cache, str) or cache not in CACHE_CONTROLS:
        raise RequestError(
            f"x-optiroute-cache must be one of {sorted(CACHE_CONTROLS)}.", param="x-optiroute-cache"
        )
    exchange.cache_control = cache

    max_cost = control("max-cost")
    if max_cost is not None:
        try:
            exchange.max_cost_usd = float(max_cost)
        except (TypeError, ValueError):
            raise RequestError(
                "x-optiroute-max-cost must be a number (USD).", param="x-optiroute-max-cost"
            ) from None
        if not math.isfinite(exchange.max_cost_usd) or exchange.max_cost_usd < 0:
            raise RequestError(
                "x-optiroute-max-cost must be a finite, non-negative number.",
                param="x-optiroute-max-cost",
            )

    pinned = control("model")
    if pinned is not None and not isinstance(pinned, str):
        raise RequestError("x-optiroute-model must be a model name.", param="x-optiroute-model")
    exchange.pinned_model = pinned or None
