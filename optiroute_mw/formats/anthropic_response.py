"""The stack's OpenAI answers and errors as Anthropic Messages answers and errors."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ..wire import ChatCompletion

# OpenAI finish_reason → Anthropic stop_reason
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# HTTP status → Anthropic error type (Anthropic's own status for each type is the same)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_completion_decoder = msgspec.json.Decoder(ChatCompletion)
_encoder = msgspec.json.Encoder()


def stop_reason(finish_reason: str | None) -> str:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str) -> bytes:
    return _encoder.encode(
        {"type": "error", "error": {"type": error_type(status), "message": message}}
    )


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Anthropic wants."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"arguments": arguments}


def message_from_completion(body: bytes) -> bytes | None:
    """A ``chat.completion`` as a Messages ``message``; None if it is not one."""
    try:
        completion = _completion_decoder.decode(body)
    except msgspec.MsgspecError:
        return None
    if not completion.choices:
        return None
    choice = completion.choices[0]
    content: list[dict[str, Any]] = []
    if choice.message.content:
        content.append({"type": "text", "text": choice.message.content})
    for call in choice.message.tool_calls or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": tool_input(function.get("arguments") or ""),
            }
        )
    usage = completion.usage
    return _encoder.encode(
        {
            "id": completion.id,
            "type": "message",
            "role": "assistant",
            "model": completion.model,
            "content": content,
            "stop_reason": stop_reason(choice.finish_reason),
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.prompt_tokens if usage else 0,
                "output_tokens": usage.completion_tokens if usage else 0,
            },
        }
    )


def error_from_openai(status: int, body: bytes) -> bytes:
    """An OpenAI-style error body (or anything else) as an Anthropic error body."""
    message = ""
    try:
        payload = json.loads(body)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            message = str(error.get("message") or "")
        elif isinstance(error, str):
            message = error
    except ValueError:
        message = body[:500].decode("utf-8", "replace")
    return error_body(status, message or f"The request failed with HTTP {status}.")
