"""Anthropic Messages answers and errors in OpenAI terms."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from .. import chunks

# Anthropic stop_reason → OpenAI finish_reason
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type → the HTTP status OpenAI would answer with
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 503,
}


class Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def prompt_tokens(self) -> int:
        # cached prompt tokens are prompt tokens too (billed at other rates)
        return (
            (self.input_tokens or 0)
            + (self.cache_creation_input_tokens or 0)
            + (self.cache_read_input_tokens or 0)
        )


class Message(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[dict[str, Any]] = []
    stop_reason: str | None = None
    usage: Usage = msgspec.field(default_factory=Usage)


_message_decoder = msgspec.json.Decoder(Message)


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id", ""),
        "type": "function",
        "function": {
            "name": block.get("name", ""),
            "arguments": json.dumps(block.get("input") or {}, separators=(",", ":")),
        },
    }


def to_openai(body: bytes) -> bytes:
    """A Messages answer as a ``chat.completion``; anything else is left as it came."""
    try:
        message = _message_decoder.decode(body)
    except msgspec.MsgspecError:
        return body  # the forward stage reports it as malformed
    text = [b.get("text", "") for b in message.content if b.get("type") == "text"]
    thinking = [b.get("thinking", "") for b in message.content if b.get("type") == "thinking"]
    calls = [tool_call(b) for b in message.content if b.get("type") == "tool_use"]
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if calls:
        reply["tool_calls"] = calls
    if thinking:
        reply["reasoning_content"] = "".join(thinking)
    return chunks.completion(
        message.id,
        message.model,
        reply,
        finish_reason(message.stop_reason),
        message.usage.prompt_tokens(),
        message.usage.output_tokens or 0,
    )


def error_detail(body: bytes) -> tuple[str, str] | None:
    """(type, message) of an Anthropic error body or error event."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("type") or "api_error"), str(error.get("message") or "")


def error_message(status: int, body: bytes) -> str:
    detail = error_detail(body)
    if detail is None:
        text = body[:200].decode("utf-8", "replace").strip()
        return text or f"backend answered HTTP {status}"
    kind, message = detail
    return f"{message} ({kind})" if message else kind
