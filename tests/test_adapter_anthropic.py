"""The Anthropic adapter: OpenAI SDK → sidecar → a real HTTP server speaking Anthropic's API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from support.fake_anthropic import (
    OVERLOADED_EVENT,
    TOOL_MESSAGE,
    TOOL_STREAM,
    FakeAnthropic,
    error,
    stream_reply,
    text_stream,
)
from support.fake_openai import FakeOpenAI
from support.fake_provider import Reply, sidecar, split_every
from support.serve import ServerThread

from adapters.anthropic import AnthropicStreamTranslator
from adapters.anthropic.request import DEFAULT_MAX_TOKENS

KEY = "sk-ant-test-key-0123456789"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    anthropic_fake: FakeAnthropic,
    openai_fake: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerThread]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TEST_ANTHROPIC_KEY", KEY)
    registry = f"""
replace_defaults: true
backends:
  - {{name: claude, base_url: "{anthropic_fake.url}", adapter: anthropic,
     api_key_env: TEST_ANTHROPIC_KEY, headers: {{anthropic-beta: "tools-2024-05-16"}}}}
  - {{name: plain, base_url: "{openai_fake.base_url}"}}
models:
  - {{name: claude, upstream: claude-3-5-haiku-latest, backend: claude, tier: complex,
     input_per_mtok: 0.8, output_per_mtok: 4, quality: 0.9}}
  - {{name: fallback, upstream: fake-model, backend: plain, tier: simple,
     input_per_mtok: 0.1, output_per_mtok: 0.1, quality: 0.3}}
