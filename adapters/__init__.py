"""Backend adapters: one module per backend family, all behind :class:`adapters.base.Adapter`."""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .azure import AzureOpenAIAdapter
from .base import Adapter, BackendLike, OutboundRequest, UnsupportedRequest
from .huggingface import HuggingFaceAdapter
from .ollama import OllamaAdapter
from .openai import OpenAIAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "openai": OpenAIAdapter,
    "anthropic": AnthropicAdapter,
    "ollama": OllamaAdapter,
    "huggingface": HuggingFaceAdapter,
    "azure": AzureOpenAIAdapter,
}


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise ValueError(f"unknown adapter {name!r} (known: {', '.join(ADAPTERS)})") from None


__all__ = [
    "ADAPTERS",
    "Adapter",
    "BackendLike",
    "OutboundRequest",
    "UnsupportedRequest",
    "get_adapter",
]
