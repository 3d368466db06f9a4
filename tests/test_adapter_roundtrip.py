"""Property-based round trips of the OpenAI ↔ Anthropic translations (hypothesis).

The adapter (OpenAI → Anthropic, adapters/anthropic) and the ingress
(Anthropic → OpenAI, optiroute_mw/formats) are written independently; translating
one way and back must give the canonical request, answer or stream again.
"""

from __future__ import annotations

import json
import string
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.anthropic import AnthropicStreamTranslator
from adapters.anthropic.request import to_anthropic
from adapters.anthropic.response import to_openai as anthropic_to_openai
from optiroute_mw.formats.anthropic_request import decode_request, to_openai_request
from optiroute_mw.formats.anthropic_response import message_from_completion
from optiroute_mw.formats.anthropic_stream import AnthropicEventWriter

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Json = dict[str, Any]

text = st.text(string.ascii_letters + string.digits + " .,!?'\"{}é中", min_size=1, max_size=20)
name = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12)
scalar = st.one_of(st.integers(-1000, 1000), st.booleans(), text, st.none())
arguments = st.dictionaries(name, scalar, max_size=3)
image_url = st.one_of(
    st.text(string.ascii_letters + string.digits + "+/", min_size=4, max_size=16).map(
        lambda data: f"data:image/png;base64,{data}"
    ),
    name.map(lambda n: f"https://example.com/{n}.jpg"),
)
unit = st.floats(0, 1, allow_nan=False).map(lambda x: round(x, 3))


# --- OpenAI → Anthropic → OpenAI ------------------------------------------------------------


@st.composite
def openai_user(draw: st.DrawFn) -> Json:
    if draw(st.booleans()):
        return {"role": "user", "content": draw(text)}
    parts = draw(
        st.lists(
            st.one_of(
                text.map(lambda t: {"type": "text", "text": t}),
                image_url.map(lambda u: {"type": "image_url", "image_url": {"url": u}}),
            ),
            min_size=1,
            max_size=3,
        )
    )
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"role": "user", "content": parts[0]["text"]}  # one text part is a string
    return {"role": "user", "content": parts}


@st.composite
def openai_conversation(draw: st.DrawFn) -> list[Json]:
    messages = [{"role": "system", "content": draw(text)}] if draw(st.booleans()) else []
    for turn in range(draw(st.integers(1, 4))):
        messages.append(draw(openai_user()))
        calls = [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {
                    "name": draw(name),
                    "arguments": json.dumps(draw(arguments), separators=(",", ":")),
                },
            }
            for i in range(draw(st.integers(0, 2)))
        ]
        reply: Json = {
            "role": "assistant",
            "content": draw(text) if not calls or draw(st.booleans()) else None,
        }
        if calls:
            reply["tool_calls"] = calls
        messages.append(reply)
        messages += [
            {"role": "tool", "tool_call_id": call["id"], "content": draw(text)} for call in calls
        ]
    return messages


@st.composite
def openai_request(draw: st.DrawFn) -> Json:
    body: Json = {
        "model": draw(name),
        "messages": draw(openai_conversation()),
        "max_tokens": draw(st.integers(1, 8192)),
    }
    if draw(st.booleans()):
        body["stop"] = draw(st.lists(text, min_size=1, max_size=3))
    if draw(st.booleans()):
        body["temperature"] = draw(unit)
    if draw(st.booleans()):
        body["top_p"] = draw(unit)
    if draw(st.booleans()):
        body["user"] = draw(name)
    if draw(st.booleans()):
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": n,
                    "description": d,
                    "parameters": {
                        "type": "object",
                        "properties": {p: {"type": "string"} for p in ps},
                    },
                },
            }
            for n, d, ps in draw(
                st.lists(st.tuples(name, text, st.lists(name, max_size=2)), min_size=1, max_size=2)
            )
        ]
        choice = draw(st.sampled_from(["auto", "required", "none", "function"]))
        body["tool_choice"] = (
            {"type": "function", "function": {"name": body["tools"][0]["function"]["name"]}}
            if choice == "function"
            else choice
        )
        if choice != "none" and draw(st.booleans()):
            body["parallel_tool_calls"] = False
    if draw(st.booleans()):
        schema = {"type": "object", "properties": {draw(name): {"type": "string"}}}
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": schema},
        }
    if draw(st.booleans()):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


