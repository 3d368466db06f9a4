"""A cached answer in both shapes: assembled from a stream, replayed as one.

Answers are stored as one OpenAI ``chat.completion`` JSON whichever way they
arrived, and served as JSON or as a well-formed SSE stream (role chunk, content,
finish chunk, usage when asked, ``[DONE]``) according to what the caller asked.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..sse import DONE, data_event, event_data
from ..wire import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
)

_chunk_decoder = msgspec.json.Decoder(ChatCompletionChunk)
_completion_decoder = msgspec.json.Decoder(ChatCompletion)
_encoder = msgspec.json.Encoder()


class CacheEntry(msgspec.Struct, array_like=True):
    completion: bytes  # chat.completion JSON
    model: str  # the model that answered
    backend: str
    created: float


class StreamAssembler:
    """Builds one chat.completion from SSE events; ``complete`` only for a clean end."""

    def __init__(self) -> None:
        self.head: ChatCompletionChunk | None = None
        self.contents: dict[int, list[str]] = {}
        self.roles: dict[int, str] = {}
        self.tool_calls: dict[int, dict[int, dict[str, Any]]] = {}
        self.finish: dict[int, str] = {}
        self.usage: Usage | None = None
        self.done = False
        self.broken = False

    def feed(self, event: bytes) -> None:
        payload = event_data(event)
        if payload is None:
            return
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = _chunk_decoder.decode(payload)
        except msgspec.MsgspecError:
            self.broken = True  # garbage: never store this answer
            return
        if b'"error"' in payload and "error" in msgspec.json.decode(payload):
            self.broken = True  # an error event: never store this answer
            return
        if self.head is None:
            self.head = chunk
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            index = choice.index
            delta = choice.delta
            if delta.role:
                self.roles[index] = delta.role
            if delta.content:
                self.contents.setdefault(index, []).append(delta.content)
            for call in delta.tool_calls or ():
                slot = self.tool_calls.setdefault(index, {}).setdefault(
                    int(call.get("index", 0)),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
            if choice.finish_reason == "error":
                self.broken = True
            elif choice.finish_reason:
                self.finish[index] = choice.finish_reason

    @property
    def complete(self) -> bool:
        indexes = set(self.roles) | set(self.contents) | set(self.tool_calls)
        return (
            self.done
            and not self.broken
            and self.head is not None
            and bool(indexes)
            and indexes <= set(self.finish)
        )

    def completion(self) -> ChatCompletion:
        head = self.head or ChatCompletionChunk()
        choices = []
        for index in sorted(self.finish):
            calls = self.tool_calls.get(index)
            message = ResponseMessage(
                role=self.roles.get(index, "assistant"),
                content="".join(self.contents[index]) if index in self.contents else None,
                tool_calls=[calls[i] for i in sorted(calls)] if calls else None,
            )
            choices.append(Choice(index=index, message=message, finish_reason=self.finish[index]))
        return ChatCompletion(
            id=head.id,
            created=head.created,
            model=head.model,
            choices=choices,
            usage=self.usage,
            system_fingerprint=head.system_fingerprint,
        )


def completion_complete(body: bytes) -> ChatCompletion | None:
    """The decoded answer if it is a finished chat.completion, else None."""
    try:
        completion = _completion_decoder.decode(body)
    except msgspec.MsgspecError:
        return None
    if not completion.choices or any(c.finish_reason is None for c in completion.choices):
        return None
    return completion


def as_sse(completion_json: bytes, include_usage: bool) -> bytes:
    """Replay a stored answer as the SSE stream a backend would have sent."""
    completion = _completion_decoder.decode(completion_json)
    base = {
        "id": completion.id,
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": completion.system_fingerprint,
    }
    events: list[bytes] = []
    for choice in completion.choices:
        message = choice.message
        first = ChunkChoice(index=choice.index, delta=Delta(role=message.role, content=""))
        events.append(_event(base, [first]))
        if message.content:
            events.append(_event(base, [ChunkChoice(choice.index, Delta(content=message.content))]))
        if message.tool_calls:
            calls = [{"index": i, **call} for i, call in enumerate(message.tool_calls)]
            events.append(_event(base, [ChunkChoice(choice.index, Delta(tool_calls=calls))]))
        events.append(
            _event(base, [ChunkChoice(choice.index, Delta(), finish_reason=choice.finish_reason)])
        )
    if include_usage and completion.usage is not None:
        events.append(_event(base, [], completion.usage))
    events.append(DONE)
    return b"".join(events)


def _event(base: dict[str, Any], choices: list[ChunkChoice], usage: Usage | None = None) -> bytes:
    chunk = ChatCompletionChunk(choices=choices, usage=usage, **base)
    return data_event(_encoder.encode(chunk))
