"""The stack's OpenAI SSE stream as Anthropic's streaming events, in order.

The first chunk opens the message (``message_start``); content deltas go into a text
block and each tool call into a ``tool_use`` block whose argument fragments are
``input_json_delta`` events, blocks opened and closed in the order the deltas come;
the finish reason and the usage chunk make ``message_delta`` and ``message_stop``
at ``[DONE]``.  One event per delta: nothing is merged away or reordered.  An error
event in the stream becomes Anthropic's ``error`` event, and the stream ends there.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..sse import DONE, EventSplitter, event_data
from ..wire import ChatCompletionChunk
from .anthropic_response import ERROR_TYPES, stop_reason

_chunk_decoder = msgspec.json.Decoder(ChatCompletionChunk)
_encoder = msgspec.json.Encoder()


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encoder.encode(payload) + b"\n\n"


class AnthropicEventWriter:
    def __init__(self) -> None:
        self.splitter = EventSplitter()
        self.started = False
        self.ended = False
        self.open_block: int | None = None  # index of the block being written
        self.open_kind = ""
        self.blocks = 0
        self.tool_blocks: dict[int, int] = {}  # OpenAI tool call index → block index
        self.finish_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for raw in self.splitter.feed(data):
            if not self.ended:
                out.extend(self._event(raw))
        return b"".join(out)

    def close(self) -> bytes:
        rest = self.splitter.rest()
        return self.feed(rest + b"\n\n") if rest.strip() else b""

    def _event(self, raw: bytes) -> list[bytes]:
        if raw == DONE:
            return self._finish()
        payload = event_data(raw)
        if payload is None:
            return []
        if b'"error"' in payload:
            error = msgspec.json.decode(payload)
            if isinstance(error, dict) and isinstance(error.get("error"), dict):
                return self._error(error["error"])
        try:
            chunk = _chunk_decoder.decode(payload)
        except msgspec.MsgspecError:
            return self._error({"message": "The backend sent a malformed stream."})
        out = [] if self.started else [self._start(chunk)]
        if chunk.usage is not None:
            self.input_tokens = chunk.usage.prompt_tokens
            self.output_tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # a Messages answer has one choice
            delta = choice.delta
            if delta.content:
                out.extend(self._text(delta.content))
            for call in delta.tool_calls or ():
                out.extend(self._tool(call))
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
                out.extend(self._close_block())
        return out

    def _start(self, chunk: ChatCompletionChunk) -> bytes:
        self.started = True
        message: dict[str, Any] = {
            "id": chunk.id,
            "type": "message",
            "role": "assistant",
            "model": chunk.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # the stack's usage comes at the end: message_delta carries it
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": message})

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close_block()
        self.open_block, self.open_kind = self.blocks, kind
        self.blocks += 1
        start = {"type": "content_block_start", "index": self.open_block, "content_block": block}
        out.append(event("content_block_start", start))
        return out

    def _close_block(self) -> list[bytes]:
        if self.open_block is None:
            return []
        index, self.open_block, self.open_kind = self.open_block, None, ""
        return [event("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _text(self, text: str) -> list[bytes]:
        out = [] if self.open_kind == "text" else self._open("text", {"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": text}
        out.append(self._delta(delta))
        return out

    def _tool(self, call: dict[str, Any]) -> list[bytes]:
        number = int(call.get("index", 0))
        function = call.get("function") or {}
        out: list[bytes] = []
        if number not in self.tool_blocks:
            block = {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": {},
            }
            out = self._open("tool_use", block)
            self.tool_blocks[number] = self.blocks - 1
        arguments = function.get("arguments")
        if arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(self._delta(delta, self.tool_blocks[number]))
        return out

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        position = self.open_block if index is None else index
        payload = {"type": "content_block_delta", "index": position, "delta": delta}
        return event("content_block_delta", payload)

    def _finish(self) -> list[bytes]:
        self.ended = True
        if not self.started:
            return self._error({"message": "The stream ended before any answer."})
        out = self._close_block()
        delta = {"stop_reason": stop_reason(self.finish_reason), "stop_sequence": None}
        usage = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        out.append(
            event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        out.append(event("message_stop", {"type": "message_stop"}))
        return out

    def _error(self, error: dict[str, Any]) -> list[bytes]:
        self.ended = True
        # an Anthropic backend's own error type travels as the OpenAI error's code
        code, kind = error.get("code"), error.get("type")
        kind = code if code in _ANTHROPIC_TYPES else kind if kind in _ANTHROPIC_TYPES else None
        kind = kind or "api_error"
        message = str(error.get("message") or "The stream failed.")
        return [event("error", {"type": "error", "error": {"type": kind, "message": message}})]


_ANTHROPIC_TYPES = frozenset({*ERROR_TYPES.values(), "api_error"})
