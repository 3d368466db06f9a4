"""Anthropic's streaming events as OpenAI ``chat.completion.chunk`` events, in order.

=======================================  =============================================
Anthropic event                          OpenAI chunk(s)
=======================================  =============================================
``message_start``                        role chunk (id and model of the message)
``content_block_start`` text             a content delta when it already holds text
``content_block_start`` tool_use         ``tool_calls`` delta: index, id, name, ``""``
``content_block_delta`` text_delta       content delta
``content_block_delta`` input_json_delta ``tool_calls`` delta carrying the argument text
``content_block_delta`` thinking_delta   ``reasoning_content`` delta
``content_block_stop``, ``ping``         nothing (nothing to say)
``message_delta``                        finish chunk (``finish_reason``)
``message_stop``                         usage chunk, then ``[DONE]``
``error``                                an OpenAI-style error event
=======================================  =============================================

Every delta is passed on as it comes, one chunk per event, so nothing is merged away
or reordered.  Tool calls are numbered in the order their blocks start.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .. import chunks
from .response import ERROR_STATUS, Usage, error_detail, finish_reason


class Event(msgspec.Struct):
    type: str
    index: int = 0
    message: dict[str, Any] | None = None
    content_block: dict[str, Any] | None = None
    delta: dict[str, Any] | None = None
    usage: Usage | None = None


_event_decoder = msgspec.json.Decoder(Event)


class AnthropicStreamTranslator:
    def __init__(self) -> None:
        self.reader = chunks.SSEReader()
        self.writer = chunks.ChunkWriter(chunks.new_id("msg_"), "")
        self.tool_index: dict[int, int] = {}  # content block index → OpenAI tool call index
        self.usage = Usage()
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        return self._translate(self.reader.feed(data))

    def close(self) -> bytes:
        return self._translate(self.reader.close())

    def _translate(self, events: list[tuple[str, bytes]]) -> bytes:
        out: list[bytes] = []
        for name, data in events:
            if not self.ended:
                out.extend(self._event(name, data))
        return b"".join(out)

    def _event(self, name: str, data: bytes) -> list[bytes]:
        if name == "error":
            return [self._error(data)]
        try:
            event = _event_decoder.decode(data)
        except msgspec.MsgspecError:
            return [self._error(data)]
        kind = event.type
        if kind == "message_start":
            return self._start(event.message or {})
        if kind == "content_block_start":
            return self._block_start(event.index, event.content_block or {})
        if kind == "content_block_delta":
            return self._delta(event.index, event.delta or {})
        if kind == "message_delta":
            self._count(event.usage)
            stop = (event.delta or {}).get("stop_reason")
            return [self.writer.chunk({}, finish_reason(stop))]
        if kind == "message_stop":
            self.ended = True
            usage = self.usage
            return [
                self.writer.usage_chunk(usage.prompt_tokens(), usage.output_tokens or 0),
                chunks.DONE,
            ]
        if kind == "error":
            return [self._error(data)]
        return []  # ping, content_block_stop, and event types added after this was written

    def _start(self, message: dict[str, Any]) -> list[bytes]:
        self.writer.id = str(message.get("id") or self.writer.id)
        self.writer.model = str(message.get("model") or "")
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._count(msgspec.convert(usage, Usage))
        return [self.writer.chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: int, block: dict[str, Any]) -> list[bytes]:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [self.writer.chunk({"content": block["text"]})]
        if kind == "tool_use":
            number = self.tool_index[index] = len(self.tool_index)
            call = {
                "index": number,
                "id": block.get("id", ""),
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": ""},
            }
            out = [self.writer.chunk({"tool_calls": [call]})]
            if block.get("input"):  # a complete input given at the start, never seen in practice
                out.append(self._arguments(number, chunks.encode(block["input"]).decode()))
            return out
        if kind == "thinking" and block.get("thinking"):
            return [self.writer.chunk({"reasoning_content": block["thinking"]})]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[bytes]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self.writer.chunk({"content": delta.get("text", "")})]
        if kind == "input_json_delta":
            partial = delta.get("partial_json", "")
            if not partial:
                return []  # Anthropic opens every tool input with an empty fragment
            return [self._arguments(self.tool_index.get(index, 0), partial)]
        if kind == "thinking_delta":
            return [self.writer.chunk({"reasoning_content": delta.get("thinking", "")})]
        return []  # signature and citation deltas have no OpenAI counterpart

    def _arguments(self, number: int, text: str) -> bytes:
        call = {"index": number, "function": {"arguments": text}}
        return self.writer.chunk({"tool_calls": [call]})

    def _count(self, usage: Usage | None) -> None:
        if usage is None:
            return
        # counts are running totals: a later one replaces an earlier one, and a count a
        # message_delta leaves out keeps its message_start value
        for name in usage.__struct_fields__:
            value = getattr(usage, name)
            if value is not None:
                setattr(self.usage, name, value)

    def _error(self, data: bytes) -> bytes:
        self.ended = True
        kind, message = error_detail(data) or ("api_error", data.decode("utf-8", "replace"))
        return chunks.error_event(message or kind, ERROR_STATUS.get(kind, 500), kind)
