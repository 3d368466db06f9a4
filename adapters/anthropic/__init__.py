"""Anthropic's Messages API behind the OpenAI chat format.

A backend with ``adapter: anthropic`` gets ``POST {base_url}/v1/messages`` with the
``x-api-key`` and ``anthropic-version`` headers (a ``headers:`` entry in the
registry overrides the version or adds ``anthropic-beta``).  Requests are
translated by :mod:`.request`, answers by :mod:`.response` and streams by
:mod:`.stream`.  Anthropic serves chat only: legacy completions and embeddings
are refused with :class:`~adapters.base.UnsupportedRequest`, so they go to another
backend.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from ..base import (
    BackendLike,
    OutboundRequest,
    StreamTranslator,
    UnsupportedRequest,
    api_key,
    url_under,
    with_backend_headers,
)
from . import response
from .request import DEFAULT_MAX_TOKENS, to_anthropic
from .stream import AnthropicStreamTranslator

API_VERSION = "2023-06-01"  # the stable version; newer features come through anthropic-beta

__all__ = ["API_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicAdapter", "AnthropicStreamTranslator"]


class AnthropicAdapter:
    name = "anthropic"
    passthrough_stream = False

    def static_headers(self, backend: BackendLike, environ: Mapping[str, str]) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": API_VERSION,
        }
        key = api_key(backend, environ)
        if key:
            headers["x-api-key"] = key
        return with_backend_headers(headers, backend)

    def prepare(
        self, backend: BackendLike, headers: dict[str, str], path: str, body: bytes
    ) -> OutboundRequest:
        if path.rstrip("/") != "/v1/chat/completions":
            raise UnsupportedRequest(f"Anthropic serves chat only, not {path}")
        raw = msgspec.json.decode(body)
        return OutboundRequest(
            url=url_under(backend.base_url, "/v1", "/messages"),
            headers=headers,
            content=msgspec.json.encode(to_anthropic(raw)),
        )

    def translate_response(self, body: bytes) -> bytes:
        return response.to_openai(body)

    def stream_translator(self) -> StreamTranslator | None:
        return AnthropicStreamTranslator()

    def error_message(self, status: int, body: bytes) -> str:
        return response.error_message(status, body)
