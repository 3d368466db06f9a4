"""Azure OpenAI: OpenAI's wire format at deployment URLs, with an ``api-key`` header.

A backend with ``adapter: azure``, ``base_url: https://<resource>.openai.azure.com``
and ``api_version: 2024-10-21`` (the default) sends chat to
``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...``; the
deployment is the model's ``upstream`` name.  ``api_version: v1`` uses Azure's
newer ``{base_url}/openai/v1/chat/completions`` instead, with the deployment named
in the body's ``model``.  The key (``api_key_env``) goes in ``api-key``.

Azure streams open with a chunk that has no choices, only the prompt's content
filter results; it is left out so the first chunk the caller sees is a real one
(SDKs and the cache take the id and model from it).  Everything else is OpenAI's.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import msgspec

from . import chunks
from .base import (
    BackendLike,
    OutboundRequest,
    StreamTranslator,
    api_key,
    json_error_text,
    with_backend_headers,
)

DEFAULT_API_VERSION = "2024-10-21"
_SUFFIXES = {
    "/v1/chat/completions": "/chat/completions",
    "/v1/completions": "/completions",
    "/v1/embeddings": "/embeddings",
}


class _Model(msgspec.Struct):
    model: str = ""


class _Head(msgspec.Struct):
    choices: list[object] = []
    usage: object | None = None
    error: object | None = None


_model_decoder = msgspec.json.Decoder(_Model)
_head_decoder = msgspec.json.Decoder(_Head)


class AzureOpenAIAdapter:
    name = "azure"
    passthrough_stream = False

    def static_headers(self, backend: BackendLike, environ: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        key = api_key(backend, environ)
        if key:
            headers["api-key"] = key
        return with_backend_headers(headers, backend)

    def prepare(
        self, backend: BackendLike, headers: dict[str, str], path: str, body: bytes
    ) -> OutboundRequest:
        suffix = _SUFFIXES.get(path.rstrip("/"), "/chat/completions")
        version = getattr(backend, "api_version", None) or DEFAULT_API_VERSION
        base = backend.base_url.rstrip("/").removesuffix("/openai")
        if version == "v1":
            url = f"{base}/openai/v1{suffix}"
        else:
            deployment = quote(_model_decoder.decode(body).model, safe="")
            url = f"{base}/openai/deployments/{deployment}{suffix}?api-version={version}"
        return OutboundRequest(url=url, headers=headers, content=body)

    def translate_response(self, body: bytes) -> bytes:
        return body

    def stream_translator(self) -> StreamTranslator | None:
        return AzureStreamTranslator()

    def error_message(self, status: int, body: bytes) -> str:
        return json_error_text(status, body)


class AzureStreamTranslator:
    """Drops the leading filter-results chunks; passes every other event as it came."""

    def __init__(self) -> None:
        self.reader = chunks.SSEReader()
        self.started = False

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._event(payload) for _, payload in self.reader.feed(data))

    def close(self) -> bytes:
        return b"".join(self._event(payload) for _, payload in self.reader.close())

    def _event(self, payload: bytes) -> bytes:
        if not self.started and payload != b"[DONE]":
            try:
                head = _head_decoder.decode(payload)
            except msgspec.MsgspecError:
                head = None
            if head is not None and not (head.choices or head.usage or head.error):
                return b""
            self.started = True
        return b"data: " + payload + b"\n\n"
