"""The Adapter protocol: how the forward stage talks to one family of backends.

An adapter turns an OpenAI-format request into the backend's wire format and the
backend's answers (JSON, stream events, errors) back into OpenAI format.  It holds
no connection: the forward stage owns the one pooled HTTP client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class BackendLike(Protocol):
    """What an adapter needs to know of a configured backend."""

    @property
    def name(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def headers(self) -> dict[str, str]: ...


@dataclass(slots=True)
class OutboundRequest:
    url: str
    headers: dict[str, str]
    content: bytes
    method: str = "POST"


class UnsupportedRequest(ValueError):
    """This backend family cannot serve the request (an endpoint or a feature it lacks).

    Raised by :meth:`Adapter.prepare`; the forward stage turns it into a failure that
    lets another candidate answer instead.
    """


class StreamTranslator(Protocol):
    """Turns backend stream bytes into OpenAI SSE bytes, incrementally.

    ``feed`` gets the bytes as they arrive, cut anywhere; ``close`` is called once the
    body has ended and returns what was held back (a last line with no newline, or a
    ``[DONE]`` a backend leaves out).
    """

    def feed(self, data: bytes) -> bytes: ...
    def close(self) -> bytes: ...


class Adapter(Protocol):
    name: str
    # True when the backend streams OpenAI SSE that can be passed through untouched
    passthrough_stream: bool

    def static_headers(self, backend: BackendLike, environ: Mapping[str, str]) -> dict[str, str]:
        """Headers sent on every call to this backend (auth included), built once."""
        ...

    def prepare(
        self, backend: BackendLike, headers: dict[str, str], path: str, body: bytes
    ) -> OutboundRequest: ...

    def translate_response(self, body: bytes) -> bytes:
        """A successful non-streaming answer (chat or embeddings), as OpenAI JSON."""
        ...

    def stream_translator(self) -> StreamTranslator | None:
        """None when the stream is already OpenAI SSE; else a fresh translator per stream."""
        ...

    def error_message(self, status: int, body: bytes) -> str:
        """A readable message from the backend's error body."""
        ...


# --- helpers shared by the adapters ---------------------------------------------------------


def api_key(backend: BackendLike, environ: Mapping[str, str]) -> str | None:
    """The backend's key, read from the variable it names (never stored elsewhere)."""
    return environ.get(backend.api_key_env) if backend.api_key_env else None


def with_backend_headers(headers: dict[str, str], backend: BackendLike) -> dict[str, str]:
    """The configured extra headers win over the adapter's (e.g. a newer API version)."""
    headers.update({k.lower(): v for k, v in backend.headers.items()})
    return headers


def url_under(base_url: str, api_root: str, suffix: str) -> str:
    """``suffix`` under the API root, whether or not the base URL already ends in it.

    ``url_under("http://h:11434", "/api", "/chat")`` and
    ``url_under("http://h:11434/api", "/api", "/chat")`` are both ``http://h:11434/api/chat``.
    """
    base = base_url.rstrip("/")
    if not base.endswith(api_root):
        base += api_root
    return base + suffix


def json_error_text(status: int, body: bytes) -> str:
    """A readable message from the error bodies providers send.

    ``{"error": {"message": ...}}`` (OpenAI, Anthropic, Azure), ``{"error": "..."}``
    (Ollama, text-generation-inference, Hugging Face) or ``{"message": ...}``.
    """
    try:
        payload: Any = json.loads(body)
    except ValueError:
        text = body[:200].decode("utf-8", "replace").strip()
        return text or f"backend answered HTTP {status}"
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if payload.get("message"):
            return str(payload["message"])
    return f"backend answered HTTP {status}"
