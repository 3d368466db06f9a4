"""Ollama's native API: ``/api/chat``, ``/api/generate`` and ``/api/embed``, NDJSON streams.

A backend with ``adapter: ollama`` and ``base_url: http://127.0.0.1:11434`` (with or
without ``/api``).  Ollama's OpenAI-compatible ``/v1`` endpoint needs no adapter of
its own (``adapter: openai`` with ``base_url: http://127.0.0.1:11434/v1``); the native
API is the one with every option (``keep_alive``, ``top_k``, ``format`` schemas,
thinking output) and the one older Ollama versions have.
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
    json_error_text,
    url_under,
    with_backend_headers,
)
from .request import chat_body, embed_body, generate_body
from .response import OllamaStreamTranslator, to_openai

__all__ = ["OllamaAdapter", "OllamaStreamTranslator"]

_ROUTES = {
    "/v1/chat/completions": ("/chat", chat_body),
    "/v1/completions": ("/generate", generate_body),
    "/v1/embeddings": ("/embed", embed_body),
}


class OllamaAdapter:
    name = "ollama"
    passthrough_stream = False

    def static_headers(self, backend: BackendLike, environ: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        key = api_key(backend, environ)  # Ollama itself has none; a proxy in front may
        if key:
            headers["authorization"] = f"Bearer {key}"
        return with_backend_headers(headers, backend)

    def prepare(
        self, backend: BackendLike, headers: dict[str, str], path: str, body: bytes
    ) -> OutboundRequest:
        route = _ROUTES.get(path.rstrip("/"))
        if route is None:
            raise UnsupportedRequest(f"Ollama has no native endpoint for {path}")
        suffix, translate = route
        native = translate(msgspec.json.decode(body))
        return OutboundRequest(
            url=url_under(backend.base_url, "/api", suffix),
            headers=headers,
            content=msgspec.json.encode(native),
        )

    def translate_response(self, body: bytes) -> bytes:
        return to_openai(body)

    def stream_translator(self) -> StreamTranslator | None:
        return OllamaStreamTranslator()

    def error_message(self, status: int, body: bytes) -> str:
        return json_error_text(status, body)
