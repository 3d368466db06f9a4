"""Building the OpenAI answer shapes that translating adapters produce.

Adapters for backends that do not speak OpenAI (Anthropic, Ollama's native API)
turn each answer into a ``chat.completion`` object or a stream of
``chat.completion.chunk`` SSE events.  The pieces every such adapter needs live here:
the chunk envelope, the usage chunk, the error event, and a byte-level line/SSE
splitter (the adapters cannot use the stack's own: the dependency runs the other way).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

DONE = b"data: [DONE]\n\n"
_encoder = msgspec.json.Encoder()

# OpenAI's error "type" for an HTTP status, as the OpenAI API names them
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def sse(payload: Any) -> bytes:
    return b"data: " + _encoder.encode(payload) + b"\n\n"


def openai_error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_event(message: str, status: int, code: str | None) -> bytes:
    """An OpenAI-style error inside a stream: the relay and the SDKs recognise it."""
    error = {"message": message, "type": openai_error_type(status), "code": code}
    return sse({"error": error})


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class ChunkWriter:
    """The envelope of one stream's chunks: the same id, created and model throughout."""

    __slots__ = ("created", "id", "model")

    def __init__(self, id: str, model: str, created: int | None = None) -> None:
        self.id = id
        self.model = model
        self.created = created if created is not None else now()

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse(self._envelope([choice]))

    def text_chunk(self, text: str, finish_reason: str | None = None) -> bytes:
        """A legacy completions (``text_completion``) stream chunk."""
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return sse(self._envelope([choice], "text_completion"))

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The final chunk of ``stream_options.include_usage``: no choices, the usage."""
        body = self._envelope([])
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return sse(body)

    def _envelope(
        self, choices: list[dict[str, Any]], obj: str = "chat.completion.chunk"
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }


def completion(
    id: str,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    created: int | None = None,
) -> bytes:
    """One non-streaming ``chat.completion`` answer."""
    return encode(
        {
            "id": id,
            "object": "chat.completion",
            "created": created if created is not None else now(),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": usage(prompt_tokens, completion_tokens),
        }
    )


class LineSplitter:
    """Cuts bytes into whole lines (``\\n`` or ``\\r\\n``), holding a partial last line."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._pending + data
        lines = buffer.split(b"\n")
        self._pending = lines.pop()
        return [line.rstrip(b"\r") for line in lines]

    def rest(self) -> bytes:
        pending, self._pending = self._pending, b""
        return pending.rstrip(b"\r")


class SSEReader:
    """Server-sent events as (event name, data) pairs, fed bytes as they arrive."""

    __slots__ = ("_data", "_event", "_lines")

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        return self._take(self._lines.feed(data))

    def close(self) -> list[tuple[str, bytes]]:
        """The events still held: a last line, or a last event without its blank line."""
        rest = self._lines.rest()
        return self._take([rest, b""] if rest else [b""])

    def _take(self, lines: list[bytes]) -> list[tuple[str, bytes]]:
        events: list[tuple[str, bytes]] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append((self._event, b"\n".join(self._data)))
                self._event, self._data = "", []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
            # ids, retry hints and comments (": ping") carry nothing to translate
        return events
