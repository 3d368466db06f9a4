"""A fake text-generation-inference server (TGI's Messages API), as TGI 2.x answers.

``POST /v1/chat/completions`` echoes ``"echo: " + <last user text>``, with TGI's
habits: ``"id": ""`` on stream chunks, a ``system_fingerprint`` with TGI's version,
``"usage": null`` on each chunk.  The recorded streams below keep TGI's deviations
from OpenAI's format: tool call deltas as one object (not a list) with a ``null``
name after the first, tool arguments as an object in JSON answers, and errors as
``{"error": "...", "error_type": "..."}``.
"""

from __future__ import annotations

import json
from typing import Any

from support.fake_provider import FakeProvider, Recorded, Reply, last_user_text

FINGERPRINT = "2.4.1-sha-d2ed52f-native"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data:" + json.dumps(payload).encode() + b"\n\n"  # TGI writes no space after "data:"


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "id": "",
        "created": 1724077848,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def text_stream(model: str, text: str, done: bool = True) -> list[bytes]:
    words = text.split(" ")
    pieces = [w + " " for w in words[:-1]] + words[-1:]
    events = [sse(chunk(model, {"role": "assistant", "content": p})) for p in pieces]
    last = chunk(model, {"role": "assistant", "content": ""}, "stop")
    last["usage"] = {
        "prompt_tokens": 11,
        "completion_tokens": len(pieces),
        "total_tokens": 11 + len(pieces),
    }
    events.append(sse(last))
    if done:
        events.append(b"data: [DONE]\n\n")
    return events


MODEL = "meta-llama/Llama-3.1-8B-Instruct"

TOOL_STREAM = [
    sse(
        chunk(
            MODEL,
            {
                "role": "assistant",
                "tool_calls": {
                    "index": 0,
                    "id": "",
                    "type": "function",
                    "function": {"name": "get_current_weather", "arguments": ""},
                },
            },
        )
    ),
    *(
        sse(
            chunk(
                MODEL,
                {
                    "role": "assistant",
                    "tool_calls": {
                        "index": 0,
                        "id": "",
                        "type": "function",
                        "function": {"name": None, "arguments": fragment},
                    },
                },
            )
        )
        for fragment in ['{"', "location", '":"', "Paris", '"}']
    ),
    sse(chunk(MODEL, {"role": "assistant", "content": ""}, "tool_calls")),
    b"data: [DONE]\n\n",
]

TOOL_ANSWER = {
    "object": "chat.completion",
    "id": "",
    "created": 1724077848,
    "model": MODEL,
    "system_fingerprint": FINGERPRINT,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "0",
                        "type": "function",
                        "function": {
                            "description": None,
                            "name": "get_current_weather",
                            "arguments": {"location": "Paris", "format": "celsius"},
                        },
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 310, "completion_tokens": 29, "total_tokens": 339},
}

GENERATION_ERROR_EVENT = sse(
    {
        "error": "Request failed during generation: Server error: CUDA out of memory",
        "error_type": "generation",
    }
)


def error(status: int, text: str, kind: str) -> Reply:
    return Reply(status=status, json={"error": text, "error_type": kind})


def _chat(request: Recorded) -> Reply:
    body = request.json
    model = body.get("model") or "tgi"
    text = "echo: " + last_user_text(body)
    if body.get("stream"):
        return Reply(chunks=text_stream(model, text), content_type="text/event-stream")
    answer = {
        "object": "chat.completion",
        "id": "",
        "created": 1724077848,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }
    return Reply(json=answer)


class FakeTGI(FakeProvider):
    def __init__(self) -> None:
        super().__init__({"/v1/chat/completions": _chat})
