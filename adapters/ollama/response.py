"""Ollama native answers in OpenAI terms: chat, generate and embed JSON, and NDJSON streams.

The kind of answer is told by its shape (``message``, ``response`` or
``embeddings``), so one adapter instance serves every route without per-request state.
A stream is one JSON object per line; the last has ``done: true`` with the token
counts, and becomes the finish chunk, the usage chunk and ``[DONE]``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec

from .. import chunks

_any = msgspec.json.Decoder()


def _created(value: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(value)).timestamp())
    except ValueError:
        return chunks.now()


def finish_reason(line: dict[str, Any], called_tools: bool) -> str:
    if called_tools:
        return "tool_calls"
    return "length" if line.get("done_reason") == "length" else "stop"


def tool_calls(calls: list[dict[str, Any]], first_index: int = 0) -> list[dict[str, Any]]:
    """Ollama sends each call whole, its arguments an object; OpenAI wants a JSON string."""
    out = []
    for offset, call in enumerate(calls):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        out.append(
            {
                "index": first_index + offset,
                "id": call.get("id") or chunks.new_id("call_"),
                "type": "function",
                "function": {
                    "name": function.get("name", ""),
                    "arguments": arguments
                    if isinstance(arguments, str)
                    else json.dumps(arguments or {}, separators=(",", ":")),
                },
            }
        )
    return out


def to_openai(body: bytes) -> bytes:
    try:
        answer = _any.decode(body)
    except msgspec.DecodeError:
        return body  # the forward stage reports it as malformed
    if not isinstance(answer, dict):
        return body
    if "embeddings" in answer:
        return _embeddings(answer)
    model = str(answer.get("model", ""))
    prompt, output = int(answer.get("prompt_eval_count") or 0), int(answer.get("eval_count") or 0)
    created = _created(answer.get("created_at"))
    if "response" in answer and "message" not in answer:
        choice = {
            "index": 0,
            "text": answer.get("response", ""),
            "logprobs": None,
            "finish_reason": finish_reason(answer, False),
        }
        return chunks.encode(
            {
                "id": chunks.new_id("cmpl-"),
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": chunks.usage(prompt, output),
            }
        )
    message = answer.get("message") or {}
    calls = tool_calls(message.get("tool_calls") or [])
    reply: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if calls:
        reply["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    if message.get("thinking"):
        reply["reasoning_content"] = message["thinking"]
    return chunks.completion(
        chunks.new_id("chatcmpl-"),
        model,
        reply,
        finish_reason(answer, bool(calls)),
        prompt,
        output,
        created,
    )


def _embeddings(answer: dict[str, Any]) -> bytes:
    tokens = int(answer.get("prompt_eval_count") or 0)
    data = [
        {"object": "embedding", "index": i, "embedding": vector}
        for i, vector in enumerate(answer.get("embeddings") or [])
    ]
    return chunks.encode(
        {
            "object": "list",
            "data": data,
            "model": answer.get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


class OllamaStreamTranslator:
    """NDJSON lines in, OpenAI SSE chunks out, one chunk per line with something in it."""

    def __init__(self) -> None:
        self.lines = chunks.LineSplitter()
        self.writer = chunks.ChunkWriter(chunks.new_id("chatcmpl-"), "")
        self.started = False
        self.tools = 0
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._line(line) for line in self.lines.feed(data))

    def close(self) -> bytes:
        return self._line(self.lines.rest())

    def _line(self, line: bytes) -> bytes:
        if self.ended or not line.strip():
            return b""
        try:
            item = _any.decode(line)
        except msgspec.DecodeError:
            item = None
        if not isinstance(item, dict) or "error" in item:
            self.ended = True
            message = item.get("error") if isinstance(item, dict) else None
            return chunks.error_event(str(message or "Malformed stream line."), 502, "ollama_error")
        out: list[bytes] = []
        if not self.started:
            self.started = True
            self.writer.model = str(item.get("model", ""))
            self.writer.created = _created(item.get("created_at"))
            if "message" in item:
                out.append(self.writer.chunk({"role": "assistant", "content": ""}))
        if "message" in item:
            out.extend(self._chat(item))
        elif item.get("response"):
            out.append(self.writer.text_chunk(item["response"]))
        if item.get("done"):
            self.ended = True
            reason = finish_reason(item, self.tools > 0)
            if "message" in item:
                out.append(self.writer.chunk({}, reason))
            else:
                out.append(self.writer.text_chunk("", reason))
            prompt = int(item.get("prompt_eval_count") or 0)
            out += [self.writer.usage_chunk(prompt, int(item.get("eval_count") or 0)), chunks.DONE]
        return b"".join(out)

    def _chat(self, item: dict[str, Any]) -> list[bytes]:
        message = item.get("message") or {}
        out = []
        if message.get("thinking"):
            out.append(self.writer.chunk({"reasoning_content": message["thinking"]}))
        if message.get("content"):
            out.append(self.writer.chunk({"content": message["content"]}))
        calls = message.get("tool_calls") or []
        if calls:
            out.append(self.writer.chunk({"tool_calls": tool_calls(calls, self.tools)}))
            self.tools += len(calls)
        return out
