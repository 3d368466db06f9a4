"""The Adapter protocol: how the forward stage talks to one family of backends.

An adapter turns an OpenAI-format request into the backend's wire format and the
backend's answers (JSON, stream events, errors) back into OpenAI format.  It holds
no connection: the forward stage owns the one pooled HTTP client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


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


class StreamTranslator(Protocol):
    """Turns backend stream bytes into OpenAI SSE bytes, incrementally."""

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
        """A successful non-streaming answer, as OpenAI JSON."""
        ...

    def stream_translator(self) -> StreamTranslator | None:
        """None when the stream is already OpenAI SSE."""
        ...

    def error_message(self, status: int, body: bytes) -> str:
        """A readable message from the backend's error body."""
        ...
