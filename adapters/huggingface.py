"""Hugging Face: text-generation-inference (TGI), Inference Endpoints and Inference Providers.

All three serve TGI's Messages API, which is OpenAI's chat format at
``/v1/chat/completions`` (``/v1/completions`` too, and ``/v1/embeddings`` on
text-embeddings-inference).  The native ``/generate`` API is not used: it takes a
prompt already rendered with the model's chat template, which only the server knows.
So this adapter speaks OpenAI's format and smooths what TGI does differently:

- errors are ``{"error": "<text>", "error_type": "validation" | "generation" |
  "overloaded" | ...}`` (a string, not an object), in bodies and inside streams;
  a stream error becomes an OpenAI-style error event;
- tool calls: TGI has sent ``tool_calls`` as one object instead of a list in stream
  deltas, arguments as an object instead of a JSON string, and empty ids; all
  are put in OpenAI's shape;
- empty ``id`` fields get one, the same for every chunk of a stream;
- streams from TGI versions that end without ``data: [DONE]`` get one once a choice
  has finished, so a complete answer is not taken for a broken one.

``base_url`` is the server or endpoint root (``http://127.0.0.1:8080``,
``https://<name>.endpoints.huggingface.cloud``) or a ``/v1`` URL
(``https://router.huggingface.co/v1``); the token (``HF_TOKEN``) is sent as a bearer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

from . import chunks
from .base import (
    BackendLike,
    OutboundRequest,
    StreamTranslator,
    api_key,
    json_error_text,
    url_under,
    with_backend_headers,
)

_ROUTES = {
    "/v1/chat/completions": "/chat/completions",
    "/v1/completions": "/completions",
    "/v1/embeddings": "/embeddings",
}
# TGI's error_type → the HTTP status it stands for
ERROR_STATUS = {"validation": 400, "overloaded": 503, "generation": 500}
_any = msgspec.json.Decoder()


class HuggingFaceAdapter:
    name = "huggingface"
    passthrough_stream = False

    def static_headers(self, backend: BackendLike, environ: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        key = api_key(backend, environ)
        if key:
            headers["authorization"] = f"Bearer {key}"
        return with_backend_headers(headers, backend)

    def prepare(
        self, backend: BackendLike, headers: dict[str, str], path: str, body: bytes
    ) -> OutboundRequest:
        suffix = _ROUTES.get(path.rstrip("/"), "/chat/completions")
        return OutboundRequest(
            url=url_under(backend.base_url, "/v1", suffix), headers=headers, content=body
        )

    def translate_response(self, body: bytes) -> bytes:
        try:
            answer = _any.decode(body)
        except msgspec.DecodeError:
            return body
        if not isinstance(answer, dict) or "choices" not in answer:
            return body  # embeddings, or something the forward stage will judge
        answer["id"] = answer.get("id") or chunks.new_id("chatcmpl-")
        for choice in answer["choices"]:
            message = choice.get("message") or {}
            if message.get("tool_calls"):
                message["tool_calls"] = normalize_tool_calls(message["tool_calls"], delta=False)
        return chunks.encode(answer)

    def stream_translator(self) -> StreamTranslator | None:
        return TGIStreamTranslator()

    def error_message(self, status: int, body: bytes) -> str:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            text: str = payload["error"]
            if payload.get("error_type"):
                text += f" ({payload['error_type']})"
            if payload.get("estimated_time") is not None:  # a model still loading
                text += f"; ready in about {float(payload['estimated_time']):.0f} s"
            return text
        return json_error_text(status, body)


def normalize_tool_calls(calls: Any, *, delta: bool) -> list[dict[str, Any]]:
    items = calls if isinstance(calls, list) else [calls]
    out = []
    for position, call in enumerate(items):
        call = dict(call)
        function = dict(call.get("function") or {})
        function.pop("description", None)  # TGI echoes the tool's description
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            function["arguments"] = json.dumps(arguments, separators=(",", ":"))
        if function.get("name") is None:
            function.pop("name", None)
        call["function"] = function
        if delta:
            call.setdefault("index", position)
            if function.get("name") and not call.get("id"):
                call["id"] = chunks.new_id("call_")  # the first delta of a call names it
            elif not call.get("id"):
                call.pop("id", None)
        else:
            call["id"] = call.get("id") or chunks.new_id("call_")
            call.setdefault("type", "function")
        out.append(call)
    return out


class TGIStreamTranslator:
    """OpenAI-shaped SSE from TGI, with TGI's deviations put right (see the module doc)."""

    def __init__(self) -> None:
        self.reader = chunks.SSEReader()
        self.id = chunks.new_id("chatcmpl-")
        self.finished = False
        self.done = False

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._event(payload) for _, payload in self.reader.feed(data))

    def close(self) -> bytes:
        out = b"".join(self._event(payload) for _, payload in self.reader.close())
        if self.finished and not self.done:
            self.done = True
            out += chunks.DONE
        return out

    def _event(self, payload: bytes) -> bytes:
        if self.done:
            return b""
        if payload.strip() == b"[DONE]":
            self.done = True
            return chunks.DONE
        try:
            chunk = _any.decode(payload)
        except msgspec.DecodeError:
            return b"data: " + payload + b"\n\n"  # the relay judges what it cannot parse
        if not isinstance(chunk, dict):
            return b"data: " + payload + b"\n\n"
        error = chunk.get("error")
        if isinstance(error, str):
            self.done = True
            kind = str(chunk.get("error_type") or "generation")
            return chunks.error_event(error, ERROR_STATUS.get(kind, 500), kind)
        chunk["id"] = chunk.get("id") or self.id
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("tool_calls"):
                delta["tool_calls"] = normalize_tool_calls(delta["tool_calls"], delta=True)
            if choice.get("finish_reason"):
                self.finished = True
        return chunks.sse(chunk)
