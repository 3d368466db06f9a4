"""MemoryStore (TTL, LRU) and the stream assembler / SSE replay of cached answers."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from optiroute_mw.cache.replay import StreamAssembler, as_sse, completion_complete
from optiroute_mw.cache.store import MemoryStore
from optiroute_mw.sse import DONE, EventSplitter, data_event

# --- MemoryStore ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_get_of_missing_key_is_none() -> None:
    store = MemoryStore()
    assert await store.get("nope") is None


async def test_entry_lives_until_its_ttl_then_expires() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.set("k", b"v", ttl_s=10)
    clock.now += 9.999
    assert await store.get("k") == b"v"
    clock.now += 0.001
    assert await store.get("k") is None
    assert len(store) == 0  # an expired entry is dropped, not kept


async def test_each_entry_has_its_own_ttl() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.set("short", b"1", ttl_s=5)
    await store.set("long", b"2", ttl_s=50)
    clock.now += 6
    assert await store.get("short") is None
    assert await store.get("long") == b"2"


async def test_set_again_replaces_value_and_renews_ttl() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.set("k", b"old", ttl_s=10)
    clock.now += 8
    await store.set("k", b"new", ttl_s=10)
    clock.now += 8
    assert await store.get("k") == b"new"
    assert len(store) == 1


async def test_delete() -> None:
    store = MemoryStore()
    await store.set("k", b"v", ttl_s=10)
    await store.delete("k")
    await store.delete("k")  # deleting twice is fine
    assert await store.get("k") is None


async def test_lru_bound_evicts_least_recently_set() -> None:
    store = MemoryStore(max_entries=2, clock=Clock())
    await store.set("a", b"1", 60)
    await store.set("b", b"2", 60)
    await store.set("c", b"3", 60)
    assert len(store) == 2
    assert await store.get("a") is None
    assert await store.get("b") == b"2"
    assert await store.get("c") == b"3"


async def test_get_refreshes_recency() -> None:
    store = MemoryStore(max_entries=2, clock=Clock())
    await store.set("a", b"1", 60)
    await store.set("b", b"2", 60)
    assert await store.get("a") == b"1"  # a is now the most recent
    await store.set("c", b"3", 60)
    assert await store.get("b") is None
    assert await store.get("a") == b"1"
    assert await store.get("c") == b"3"


async def test_overwrite_refreshes_recency() -> None:
    store = MemoryStore(max_entries=2, clock=Clock())
    await store.set("a", b"1", 60)
    await store.set("b", b"2", 60)
    await store.set("a", b"1b", 60)
    await store.set("c", b"3", 60)
    assert await store.get("b") is None
    assert await store.get("a") == b"1b"


# --- StreamAssembler --------------------------------------------------------------------

HEAD: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_1",
}
USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {**HEAD, "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return data_event(json.dumps(body).encode())


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish}


def full_stream(content: list[str] | None = None, usage: bool = True) -> list[bytes]:
    parts = content if content is not None else ["Hel", "lo", " world"]
    events = [chunk([delta(role="assistant", content="")])]
    events += [chunk([delta(content=piece)]) for piece in parts]
    events.append(chunk([delta(finish="stop")]))
    if usage:
        events.append(chunk([], usage=USAGE))
    events.append(DONE)
    return events


def assemble(events: list[bytes]) -> StreamAssembler:
    assembler = StreamAssembler()
    for event in events:
        assembler.feed(event)
    return assembler


def test_complete_stream_assembles_one_completion() -> None:
    assembler = assemble(full_stream())
    assert assembler.complete
    completion = assembler.completion()
    assert completion.id == "chatcmpl-1"
    assert completion.model == "gpt-4o-mini"
    assert completion.created == 1700000000
    assert completion.system_fingerprint == "fp_1"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello world"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (11, 3, 14)


def feed_in_pieces(raw: bytes, size: int) -> tuple[StreamAssembler, bytes]:
    splitter = EventSplitter()
    assembler = StreamAssembler()
    for start in range(0, len(raw), size):
        for event in splitter.feed(raw[start : start + size]):
            assembler.feed(event)
    return assembler, splitter.rest()


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_stream_through_the_splitter_in_odd_pieces(size: int) -> None:
    assembler, rest = feed_in_pieces(b"".join(full_stream()), size)
    assert rest == b""
    assert assembler.complete
    assert assembler.completion().choices[0].message.content == "Hello world"


def test_crlf_stream_in_whole_events() -> None:
    events = [e.replace(b"\n", b"\r\n") for e in full_stream()]
    splitter = EventSplitter()
    assembler = StreamAssembler()
    for event in events:
        for part in splitter.feed(event):
            assembler.feed(part)
    assert assembler.complete
    assert assembler.completion().choices[0].message.content == "Hello world"


def test_crlf_split_across_reads() -> None:
    splitter = EventSplitter()
    out = splitter.feed(b"data: 1\r\n\r") + splitter.feed(b"\ndata: [DONE]\r\n\r\n")
    assert out == [b"data: 1\n\n", DONE]
    assembler, rest = feed_in_pieces(b"".join(full_stream()).replace(b"\n", b"\r\n"), 7)
    assert rest == b""
    assert assembler.complete


def test_comments_and_pings_are_ignored() -> None:
    events = full_stream()
    events.insert(1, b": keep-alive\n\n")
    events.insert(3, b": ping\n\n")
    assembler = assemble(events)
    assert assembler.complete
    assert assembler.completion().choices[0].message.content == "Hello world"


def test_complete_without_usage() -> None:
    assembler = assemble(full_stream(usage=False))
    assert assembler.complete
    assert assembler.completion().usage is None


def test_missing_done_is_not_complete() -> None:
    assembler = assemble(full_stream()[:-1])
    assert not assembler.complete


def test_missing_finish_reason_is_not_complete() -> None:
    events = [e for e in full_stream() if b'"finish_reason": "stop"' not in e]
    assert len(events) == len(full_stream()) - 1
    assert not assemble(events).complete


def test_error_event_instead_of_the_end_is_not_complete() -> None:
    events = full_stream()[:3]
    events.append(data_event(b'{"error": {"message": "overloaded", "type": "server_error"}}'))
    events.append(DONE)
    assert not assemble(events).complete


def test_garbage_event_is_not_complete() -> None:
    events = full_stream()
    events.insert(2, b"data: upstream exploded\n\n")
    assert not assemble(events).complete


def test_error_event_after_finish_is_not_complete() -> None:
    events = full_stream(usage=False)
    events.insert(-1, data_event(b'{"error": {"message": "overloaded", "type": "server_error"}}'))
    assert not assemble(events).complete


def test_empty_stream_with_done_is_not_complete() -> None:
    assert not assemble([DONE]).complete


def test_two_choices_need_both_finished() -> None:
    events = [
        chunk([delta(0, role="assistant", content="A"), delta(1, role="assistant", content="B")]),
        chunk([delta(0, content="a")]),
        chunk([delta(1, content="b")]),
        chunk([delta(0, finish="stop")]),
        DONE,
    ]
    assert not assemble(events).complete
    events.insert(-1, chunk([delta(1, finish="length")]))
    assembler = assemble(events)
    assert assembler.complete
    choices = assembler.completion().choices
    assert [(c.index, c.message.content, c.finish_reason) for c in choices] == [
        (0, "Aa", "stop"),
        (1, "Bb", "length"),
    ]


def test_tool_call_deltas_are_merged() -> None:
    events = [
        chunk([delta(role="assistant", content=None)]),
        chunk(
            [
                delta(
                    tool_calls=[
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_", "arguments": ""},
                        }
                    ]
                )
            ]
        ),
        chunk([delta(tool_calls=[{"index": 0, "function": {"name": "weather"}}])]),
        chunk([delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city":'}}])]),
        chunk(
            [
                delta(
                    tool_calls=[
                        {
                            "index": 1,
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "now", "arguments": "{}"},
                        }
                    ]
                )
            ]
        ),
        chunk([delta(tool_calls=[{"index": 0, "function": {"arguments": ' "Oslo"}'}}])]),
        chunk([delta(finish="tool_calls")]),
        DONE,
    ]
    assembler = assemble(events)
    assert assembler.complete
    message = assembler.completion().choices[0].message
    assert message.content is None
    assert message.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    assert assembler.completion().choices[0].finish_reason == "tool_calls"


# --- completion_complete ------------------------------------------------------------------


def completion_json(
    content: str | None = "Hello world",
    finish: str | None = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = USAGE,
) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1700000001,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body).encode()


def test_completion_complete_accepts_finished_answers_only() -> None:
    assert completion_complete(completion_json()) is not None
    assert completion_complete(completion_json(finish=None)) is None
    assert completion_complete(b'{"id": "x", "choices": []}') is None
    assert completion_complete(b'{"error": {"message": "no"}}') is None
    assert completion_complete(b"not json") is None


# --- as_sse replay -------------------------------------------------------------------------


def replay_events(body: bytes) -> list[bytes]:
    splitter = EventSplitter()
    events = splitter.feed(body)
    assert splitter.rest() == b""
    return events


def payloads(events: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        assert event.startswith(b"data: ")
        text = event[6:].strip()
        out.append(text.decode() if text == b"[DONE]" else json.loads(text))
    return out


@pytest.mark.parametrize("include_usage", [False, True])
def test_replay_parses_back_to_the_same_answer(include_usage: bool) -> None:
    stored = completion_json()
    events = replay_events(as_sse(stored, include_usage))
    assert events[-1] == DONE
    assembler = assemble(events)
    assert assembler.complete
    completion = assembler.completion()
    assert completion.id == "chatcmpl-9"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello world"
    assert completion.choices[0].finish_reason == "stop"
    usage_chunks = [p for p in payloads(events[:-1]) if p.get("usage")]
    if include_usage:
        assert len(usage_chunks) == 1
        assert usage_chunks[0]["usage"] == USAGE
        assert not usage_chunks[0].get("choices")
        assert payloads([events[-2]])[0].get("usage") == USAGE  # last before [DONE]
        assert completion.usage is not None and completion.usage.total_tokens == 14
    else:
        assert usage_chunks == []
        assert completion.usage is None


def test_replay_without_stored_usage_has_no_usage_chunk() -> None:
    events = replay_events(as_sse(completion_json(usage=None), include_usage=True))
    assert [p for p in payloads(events[:-1]) if p.get("usage")] == []
    assert assemble(events).complete


def test_replay_of_tool_calls_round_trips() -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    stored = completion_json(content=None, finish="tool_calls", tool_calls=calls)
    assembler = assemble(replay_events(as_sse(stored, include_usage=False)))
    assert assembler.complete
    message = assembler.completion().choices[0].message
    assert message.tool_calls == calls
    assert assembler.completion().choices[0].finish_reason == "tool_calls"


def test_replay_of_an_assembled_stream_round_trips() -> None:
    first = assemble(full_stream()).completion()
    again = assemble(replay_events(as_sse(msgspec.json.encode(first), include_usage=True)))
    assert again.complete
    # the replay carries no system_fingerprint; everything else survives
    assert msgspec.structs.replace(again.completion(), system_fingerprint="fp_1") == first


def test_replay_starts_with_a_role_chunk() -> None:
    first = payloads(replay_events(as_sse(completion_json(), include_usage=False)))[0]
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_replayed_chunks_carry_the_openai_required_fields() -> None:
    chunks = payloads(replay_events(as_sse(completion_json(), include_usage=True)))[:-1]
    for payload in chunks:
        assert payload["object"] == "chat.completion.chunk"
        assert "created" in payload
        assert isinstance(payload["choices"], list)
        for choice in payload["choices"]:
            assert choice["index"] == 0
    assert chunks[-1]["choices"] == []
