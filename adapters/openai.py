"""OpenAI-compatible backends: OpenAI, vLLM, Ollama's /v1, llama.cpp server, Groq, …

The request and response already speak the OpenAI format, so bodies pass
through as bytes; only the URL and the headers are the backend's own.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import BackendLike, OutboundRequest, StreamTranslator, json_error_text

_PATHS = {
    "/v1/chat/completions": "/chat/completions",
    "/v1/completions": "/completions",
    "/v1/embeddings": "/embeddings",
}


class OpenAIAdapter:
    name = "openai"
    passthrough_stream = True

    def static_headers(self, backend: BackendLike, environ: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if backend.api_key_env:
            key = environ.get(backend.api_key_env)
            if key:
                headers["authorization"] = f"Bearer {key}"
        headers.update({k.lower(): v for k, v in backend.headers.items()})
        return headers

    def prepare(
        self, backend: BackendLike, headers: dict[str, str], path: str, body: bytes
    ) -> OutboundRequest:
        suffix = _PATHS.get(path.rstrip("/"), "/chat/completions")
        return OutboundRequest(
            url=backend.base_url.rstrip("/") + suffix, headers=headers, content=body
        )

    def translate_response(self, body: bytes) -> bytes:
        return body

    def stream_translator(self) -> StreamTranslator | None:
        return None

    def error_message(self, status: int, body: bytes) -> str:
        return json_error_text(status, body)
