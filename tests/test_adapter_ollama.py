"""The Ollama native adapter: OpenAI SDK → sidecar → a real server speaking /api/chat NDJSON."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from support.fake_ollama import TOOL_CALL_LINES, FakeOllama, chat_lines, ndjson
from support.fake_provider import Reply, sidecar, split_every
from support.serve import ServerThread

from adapters.ollama import OllamaStreamTranslator


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(server: FakeOllama, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    registry = f"""
replace_defaults: true
backends:
  - {{name: ollama, base_url: "{server.url}", adapter: ollama, local: true}}
models:
  - {{name: llama3.2, backend: ollama, tier: complex, capabilities: [tools]}}
  - {{name: nomic-embed-text, backend: ollama, tier: simple, input_per_mtok: 0.02}}
"""
    with sidecar(registry, tmp_path_factory.mktemp("ollama")) as gateway:
        yield gateway


@pytest.fixture
def fake(server: FakeOllama) -> FakeOllama:
    server.reset()
    return server


BYPASS = {"x-optiroute-cache": "bypass", "x-optiroute-model": "llama3.2"}


def test_chat_request_and_answer(sdk: openai.OpenAI, fake: FakeOllama) -> None:
    answer = sdk.chat.completions.create(
        model="llama3.2",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_9", "content": "-3 C"},
            {"role": "user", "content": "thanks"},
        ],
        max_tokens=64,
        temperature=0.2,
        top_p=0.8,
        seed=3,
        stop=["\n\n"],
        response_format={"type": "json_object"},
        extra_body={"top_k": 20, "keep_alive": "5m"},
        extra_headers=BYPASS,
    )
    sent = fake.last
    assert sent.path == "/api/chat"
    assert sent.json == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Describe", "images": ["iVBORw0KGgo="]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
                ],
            },
            {"role": "tool", "content": "-3 C", "tool_name": "get_weather"},
            {"role": "user", "content": "thanks"},
        ],
        "stream": False,
        "options": {
            "temperature": 0.2,
            "top_p": 0.8,
            "top_k": 20,
            "seed": 3,
            "num_predict": 64,
            "stop": ["\n\n"],
        },
        "format": "json",
        "keep_alive": "5m",
    }
    assert answer.choices[0].message.content == "echo: thanks"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.created == 1721681506  # created_at, nanoseconds and all
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (26, 2)


def test_ndjson_stream_split_mid_line(sdk: openai.OpenAI, fake: FakeOllama) -> None:
    lines = b"".join(ndjson(chat_lines("llama3.2", "one two three four")))
    fake.script(Reply(chunks=split_every(lines, 11), content_type="application/x-ndjson"))
    chunks = list(
        sdk.chat.completions.create(
            model="llama3.2",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=BYPASS,
        )
    )
    assert fake.last.json["stream"] is True
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert deltas == ["one ", "two ", "three ", "four"]  # one chunk per line, none merged
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert len({c.id for c in chunks}) == 1


def test_stream_tool_call(sdk: openai.OpenAI, fake: FakeOllama) -> None:
    fake.script(Reply(chunks=ndjson(TOOL_CALL_LINES), content_type="application/x-ndjson"))
    chunks = list(
        sdk.chat.completions.create(
            model="llama3.2",
            messages=[{"role": "user", "content": "weather in Toronto?"}],
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
            stream=True,
            extra_headers=BYPASS,
        )
    )
    assert fake.last.json["tools"][0]["function"]["name"] == "get_weather"
    calls = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert len(calls) == 1
    assert calls[0].index == 0 and calls[0].id and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Toronto"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_last_line_without_newline_is_not_lost() -> None:
    lines = ndjson(chat_lines("m", "a b"))
    data = b"".join(lines).rstrip(b"\n")
    translator = OllamaStreamTranslator()
    out = translator.feed(data) + translator.close()
    assert out.endswith(b"data: [DONE]\n\n")
    assert out.count(b'"finish_reason":"stop"') == 1


def test_legacy_completion_via_generate(gateway: ServerThread, fake: FakeOllama) -> None:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0) as sdk:
        answer = sdk.completions.create(
            model="llama3.2", prompt="count", max_tokens=3, extra_headers=BYPASS
        )
        assert fake.last.path == "/api/generate"
        assert fake.last.json == {
            "model": "llama3.2",
            "prompt": "count",
            "stream": False,
            "options": {"num_predict": 3},
        }
        assert answer.choices[0].text == "echo: count"
        assert answer.choices[0].finish_reason == "length"
        streamed = list(
            sdk.completions.create(
                model="llama3.2", prompt="count", stream=True, extra_headers=BYPASS
            )
        )
        assert "".join(c.choices[0].text for c in streamed if c.choices) == "echo:count"
        assert streamed[-1].choices[0].finish_reason == "length"


def test_embeddings_float_and_base64(sdk: openai.OpenAI, fake: FakeOllama) -> None:
    floats = sdk.embeddings.create(
        model="nomic-embed-text", input=["hello", "worlds!"], encoding_format="float"
    )
    assert fake.last.path == "/api/embed"
    assert fake.last.json == {"model": "nomic-embed-text", "input": ["hello", "worlds!"]}
    assert [d.embedding for d in floats.data] == [[0.5, 0.5, -0.25], [0.7, 0.5, -0.25]]
    assert floats.usage.prompt_tokens == 16
    # the SDK's default asks for base64 and decodes it: same vectors (float32), from the cache
    decoded = sdk.embeddings.create(model="nomic-embed-text", input=["hello", "worlds!"])
    assert len(fake.requests) == 1
    assert [d.embedding for d in decoded.data] == [
        pytest.approx(v, rel=1e-6) for v in ([0.5, 0.5, -0.25], [0.7, 0.5, -0.25])
    ]


def test_model_not_found_is_a_404(sdk: openai.OpenAI, fake: FakeOllama) -> None:
    fake.script(
        Reply(status=404, json={"error": 'model "llama3.2" not found, try pulling it first'})
    )
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "x"}], extra_headers=BYPASS
        )
    assert "try pulling it first" in caught.value.message


def test_error_line_in_stream(sdk: openai.OpenAI, fake: FakeOllama) -> None:
    broken = b'{"error":"llama runner process has terminated"}\n'
    lines = [*ndjson(chat_lines("llama3.2", "a b c"))[:2], broken]
    fake.script(Reply(chunks=lines, content_type="application/x-ndjson"))
    with pytest.raises(openai.APIError):
        list(
            sdk.chat.completions.create(
                model="llama3.2",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
                extra_headers=BYPASS,
            )
        )


def test_image_urls_are_refused_not_dropped(sdk: openai.OpenAI, fake: FakeOllama) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="llama3.2",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                    ],
                }
            ],
            extra_headers=BYPASS,
        )
    assert "not as URLs" in caught.value.message
    assert fake.requests == []
