"""Request parsing: what is accepted, and the 400 errors for what is not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from optiroute_mw.wire import ChatRequest, CompletionRequest, RequestError, parse_request

USER = {"role": "user", "content": "hello"}


def chat(**fields: Any) -> bytes:
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [USER]}
    body.update(fields)
    return json.dumps(body).encode()


def refused(kind: str, body: bytes) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_request(kind, body)
    assert info.value.status == 400
    assert info.value.type == "invalid_request_error"
    return info.value


# --- accepted -------------------------------------------------------------------------


def test_chat_minimal_body_parses() -> None:
    request = parse_request("chat", chat())
    assert isinstance(request, ChatRequest)
    assert request.model == "gpt-4o"
    assert request.messages[0].role == "user"
    assert request.messages[0].content == "hello"
    assert request.stream is False
    assert request.include_usage is False


def test_chat_unknown_fields_are_accepted() -> None:
    body = chat(
        reasoning_effort="low",
        metadata={"team": "a", "nested": [1, 2, {"x": None}]},
        parallel_tool_calls=False,
        messages=[{"role": "user", "content": "hi", "cache_hint": "yes"}],
    )
    request = parse_request("chat", body)
    assert isinstance(request, ChatRequest)
    assert request.last_user_text() == "hi"


def test_chat_full_parameter_set_parses() -> None:
    body = chat(
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        top_p=1,
        n=2,
        max_tokens=5,
        stop=["\n"],
        seed=7,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice="auto",
        response_format={"type": "json_object"},
        user="u1",
    )
    request = parse_request("chat", body)
    assert isinstance(request, ChatRequest)
    assert request.stream is True
    assert request.include_usage is True
    assert request.temperature == 0
    assert request.n == 2
    assert request.tools is not None and request.tools[0]["function"]["name"] == "f"


def test_completions_body_with_unknown_fields_parses() -> None:
    body = json.dumps(
        {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "echo": True, "best_of": 2}
    ).encode()
    request = parse_request("completions", body)
    assert isinstance(request, CompletionRequest)
    assert request.prompt == "Say hi"
    assert request.last_user_text() == "Say hi"


def test_completions_prompt_list_joins_strings_only() -> None:
    body = json.dumps({"model": "m", "prompt": ["one", "two", [1, 2, 3]]}).encode()
    request = parse_request("completions", body)
    assert request.prompt_text() == "one\ntwo"


def test_content_parts_join_text_parts_only() -> None:
    body = chat(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "old question"},
            {"role": "assistant", "content": "old answer"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "this picture"},
                ],
            },
        ]
    )
    request = parse_request("chat", body)
    assert request.last_user_text() == "describe this picture"
    assert request.prompt_text() == "be brief\nold question\nold answer\ndescribe this picture"


def test_last_user_text_is_empty_without_a_user_message() -> None:
    request = parse_request("chat", chat(messages=[{"role": "system", "content": "sys"}]))
    assert request.last_user_text() == ""


def test_assistant_message_with_null_content_and_tool_calls_parses() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    body = chat(
        messages=[
            USER,
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]
    )
    request = parse_request("chat", body)
    assert isinstance(request, ChatRequest)
    assert request.messages[1].tool_calls == calls
    assert request.messages[2].tool_call_id == "c1"


# --- refused --------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"   ", b"\n\t"])
def test_empty_body(body: bytes) -> None:
    error = refused("chat", body)
    assert error.code == "invalid_json"
    assert "empty" in error.message.lower()


@pytest.mark.parametrize("kind", ["chat", "completions"])
@pytest.mark.parametrize("body", [b"{bad", b'{"model": "m",', b"not json", b"{]"])
def test_malformed_json(kind: str, body: bytes) -> None:
    error = refused(kind, body)
    assert error.code == "invalid_json"
    assert error.param is None


@pytest.mark.parametrize(
    ("kind", "body"),
    [("chat", chat()), ("completions", b'{"model": "m", "prompt": "x"}')],
)
def test_trailing_garbage_after_valid_object(kind: str, body: bytes) -> None:
    parse_request(kind, body)  # valid on its own
    error = refused(kind, body + b" x")
    assert error.code == "invalid_json"
    assert error.param is None


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b"42", b"true"])
def test_non_object_json(body: bytes) -> None:
    error = refused("chat", body)
    assert error.code in {"invalid_type", "invalid_json"}
    assert error.param is None
    assert "object" in error.message


def test_chat_missing_messages() -> None:
    error = refused("chat", b'{"model": "gpt-4o"}')
    assert error.code == "missing_required_parameter"
    assert error.param == "messages"
    assert "'messages'" in error.message


@pytest.mark.parametrize("kind", ["chat", "completions"])
def test_missing_model(kind: str) -> None:
    body = (
        b'{"messages": [{"role": "user", "content": "x"}]}'
        if kind == "chat"
        else (b'{"prompt": "x"}')
    )
    error = refused(kind, body)
    assert error.code == "missing_required_parameter"
    assert error.param == "model"


def test_completions_missing_prompt() -> None:
    error = refused("completions", b'{"model": "m"}')
    assert error.code == "missing_required_parameter"
    assert error.param == "prompt"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": "hello"}, "messages"),
        ({"model": 5}, "model"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [USER, {"role": "user", "content": 7}]}, "messages[1].content"),
    ],
)
def test_chat_wrong_types(fields: dict[str, Any], param: str) -> None:
    error = refused("chat", chat(**fields))
    assert error.code == "invalid_type"
    assert error.param == param
    assert error.message.startswith("Invalid request:")


def test_completions_temperature_out_of_range() -> None:
    error = refused("completions", b'{"model": "m", "prompt": "x", "temperature": 3}')
    assert error.code == "invalid_type"
    assert error.param == "temperature"
