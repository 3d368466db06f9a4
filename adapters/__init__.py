"""Backend adapters: one module per backend family, all behind :class:`adapters.base.Adapter`."""

from __future__ import annotations

from .base import Adapter, BackendLike, OutboundRequest
from .openai import OpenAIAdapter

ADAPTERS: dict[str, type[Adapter]] = {"openai": OpenAIAdapter}


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise ValueError(f"unknown adapter {name!r} (known: {', '.join(ADAPTERS)})") from None


__all__ = ["ADAPTERS", "Adapter", "BackendLike", "OutboundRequest", "get_adapter"]
