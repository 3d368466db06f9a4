"""An OpenAI chat request as an Anthropic Messages request.

What maps: system and developer messages become the top-level ``system``; user,
assistant and tool turns become alternating ``user``/``assistant`` messages (turns of
one role in a row are merged, tool results travel as ``tool_result`` blocks of a user
turn, first in it as Anthropic requires); text, images (data URLs or https URLs) and
PDF files; tools and ``tool_choice`` (``parallel_tool_calls: false`` included);
``max_tokens`` (Anthropic requires one: :data:`DEFAULT_MAX_TOKENS` when absent);
``stop``; ``temperature`` (clamped to Anthropic's 0..1); ``top_p``; ``user``; and the
Anthropic-only ``top_k`` and ``thinking`` when a caller sends them as extra fields.

What cannot map is refused with :class:`UnsupportedRequest`, so another model can
answer instead of this one answering wrongly: ``n`` > 1, JSON mode without a schema,
tools other than functions, content parts other than text, images and files.  A JSON
schema (``response_format: json_schema``) becomes Anthropic's structured output
(``output_config.format``).
Sampling hints Anthropic has no equivalent for (``seed``, the penalties,
``logit_bias``, ``logprobs``) are dropped.
"""

from __future__ import annotations

import json
from typing import Any

from ..base import UnsupportedRequest

DEFAULT_MAX_TOKENS = 4096
_PASSED_THROUGH = ("top_k", "thinking")


def to_anthropic(raw: dict[str, Any]) -> dict[str, Any]:
    """The Messages API body for an OpenAI chat body (already decoded)."""
    _refuse_unsupported(raw)
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in raw.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            text = _plain_text(message.get("content"))
            if text:
                system.append(text)
        elif role in ("tool", "function"):
            _append(messages, "user", [_tool_result(message)])
        elif role == "assistant":
            _append(messages, "assistant", _assistant_blocks(message))
        else:
            _append(messages, "user", _blocks(message.get("content")))
    limit = raw.get("max_completion_tokens") or raw.get("max_tokens")
    body: dict[str, Any] = {
        "model": raw.get("model"),
        "max_tokens": limit or DEFAULT_MAX_TOKENS,
        "messages": [_finish(m) for m in messages],
    }
    if system:
        body["system"] = "\n\n".join(system)
    _sampling(raw, body)
    _tools(raw, body)
    response_format = raw.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if raw.get("stream"):
        body["stream"] = True
    return body


def _refuse_unsupported(raw: dict[str, Any]) -> None:
    if (raw.get("n") or 1) > 1:
        raise UnsupportedRequest("Anthropic returns one choice per request (n > 1)")
    response_format = raw.get("response_format") or {}
    if response_format.get("type") == "json_object":
        raise UnsupportedRequest("Anthropic has no JSON mode without a schema")


def _sampling(raw: dict[str, Any], body: dict[str, Any]) -> None:
    stop = raw.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    temperature = raw.get("temperature")
    if temperature is not None:
        body["temperature"] = min(float(temperature), 1.0)  # OpenAI allows up to 2
    if raw.get("top_p") is not None:
        body["top_p"] = raw["top_p"]
    if raw.get("user"):
        body["metadata"] = {"user_id": raw["user"]}
    for name in _PASSED_THROUGH:
        if raw.get(name) is not None:
            body[name] = raw[name]


def _tools(raw: dict[str, Any], body: dict[str, Any]) -> None:
    tools = raw.get("tools")
    if tools:
        body["tools"] = [_tool(t) for t in tools]
    choice = raw.get("tool_choice")
    mapped: dict[str, Any] | None = None
    if choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif choice == "none":
        mapped = {"type": "none"}
    elif isinstance(choice, dict):
        mapped = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    if raw.get("parallel_tool_calls") is False and tools:
        mapped = mapped or {"type": "auto"}
        if mapped["type"] != "none":
            mapped["disable_parallel_tool_use"] = True
    if mapped is not None and (tools or mapped["type"] == "none"):
        body["tool_choice"] = mapped


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type", "function") != "function":
        raise UnsupportedRequest(f"Anthropic has no {tool.get('type')!r} tools")
    function = tool.get("function") or {}
    out: dict[str, Any] = {
        "name": function.get("name", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Anthropic wants user and assistant turns to alternate: merge runs of one role."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": list(blocks)})


def _finish(message: dict[str, Any]) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = message["content"]
    # tool results must open the user turn that answers the tool calls
    blocks.sort(key=lambda b: b["type"] != "tool_result")
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return {"role": message["role"], "content": blocks[0]["text"]}
    return {"role": message["role"], "content": blocks or ""}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = _blocks(message.get("content"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": _arguments(function.get("arguments")),
            }
        )
    return blocks


def _arguments(arguments: Any) -> dict[str, Any]:
    """Anthropic takes the input as an object; OpenAI carries it as a JSON string."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        value = None
    # a string that is not a JSON object is kept whole rather than lost
    return value if isinstance(value, dict) else {"arguments": arguments}


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": message.get("tool_call_id") or message.get("name") or "",
        "content": _plain_text(message.get("content")),
    }


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            url = part.get("image_url", {}).get("url", "")
            blocks.append({"type": "image", "source": _source(url)})
        elif kind == "file" and str(part.get("file", {}).get("file_data", "")).startswith("data:"):
            blocks.append({"type": "document", "source": _source(part["file"]["file_data"])})
        else:
            raise UnsupportedRequest(f"Anthropic takes no {kind!r} content parts here")
    return blocks


def _source(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type = header.split(";")[0] or "application/octet-stream"
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}
