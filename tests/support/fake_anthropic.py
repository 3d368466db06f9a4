# ruff: noqa: E501  (the recorded stream below keeps its lines as Anthropic sent them)
"""A fake Anthropic Messages API: ``POST /v1/messages``, JSON or SSE, as Anthropic sends them.

By default it echoes: the answer is ``"echo: " + <the last user text>``, streamed as
Anthropic streams (``message_start``, a text block with a ``ping`` inside, one
``text_delta`` per word, ``message_delta`` with the usage, ``message_stop``).  The
recorded streams below are Anthropic's documented examples, byte for byte in shape.
"""

from __future__ import annotations

import json
from typing import Any

from support.fake_provider import FakeProvider, Recorded, Reply, last_user_text

MODEL = "claude-3-5-haiku-20241022"


def event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def message(text: str, model: str = MODEL, input_tokens: int = 12) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": len(text.split())},
    }


def text_stream(text: str, model: str = MODEL, input_tokens: int = 12) -> list[bytes]:
    start = message("", model, input_tokens)
    start.update(
        content=[], stop_reason=None, usage={"input_tokens": input_tokens, "output_tokens": 1}
    )
    words = text.split(" ")
    pieces = [w + " " for w in words[:-1]] + words[-1:]
    events = [
        event("message_start", {"type": "message_start", "message": start}),
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        event("ping", {"type": "ping"}),
    ]
    events += [
        event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
        )
        for p in pieces
    ]
    events += [
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ]
    return events


# Anthropic's documented tool-use stream: text, then a tool_use block whose input
# arrives as input_json_delta fragments (the first one empty).
TOOL_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-3-haiku-20240307","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let's check the weather for San Francisco, CA:"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"San Francisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o, CA\\", \\"unit\\": \\"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""

TOOL_MESSAGE = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-sonnet-20241022",
    "content": [
        {"type": "text", "text": "I'll check the weather."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "celsius"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 384,
        "output_tokens": 60,
        "cache_read_input_tokens": 16,
    },
}

OVERLOADED_EVENT = (
    b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
    b'"message": "Overloaded"}}\n\n'
)


def error(status: int, kind: str, text: str) -> Reply:
    body = {"type": "error", "error": {"type": kind, "message": text}}
    return Reply(status=status, json=body)


def stream_reply(events: list[bytes] | bytes) -> Reply:
    chunks = [events] if isinstance(events, bytes) else events
    return Reply(chunks=chunks, content_type="text/event-stream")


def _messages(request: Recorded) -> Reply:
    body = request.json
    text = "echo: " + last_user_text(body)
    if body.get("stream"):
        return stream_reply(text_stream(text, body.get("model", MODEL)))
    return Reply(json=message(text, body.get("model", MODEL)))


class FakeAnthropic(FakeProvider):
    def __init__(self) -> None:
        super().__init__({"/v1/messages": _messages})