@PROPERTY
@given(request=openai_request())
def test_openai_to_anthropic_and_back(request: Json) -> None:
    anthropic_body = msgspec.json.encode(
        to_anthropic(msgspec.json.decode(msgspec.json.encode(request)))
    )
    back = to_openai_request(decode_request(anthropic_body))
    assert back == request


# --- Anthropic → OpenAI → Anthropic ---------------------------------------------------------


@st.composite
def anthropic_request(draw: st.DrawFn) -> Json:
    messages: list[Json] = []
    pending: list[str] = []  # tool_use ids the next user turn answers
    for turn in range(draw(st.integers(1, 4))):
        blocks: list[Json] = [
            {"type": "tool_result", "tool_use_id": tool_id, "content": draw(text)}
            for tool_id in pending
        ]
        for _ in range(draw(st.integers(0 if pending else 1, 2))):
            if draw(st.booleans()):
                blocks.append({"type": "text", "text": draw(text)})
            elif draw(st.booleans()):
                data = draw(st.text(string.ascii_letters + "+/", min_size=4, max_size=12))
                blocks.append(
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": data},
                    }
                )
            else:
                blocks.append(
                    {
                        "type": "image",
                        "source": {"type": "url", "url": f"https://x.org/{draw(name)}.png"},
                    }
                )
        texts_only = [b for b in blocks if b["type"] == "text"]
        if len(blocks) == 1 and texts_only:
            messages.append({"role": "user", "content": texts_only[0]["text"]})
        else:
            messages.append({"role": "user", "content": blocks})
        pending = [f"toolu_{turn}_{i}" for i in range(draw(st.integers(0, 2)))]
        reply: list[Json] = (
            [{"type": "text", "text": draw(text)}] if not pending or draw(st.booleans()) else []
        )
        reply += [
            {"type": "tool_use", "id": i, "name": draw(name), "input": draw(arguments)}
            for i in pending
        ]
        if len(reply) == 1 and reply[0]["type"] == "text":
            messages.append({"role": "assistant", "content": reply[0]["text"]})
        else:
            messages.append({"role": "assistant", "content": reply})
    body: Json = {
        "model": draw(name),
        "max_tokens": draw(st.integers(1, 8192)),
        "messages": messages,
    }
    if draw(st.booleans()):
        body["system"] = draw(text)
    if draw(st.booleans()):
        body["stop_sequences"] = draw(st.lists(text, min_size=1, max_size=2))
    if draw(st.booleans()):
        body["temperature"] = draw(unit)
    if draw(st.booleans()):
        body["top_p"] = draw(unit)
    if draw(st.booleans()):
        body["metadata"] = {"user_id": draw(name)}
    if draw(st.booleans()):
        body["tools"] = [
            {"name": n, "description": d, "input_schema": {"type": "object", "properties": {}}}
            for n, d in draw(st.lists(st.tuples(name, text), min_size=1, max_size=2))
        ]
        kind = draw(st.sampled_from(["auto", "any", "none", "tool"]))
        choice: Json = {"type": kind}
        if kind == "tool":
            choice["name"] = body["tools"][0]["name"]
        if kind != "none" and draw(st.booleans()):
            choice["disable_parallel_tool_use"] = True
        body["tool_choice"] = choice
    if draw(st.booleans()):
        body["output_config"] = {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    if draw(st.booleans()):
        body["stream"] = True
    return body


@PROPERTY
@given(request=anthropic_request())
def test_anthropic_to_openai_and_back(request: Json) -> None:
    openai_body = msgspec.json.decode(
        msgspec.json.encode(to_openai_request(decode_request(msgspec.json.encode(request))))
    )
    assert to_anthropic(openai_body) == request


# --- answers and streams ---------------------------------------------------------------------


@st.composite
def anthropic_answer(draw: st.DrawFn) -> Json:
    """Content blocks as a model writes them: never two text blocks in a row."""
    blocks: list[Json] = []
    for i in range(draw(st.integers(1, 4))):
        after_text = bool(blocks) and blocks[-1]["type"] == "text"
        if not after_text and draw(st.booleans()):
            blocks.append({"type": "text", "pieces": draw(st.lists(text, min_size=1, max_size=4))})
        else:
            raw = json.dumps(draw(arguments))
            cuts = sorted(draw(st.sets(st.integers(1, max(1, len(raw) - 1)), max_size=4)))
            pieces = [
                raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True) if raw[a:b]
            ]
            blocks.append(
                {"type": "tool_use", "id": f"toolu_{i}", "name": draw(name), "pieces": pieces}
            )
    stop = (
        "tool_use"
        if blocks[-1]["type"] == "tool_use"
        else draw(st.sampled_from(["end_turn", "max_tokens"]))
    )
    usage = {
        "input_tokens": draw(st.integers(0, 5000)),
        "output_tokens": draw(st.integers(1, 5000)),
    }
    return {"blocks": blocks, "stop_reason": stop, "usage": usage}