"""
    with sidecar(registry, tmp_path_factory.mktemp("anthropic")) as server:
        yield server
    mp.undo()


@pytest.fixture
def fake(anthropic_fake: FakeAnthropic, openai_fake: FakeOpenAI) -> FakeAnthropic:
    anthropic_fake.reset()
    openai_fake.reset()
    return anthropic_fake


def pinned(**extra: Any) -> dict[str, Any]:
    """Always the Anthropic model, never the cache: each test sees its own backend call."""
    return {
        "extra_headers": {"x-optiroute-model": "claude", "x-optiroute-cache": "bypass"},
        **extra,
    }


def test_request_translation_and_headers(sdk: openai.OpenAI, fake: FakeAnthropic) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    answer = sdk.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": "Hi."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        stop="END",
        temperature=1.6,
        top_p=0.9,
        user="user-42",
        seed=7,
        **pinned(),
    )
    assert answer.choices[0].message.content == "echo: And tomorrow?"
    sent = fake.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "tools-2024-05-16"
    assert "authorization" not in sent.headers
    assert sent.json == {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": "Be brief.\n\nUse metric units.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi."},
                    {"type": "text", "text": "What is in this picture?"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18 degrees"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "stop_sequences": ["END"],
        "temperature": 1.0,
        "top_p": 0.9,
        "metadata": {"user_id": "user-42"},
        "tools": [
            {
                "name": "get_weather",
                "description": "The weather in a city",
                "input_schema": TOOLS[0]["function"]["parameters"],
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


def test_tool_use_answer_and_usage(sdk: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.script(Reply(json=TOOL_MESSAGE))
    raw = sdk.chat.completions.with_raw_response.create(
        model="claude",
        max_tokens=300,
        messages=[{"role": "user", "content": "weather?"}],
        tools=TOOLS,
        **pinned(),
    )
    answer = raw.parse()
    assert fake.last.json["max_tokens"] == 300
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the weather."
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_01A09q90qw90lq917835lq9"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {
        "location": "San Francisco, CA",
        "unit": "celsius",
    }
    # cached prompt tokens count as prompt tokens; the cost header prices them
    assert answer.usage.prompt_tokens == 400 and answer.usage.completion_tokens == 60
    assert float(raw.headers["x-optiroute-cost"]) == pytest.approx((400 * 0.8 + 60 * 4) / 1e6)


def test_tool_stream_through_sdk_split_mid_event(sdk: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.script(stream_reply(split_every(TOOL_STREAM, 7)))
    chunks = list(
        sdk.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "weather?"}],
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
            **pinned(),
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert [d.content for d in deltas if d.content] == [
        "Okay",
        ", let's check the weather for San Francisco, CA:",
    ]
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert (
        calls[0].id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and calls[0].function.name == "get_weather"
    )
    fragments = [c.function.arguments for c in calls]
    assert fragments == ["", '{"location":', ' "San Francisc', 'o, CA", "unit": "fah', 'renheit"}']
    assert json.loads("".join(fragments)) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (472, 89)
    assert {c.id for c in chunks} == {"msg_014p7gG3wDgGV9EUtLvnow3U"}


async def test_async_text_stream(gateway: ServerThread, fake: FakeAnthropic) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            **pinned(),
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: one two three"
    assert fake.last.json["stream"] is True


def test_translator_output_does_not_depend_on_chunking() -> None:
    whole = AnthropicStreamTranslator()
    expected = whole.feed(TOOL_STREAM) + whole.close()
    for size in (1, 2, 3, 5, 64):
        translator = AnthropicStreamTranslator()
        pieces = [translator.feed(piece) for piece in split_every(TOOL_STREAM, size)]
        got = b"".join(pieces) + translator.close()
        # ids are per translator: compare without them
        assert _without_ids(got) == _without_ids(expected)
    events = [e for e in expected.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert len(events) == 2 + 2 + 1 + 4 + 1 + 1  # role, 2 texts, tool start, 4 args, finish, usage


def _without_ids(data: bytes) -> list[Any]:
    out = []
    for event in data.split(b"\n\n"):
        if event.startswith(b"data: {"):
            payload = json.loads(event[6:])
            payload.pop("created", None)
            out.append(payload)
        elif event:
            out.append(event)
    return out


@pytest.mark.parametrize(
    ("status", "kind", "shown"),
    [
        (400, "invalid_request_error", 400),
        (429, "rate_limit_error", 429),
        (413, "request_too_large", 413),
    ],
)
def test_errors_map_to_openai_errors(
    sdk: openai.OpenAI, fake: FakeAnthropic, status: int, kind: str, shown: int
) -> None:
    fake.script(error(status, kind, f"scripted {kind}"))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-optiroute-model": "claude", "x-optiroute-cache": "bypass"},
        )
    assert caught.value.status_code == shown
    assert f"scripted {kind}" in caught.value.message


def test_overloaded_fails_over(
    sdk: openai.OpenAI, fake: FakeAnthropic, openai_fake: FakeOpenAI
) -> None:
    # 529 overloaded: the next candidate answers
    fake.script(error(529, "overloaded_error", "Overloaded"))
    answer = sdk.chat.completions.with_raw_response.create(
        model="claude",
        messages=[{"role": "user", "content": "hard question"}],
        extra_headers={"x-optiroute-mode": "quality", "x-optiroute-cache": "bypass"},
    )
    assert answer.headers["x-optiroute-backend"] == "plain"
    assert openai_fake.hits == 1


def test_error_event_before_content_is_a_clean_error(
    sdk: openai.OpenAI, fake: FakeAnthropic
) -> None:
    fake.script(stream_reply([OVERLOADED_EVENT]))
    with pytest.raises(openai.APIStatusError) as caught:
        list(
            sdk.chat.completions.create(
                model="claude",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
                **pinned(),
            )
        )
    assert caught.value.status_code == 502


def test_error_event_mid_stream_reaches_the_client(sdk: openai.OpenAI, fake: FakeAnthropic) -> None:
    events = text_stream("echo: a b c d")
    fake.script(stream_reply([*events[:5], OVERLOADED_EVENT]))
    got: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in sdk.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            **pinned(),
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    # whether the error comes as a status (nothing sent yet) or as an event after the
    # first deltas depends on how the bytes were read; either way it is an error
    assert "".join(got) in ("", "echo: ", "echo: a ")


def test_stream_cut_without_message_stop_is_not_complete(
    sdk: openai.OpenAI, fake: FakeAnthropic
) -> None:
    events = text_stream("echo: a b c")
    fake.script(stream_reply(events[:-1]))  # message_delta but no message_stop
    with pytest.raises(openai.APIError):
        list(
            sdk.chat.completions.create(
                model="claude",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
                **pinned(),
            )
        )


def test_legacy_completions_go_to_a_backend_that_serves_them(
    gateway: ServerThread, fake: FakeAnthropic, openai_fake: FakeOpenAI
) -> None:
    # quality mode puts Anthropic first; it cannot take the call, the next candidate does
    response = httpx.post(
        gateway.url + "/v1/completions",
        json={"model": "claude", "prompt": "Say hi", "max_tokens": 5},
        headers={"x-optiroute-mode": "quality", "x-optiroute-cache": "bypass"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-optiroute-backend"] == "plain"
    assert fake.requests == []  # never sent to Anthropic
    pinned_only = httpx.post(
        gateway.url + "/v1/completions",
        json={"model": "claude", "prompt": "Say hi"},
        headers={"x-optiroute-model": "claude"},
    )
    assert pinned_only.status_code == 400
    assert "chat only" in pinned_only.json()["error"]["message"]
