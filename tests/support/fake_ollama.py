"""A fake Ollama native API: ``/api/chat``, ``/api/generate``, ``/api/embed``, NDJSON streams.

Answers echo ``"echo: " + <last user text>`` (or the prompt), shaped as Ollama sends
them: ``created_at`` timestamps with nanoseconds, ``done_reason`` and the
``prompt_eval_count`` / ``eval_count`` token counts on the last line only.  Streams
are NDJSON, one object per line (Ollama streams unless ``"stream": false``).
"""

from __future__ import annotations

import json
from typing import Any

from support.fake_provider import FakeProvider, Recorded, Reply, last_user_text

CREATED_AT = "2024-07-22T20:51:46.123456789Z"

# A recorded tool call: Ollama sends the call whole, arguments as an object, no id.
TOOL_CALL_LINES = [
    {
        "model": "llama3.2",
        "created_at": CREATED_AT,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Toronto"}}}],
        },
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop",
        "done": True,
        "total_duration": 885095291,
        "load_duration": 3753500,
        "prompt_eval_count": 156,
        "prompt_eval_duration": 298000000,
        "eval_count": 23,
        "eval_duration": 582000000,
    },
]


def ndjson(lines: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(line).encode() + b"\n" for line in lines]


def chat_lines(model: str, text: str, prompt_tokens: int = 26) -> list[dict[str, Any]]:
    words = text.split(" ")
    pieces = [w + " " for w in words[:-1]] + words[-1:]
    lines: list[dict[str, Any]] = [
        {
            "model": model,
            "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": p},
            "done": False,
        }
        for p in pieces
    ]
    lines.append(
        {
            "model": model,
            "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": ""},
            "done_reason": "stop",
            "done": True,
            "total_duration": 4883583458,
            "prompt_eval_count": prompt_tokens,
            "eval_count": len(pieces),
        }
    )
    return lines


def _chat(request: Recorded) -> Reply:
    body = request.json
    model = body.get("model", "llama3.2")
    lines = chat_lines(model, "echo: " + last_user_text(body))
    if body.get("stream", True):
        return Reply(chunks=ndjson(lines), content_type="application/x-ndjson")
    final = dict(lines[-1])
    final["message"] = {
        "role": "assistant",
        "content": "".join(line["message"]["content"] for line in lines),
    }
    return Reply(json=final)


def _generate(request: Recorded) -> Reply:
    body = request.json
    model = body.get("model", "llama3.2")
    text = "echo: " + str(body.get("prompt", ""))
    lines = [
        {"model": model, "created_at": CREATED_AT, "response": word, "done": False}
        for word in text.split(" ")
    ]
    lines.append(
        {
            "model": model,
            "created_at": CREATED_AT,
            "response": "",
            "done": True,
            "done_reason": "length",
            "prompt_eval_count": 5,
            "eval_count": len(lines),
        }
    )
    if body.get("stream", True):
        return Reply(chunks=ndjson(lines), content_type="application/x-ndjson")
    final = dict(lines[-1], response=" ".join(line["response"] for line in lines[:-1]))
    return Reply(json=final)


def _embed(request: Recorded) -> Reply:
    body = request.json
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    vectors = [[round(len(t) / 10, 3), 0.5, -0.25] for t in texts]
    return Reply(
        json={
            "model": body.get("model"),
            "embeddings": vectors,
            "total_duration": 14143917,
            "load_duration": 1019500,
            "prompt_eval_count": 8 * len(texts),
        }
    )


class FakeOllama(FakeProvider):
    def __init__(self) -> None:
        super().__init__({"/api/chat": _chat, "/api/generate": _generate, "/api/embed": _embed})