def _event(name_: str, payload: Json) -> bytes:
    return f"event: {name_}\ndata: {json.dumps(payload)}\n\n".encode()


def anthropic_stream(answer: Json) -> bytes:
    start = {
        "id": "msg_prop",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": answer["usage"]["input_tokens"], "output_tokens": 1},
    }
    out = [
        _event("message_start", {"type": "message_start", "message": start}),
        _event("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(answer["blocks"]):
        if block["type"] == "text":
            opening: Json = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in block["pieces"]]
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [{"type": "input_json_delta", "partial_json": p} for p in block["pieces"]]
        out.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
        )
        out += [
            _event(
                "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}
            )
            for d in deltas
        ]
        out.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": answer["usage"]["output_tokens"]},
            },
        )
    )
    out.append(_event("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def meaningful(stream: bytes) -> list[Json]:
    """The events that carry content, as the Anthropic SDK would see them."""
    out = []
    for raw in stream.split(b"\n\n"):
        data = next((line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")), None)
        if data is None:
            continue
        event = json.loads(data)
        kind = event["type"]
        if kind == "ping" or (
            kind == "content_block_delta" and event["delta"].get("partial_json") == ""
        ):
            continue
        if kind == "message_start":
            event = {"type": kind, "id": event["message"]["id"], "model": event["message"]["model"]}
        if kind == "message_delta":
            event = {
                "type": kind,
                "stop_reason": event["delta"]["stop_reason"],
                "output_tokens": event["usage"]["output_tokens"],
            }
        out.append(event)
    return out


@PROPERTY
@given(
    answer=anthropic_answer(),
    cuts_in=st.lists(st.integers(0, 10_000), max_size=12),
    cuts_out=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_stream_anthropic_to_openai_and_back(
    answer: Json, cuts_in: list[int], cuts_out: list[int]
) -> None:
    original = anthropic_stream(answer)
    translator = AnthropicStreamTranslator()
    openai_sse = (
        b"".join(translator.feed(piece) for piece in split(original, cuts_in)) + translator.close()
    )
    writer = AnthropicEventWriter()
    back = b"".join(writer.feed(piece) for piece in split(openai_sse, cuts_out)) + writer.close()
    # every delta, in order, in blocks opened and closed in the same order
    assert meaningful(back) == meaningful(original)
    # and the usage the OpenAI side saw
    usage = json.loads(openai_sse.split(b"\n\n")[-3][6:])["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        answer["usage"]["input_tokens"],
        answer["usage"]["output_tokens"],
    )


@PROPERTY
@given(answer=anthropic_answer())
def test_answer_anthropic_to_openai_and_back(answer: Json) -> None:
    content = []
    for block in answer["blocks"]:
        if block["type"] == "text":
            content.append({"type": "text", "text": "".join(block["pieces"])})
        else:
            content.append(
                {
                    "type": "tool_use",
                    "id": block["id"],
                    "name": block["name"],
                    "input": json.loads("".join(block["pieces"])),
                }
            )
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": answer["stop_reason"],
        "stop_sequence": None,
        "usage": answer["usage"],
    }
    back = json.loads(
        message_from_completion(anthropic_to_openai(json.dumps(message).encode())) or b""
    )
    # OpenAI has one text per answer, before the tool calls: texts join, tools keep their order
    texts = "".join(b["text"] for b in content if b["type"] == "text")
    expected = ([{"type": "text", "text": texts}] if texts else []) + [
        b for b in content if b["type"] == "tool_use"
    ]
    assert back == {**message, "content": expected}
