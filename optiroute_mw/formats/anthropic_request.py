"""An Anthropic Messages request as the OpenAI chat request the stack works on.

The translation is deterministic and canonical, so the cache sees one key for one
question however it arrived: a lone text block is the same as a plain string, and
tool inputs are re-encoded compactly.  What maps: ``system`` (a string or text
blocks) becomes the first message; user turns keep text, images (base64 or URL) and
PDF documents, and their ``tool_result`` blocks become ``tool`` messages placed
before the rest of the turn; assistant turns keep text and ``tool_use`` blocks (as
``tool_calls``); ``max_tokens``, ``stop_sequences``, ``temperature``, ``top_p``,
``tools``, ``tool_choice`` (``disable_parallel_tool_use`` included) and
``metadata.user_id``; a structured output (``output_config.format``, a JSON schema)
becomes ``response_format: json_schema``.  Dropped, having no OpenAI counterpart:
``output_config.effort``, ``top_k``,
``thinking`` and earlier turns' thinking blocks, ``cache_control`` marks, a tool
result's ``is_error`` flag.  Anything else that cannot be represented is a 400.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

Json = dict[str, Any]


class FormatError(ValueError):
    """The request is not a valid Messages request, or asks for what cannot be mapped."""


class InMessage(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: str | list[Json]


class InRequest(msgspec.Struct):
    model: str
    max_tokens: int
    messages: list[InMessage]
    system: str | list[Json] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    tools: list[Json] | None = None
    tool_choice: Json | None = None
    metadata: Json | None = None
    output_config: Json | None = None
    optiroute: Json | None = None  # the gateway's own controls ride along


_request_decoder = msgspec.json.Decoder(InRequest)


def decode_request(body: bytes) -> InRequest:
    try:
        request = _request_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise FormatError(f"Invalid request: {exc}") from None
    if not request.messages:
        raise FormatError("messages: at least one message is required")
    if request.max_tokens < 1:
        raise FormatError("max_tokens: must be at least 1")
    return request


def to_openai_request(request: InRequest) -> Json:
    messages: list[Json] = []
    system = _system_text(request.system)
    if system:
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        blocks = _as_blocks(message.content)
        if message.role == "assistant":
            messages.append(_assistant(blocks))
        else:
            messages.extend(_user(blocks))
    body: Json = {"model": request.model, "messages": messages, "max_tokens": request.max_tokens}
    if request.stop_sequences:
        body["stop"] = list(request.stop_sequences)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.tools:
        body["tools"] = [_tool(t) for t in request.tools]
    if request.tool_choice:
        _tool_choice(request.tool_choice, body)
    output_format = (request.output_config or {}).get("format")
    if output_format:
        if output_format.get("type") != "json_schema":
            raise FormatError(
                f"output_config.format: {output_format.get('type')!r} is not supported"
            )
        schema = output_format.get("schema") or {}
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": schema},
        }
    user = (request.metadata or {}).get("user_id")
    if user:
        body["user"] = str(user)
    if request.stream:
        # usage at the end of the stream fills in message_delta's token counts
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if request.optiroute is not None:
        body["optiroute"] = request.optiroute
    return body


def _system_text(system: str | list[Json] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    for block in system:
        if block.get("type") != "text":
            raise FormatError(f"system: {block.get('type')!r} blocks are not supported")
    return "\n\n".join(str(block.get("text", "")) for block in system)


def _as_blocks(content: str | list[Json]) -> list[Json]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _user(blocks: list[Json]) -> list[Json]:
    """Tool results first, as ``tool`` messages, then what the user said."""
    out: list[Json] = []
    parts: list[Json] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": str(block.get("tool_use_id", "")),
                    "content": _tool_result_text(block.get("content")),
                }
            )
        elif kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _url(block)}})
        elif kind == "document" and (block.get("source") or {}).get("type") == "base64":
            parts.append({"type": "file", "file": {"file_data": _url(block)}})
        else:
            raise FormatError(f"messages: {kind!r} content blocks are not supported")
    if parts:
        single = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if single else parts})
    elif not out:
        out.append({"role": "user", "content": ""})
    return out


def _assistant(blocks: list[Json]) -> Json:
    texts: list[str] = []
    calls: list[Json] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
            function = {"name": str(block.get("name", "")), "arguments": arguments}
            calls.append({"id": str(block.get("id", "")), "type": "function", "function": function})
        elif kind not in ("thinking", "redacted_thinking"):
            raise FormatError(f"messages: {kind!r} blocks in an assistant turn are not supported")
    message: Json = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_result_text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for block in content:
        if block.get("type") != "text":
            raise FormatError("tool_result: only text content is supported")
        texts.append(str(block.get("text", "")))
    return "".join(texts)


def _url(block: Json) -> str:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        return f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
    if source.get("type") == "url":
        return str(source.get("url", ""))
    raise FormatError(f"{block.get('type')}: {source.get('type')!r} sources are not supported")


def _tool(tool: Json) -> Json:
    if tool.get("type") not in (None, "custom"):
        raise FormatError(f"tools: server tools ({tool.get('type')}) are not supported")
    function: Json = {
        "name": str(tool.get("name", "")),
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Json, body: Json) -> None:
    kind = choice.get("type")
    if kind == "auto":
        body["tool_choice"] = "auto"
    elif kind == "any":
        body["tool_choice"] = "required"
    elif kind == "none":
        body["tool_choice"] = "none"
    elif kind == "tool":
        body["tool_choice"] = {"type": "function", "function": {"name": choice.get("name", "")}}
    else:
        raise FormatError(f"tool_choice: {kind!r} is not supported")
    if choice.get("disable_parallel_tool_use"):
        body["parallel_tool_calls"] = False
