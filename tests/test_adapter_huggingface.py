"""The Hugging Face adapter: OpenAI SDK → sidecar → a real server answering as TGI does."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from support.fake_provider import Reply, sidecar, split_every
from support.fake_tgi import (
    GENERATION_ERROR_EVENT,
    MODEL,
    TOOL_ANSWER,
    TOOL_STREAM,
    FakeTGI,
    error,
    text_stream,
)
from support.serve import ServerThread

from adapters.huggingface import HuggingFaceAdapter

TOKEN = "hf_test_token_abcdef"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeTGI]:
    with FakeTGI() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(server: FakeTGI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TEST_HF_TOKEN", TOKEN)
    registry = f"""
replace_defaults: true
backends:
  - {{name: tgi, base_url: "{server.url}", adapter: huggingface, api_key_env: TEST_HF_TOKEN}}
models:
  - {{name: llama-8b, upstream: "{MODEL}", backend: tgi, tier: complex}}
"""
    with sidecar(registry, tmp_path_factory.mktemp("hf")) as gateway:
        yield gateway
    mp.undo()


@pytest.fixture
def fake(server: FakeTGI) -> FakeTGI:
    server.reset()
    return server


BYPASS = {"x-optiroute-cache": "bypass"}


def test_chat_url_token_and_id(sdk: openai.OpenAI, fake: FakeTGI) -> None:
    answer = sdk.chat.completions.create(
        model="llama-8b", messages=[{"role": "user", "content": "hello"}], extra_headers=BYPASS
    )
    sent = fake.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.json["model"] == MODEL
    assert answer.choices[0].message.content == "echo: hello"
    assert answer.id.startswith("chatcmpl-")  # TGI sends "" here


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://tgi:8080", "http://tgi:8080/v1/chat/completions"),
        (
            "https://x.endpoints.huggingface.cloud/",
            "https://x.endpoints.huggingface.cloud/v1/chat/completions",
        ),
        ("https://router.huggingface.co/v1", "https://router.huggingface.co/v1/chat/completions"),
    ],
)
def test_base_urls(base: str, url: str) -> None:
    class Backend:
        name, base_url, api_key_env, headers = "hf", base, None, {}

    assert HuggingFaceAdapter().prepare(Backend(), {}, "/v1/chat/completions", b"{}").url == url


def test_stream_with_tgi_framing(sdk: openai.OpenAI, fake: FakeTGI) -> None:
    data = b"".join(text_stream(MODEL, "echo: a b c"))
    fake.script(Reply(chunks=split_every(data, 9), content_type="text/event-stream"))
    chunks = list(
        sdk.chat.completions.create(
            model="llama-8b",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            extra_headers=BYPASS,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: a b c"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_without_done_is_complete(sdk: openai.OpenAI, fake: FakeTGI) -> None:
    fake.script(
        Reply(
            chunks=text_stream(MODEL, "echo: old tgi", done=False), content_type="text/event-stream"
        )
    )
    chunks = list(
        sdk.chat.completions.create(
            model="llama-8b",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            extra_headers=BYPASS,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: old tgi"


def test_streamed_tool_call_objects_become_lists(sdk: openai.OpenAI, fake: FakeTGI) -> None:
    fake.script(Reply(chunks=TOOL_STREAM, content_type="text/event-stream"))
    chunks = list(
        sdk.chat.completions.create(
            model="llama-8b",
            messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=[
                {"type": "function", "function": {"name": "get_current_weather", "parameters": {}}}
            ],
            stream=True,
            extra_headers=BYPASS,
        )
    )
    calls = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert calls[0].id and calls[0].function.name == "get_current_weather"
    assert all(c.function.name is None and c.id is None for c in calls[1:])
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"location": "Paris"}


def test_tool_call_arguments_object_becomes_a_string(sdk: openai.OpenAI, fake: FakeTGI) -> None:
    fake.script(Reply(json=TOOL_ANSWER))
    answer = sdk.chat.completions.create(
        model="llama-8b", messages=[{"role": "user", "content": "weather?"}], extra_headers=BYPASS
    )
    call = answer.choices[0].message.tool_calls[0]
    assert call.id == "0" and call.type == "function"
    assert json.loads(call.function.arguments) == {"location": "Paris", "format": "celsius"}


def test_validation_error(sdk: openai.OpenAI, fake: FakeTGI) -> None:
    fake.script(
        error(
            422,
            "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096",
            "validation",
        )
    )
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="llama-8b", messages=[{"role": "user", "content": "x"}], extra_headers=BYPASS
        )
    assert caught.value.status_code == 422
    assert "(validation)" in caught.value.message


def test_model_loading_says_when(sdk: openai.OpenAI, fake: FakeTGI) -> None:
    fake.script(
        Reply(status=503, json={"error": "Model is currently loading", "estimated_time": 20.0})
    )
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="llama-8b", messages=[{"role": "user", "content": "x"}], extra_headers=BYPASS
        )
    assert caught.value.status_code == 503
    assert "ready in about 20 s" in caught.value.message


def test_generation_error_event(sdk: openai.OpenAI, fake: FakeTGI) -> None:
    events = text_stream(MODEL, "echo: a b c")
    fake.script(
        Reply(chunks=[*events[:2], GENERATION_ERROR_EVENT], content_type="text/event-stream")
    )
    with pytest.raises(openai.APIError):
        list(
            sdk.chat.completions.create(
                model="llama-8b",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
                extra_headers=BYPASS,
            )
        )
