"""OpenAI requests as Ollama native requests (``/api/chat``, ``/api/generate``, ``/api/embed``).

Sampling parameters move into ``options`` under Ollama's names (``max_tokens`` is
``num_predict``); images travel as bare base64 in the message's ``images`` (Ollama
cannot fetch a URL, so an image URL is refused); tool calls carry their arguments
as an object; a tool result names its tool (``tool_name``), looked up from the call
it answers; JSON mode is ``format: "json"`` and a JSON schema is ``format: <schema>``.
``stream`` is always sent, because Ollama streams unless told not to.
"""

from __future__ import annotations

import json
from typing import Any

from ..base import UnsupportedRequest

_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


def chat_body(raw: dict[str, Any]) -> dict[str, Any]:
    if (raw.get("n") or 1) > 1:
        raise UnsupportedRequest("Ollama returns one choice per request (n > 1)")
    tool_names: dict[str, str] = {}
    messages = [_message(m, tool_names) for m in raw.get("messages") or []]
    body: dict[str, Any] = {
        "model": raw.get("model"),
        "messages": messages,
        "stream": bool(raw.get("stream")),
    }
    _common(raw, body)
    if raw.get("tools"):
        body["tools"] = raw["tools"]  # Ollama takes OpenAI's function tool shape as it is
    response_format = raw.get("response_format") or {}
    if response_format.get("type") == "json_object":
        body["format"] = "json"
    elif response_format.get("type") == "json_schema":
        body["format"] = (response_format.get("json_schema") or {}).get("schema") or "json"
    return body


def generate_body(raw: dict[str, Any]) -> dict[str, Any]:
    prompt = raw.get("prompt", "")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise UnsupportedRequest("Ollama takes one text prompt per request")
        prompt = prompt[0]
    body: dict[str, Any] = {
        "model": raw.get("model"),
        "prompt": prompt,
        "stream": bool(raw.get("stream")),
    }
    if raw.get("suffix"):
        body["suffix"] = raw["suffix"]
    _common(raw, body)
    return body


def embed_body(raw: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": raw.get("model"), "input": raw.get("input", "")}
    if raw.get("dimensions"):
        body["dimensions"] = raw["dimensions"]
    return body


def _common(raw: dict[str, Any], body: dict[str, Any]) -> None:
    options = {name: raw[key] for key, name in _OPTIONS.items() if raw.get(key) is not None}
    limit = raw.get("max_completion_tokens") or raw.get("max_tokens")
    if limit:
        options["num_predict"] = limit
    stop = raw.get("stop")
    if stop:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if options:
        body["options"] = options
    if raw.get("keep_alive") is not None:
        body["keep_alive"] = raw["keep_alive"]


def _message(message: dict[str, Any], tool_names: dict[str, str]) -> dict[str, Any]:
    given = message.get("role") or "user"
    role = {"developer": "system", "function": "tool"}.get(given, given)
    text, images = _content(message.get("content"))
    out: dict[str, Any] = {"role": role, "content": text}
    if images:
        out["images"] = images
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = [_tool_call(c, tool_names) for c in message["tool_calls"]]
    if role == "tool":
        name = tool_names.get(message.get("tool_call_id") or "") or message.get("name")
        if name:
            out["tool_name"] = name
    return out


def _tool_call(call: dict[str, Any], tool_names: dict[str, str]) -> dict[str, Any]:
    function = call.get("function") or {}
    name = function.get("name", "")
    if call.get("id"):
        tool_names[call["id"]] = name
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments else {}
        except ValueError:
            arguments = {"arguments": arguments}
    return {"function": {"name": name, "arguments": arguments}}


def _content(content: Any) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            texts.append(part.get("text", ""))
        elif kind == "image_url":
            url = str(part.get("image_url", {}).get("url", ""))
            if not url.startswith("data:"):
                raise UnsupportedRequest("Ollama takes images as data, not as URLs")
            images.append(url.partition(",")[2])
        else:
            raise UnsupportedRequest(f"Ollama takes no {kind!r} content parts")
    return "\n".join(texts), images
