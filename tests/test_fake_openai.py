"""Tests of the fake OpenAI backend itself, through plain httpx and the real openai SDK."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from support.fake_openai import FakeOpenAI, Fault

CHAT = {
    "model": "gpt-test",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello big world"},
    ],
}
STREAM = {**CHAT, "stream": True}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    # One server for the module: starting one per test would dominate the run time.
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAI) -> FakeOpenAI:
    server.reset()
    return server


@pytest.fixture
def http(fake: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=5) as client:
        yield client


@pytest.fixture
def sdk(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    # No retries: each scripted step must be observed exactly once.
    with openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0, timeout=5) as client:
        yield client


def sse_data(
    client: httpx.Client, body: dict[str, Any], path: str = "/chat/completions"
) -> list[str]:
    """The `data:` payloads of a streamed answer, in order."""
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [
            line.removeprefix("data: ")
            for line in response.iter_lines()
            if line.startswith("data: ")
        ]


# -- normal answers -------------------------------------------------------------------


def test_health_and_models(http: httpx.Client, fake: FakeOpenAI) -> None:
    assert httpx.get(f"http://127.0.0.1:{fake.port}/health").json() == {"status": "ok"}
    assert [m["id"] for m in http.get("/models").json()["data"]] == ["fake-model"]
    assert fake.hits == 0  # only completion requests count


def test_chat_json_through_sdk(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(**CHAT)
    assert answer.id == "chatcmpl-fake-1"
    assert answer.model == "gpt-test"
    assert answer.choices[0].message.content == "echo: hello big world"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
        answer.usage.total_tokens,
    ) == (5, 4, 9)


def test_chat_echoes_text_parts_of_last_user_message(http: httpx.Client) -> None:
    parts = [
        {"type": "text", "text": "first"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "second"},
    ]
    messages = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": parts},
    ]
    body = http.post("/chat/completions", json={"model": "m", "messages": messages}).json()
    assert body["choices"][0]["message"]["content"] == "echo: first second"
    assert body["usage"]["prompt_tokens"] == 4


def test_chat_stream_through_sdk(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(**STREAM))
    assert {(c.id, c.object, c.created, c.model) for c in chunks} == {
        ("chatcmpl-fake-1", "chat.completion.chunk", chunks[0].created, "gpt-test")
    }
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == [
        "echo: ",
        "hello ",
        "big ",
        "world",
    ]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_chat_stream_with_usage_through_sdk(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(**STREAM, stream_options={"include_usage": True}))
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None and usage_chunk.usage.total_tokens == 9
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_stream_ends_with_done(http: httpx.Client) -> None:
    assert sse_data(http, STREAM)[-1] == "[DONE]"


def test_legacy_completions_json_and_stream(sdk: openai.OpenAI) -> None:
    answer = sdk.completions.create(model="m", prompt="say this")
    assert answer.id == "cmpl-fake-1"
    assert answer.choices[0].text == "echo: say this"
    assert answer.usage is not None and answer.usage.prompt_tokens == 2
    chunks = list(sdk.completions.create(model="m", prompt="say this", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "echo: say this"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_records_method_path_headers_and_body(http: httpx.Client, fake: FakeOpenAI) -> None:
    http.post("/chat/completions", json=CHAT, headers={"X-Trace-Id": "abc"})
    http.post("/chat/completions", content=b"not json")
    first, second = fake.requests
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["x-trace-id"] == "abc"
    assert json.loads(first.body) == first.json == CHAT
    assert second.json is None and second.body == b"not json"


def test_reset_forgets_everything(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script(Fault(status=500))
    fake.always(Fault(status=503))
    http.get("/models")
    fake.reset()
    assert fake.requests == [] and fake.hits == 0
    assert http.post("/chat/completions", json=CHAT).status_code == 200


# -- scripting -------------------------------------------------------------------------


def test_script_is_consumed_in_order_then_answers_normally(
    http: httpx.Client, fake: FakeOpenAI
) -> None:
    fake.script(Fault(status=429, headers={"Retry-After": "2"}), Fault(content="fixed reply"))
    limited = http.post("/chat/completions", json=CHAT)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert set(limited.json()["error"]) >= {"message", "type", "code"}
    assert (
        http.post("/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
        == "fixed reply"
    )
    assert (
        http.post("/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
        == "echo: hello big world"
    )
    assert fake.hits == 3


def test_status_is_a_typed_error_in_the_sdk(sdk: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Fault(status=429), Fault(status=503))
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(**CHAT)
    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(**CHAT)


def test_always_applies_until_cleared_and_script_goes_first(
    http: httpx.Client, fake: FakeOpenAI
) -> None:
    fake.always(Fault(status=503))
    fake.script(Fault(status=400))
    assert [http.post("/chat/completions", json=CHAT).status_code for _ in range(3)] == [
        400,
        503,
        503,
    ]
    fake.always(None)
    assert http.post("/chat/completions", json=CHAT).status_code == 200


def test_streamed_content_override(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script(Fault(content="one two"))
    pieces = [
        json.loads(d)["choices"][0]["delta"].get("content") for d in sse_data(http, STREAM)[:-1]
    ]
    assert pieces == ["", "one ", "two", None]


# -- faults ----------------------------------------------------------------------------


def test_delay_holds_back_the_headers(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script(Fault(delay_s=0.3))
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json=CHAT, timeout=0.1)


def test_chunk_delay_spaces_the_events(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script(Fault(content="a", chunk_delay_s=0.05))
    started = time.monotonic()
    assert len(sse_data(http, STREAM)) == 4  # role, "a", finish, [DONE]
    assert time.monotonic() - started >= 0.15


def test_reset_before_is_a_transport_error(
    http: httpx.Client, sdk: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(Fault(reset_before=True), Fault(reset_before=True))
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        http.post("/chat/completions", json=CHAT)
    with pytest.raises(openai.APIConnectionError):
        sdk.chat.completions.create(**CHAT)
    assert fake.hits == 2


def test_reset_after_chunks_cuts_the_stream(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script(Fault(reset_after_chunks=2))
    seen: list[str] = []
    with (
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
        http.stream("POST", "/chat/completions", json=STREAM) as response,
    ):
        assert response.status_code == 200
        seen.extend(line for line in response.iter_lines() if line)
    assert len(seen) == 2


def test_truncate_after_chunks_ends_the_body_cleanly(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script(Fault(truncate_after_chunks=3))
    data = sse_data(http, STREAM)
    assert len(data) == 3
    assert "[DONE]" not in data
    assert all(json.loads(d)["choices"][0]["finish_reason"] is None for d in data)


def test_malformed_json(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script(Fault(malformed_json=True))
    response = http.post("/chat/completions", json=CHAT)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_malformed_sse(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.script(Fault(malformed_sse=True))
    data = sse_data(http, STREAM)
    assert data[-1] == "[DONE]"
    with pytest.raises(ValueError):
        json.loads(data[1])


def test_mid_stream_error_reaches_the_sdk_after_some_chunks(
    sdk: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.script(Fault(mid_stream_error=True))
    received = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        for chunk in sdk.chat.completions.create(**STREAM):
            received.append(chunk)
    assert len(received) == 2


# -- lifecycle -------------------------------------------------------------------------


def test_explicit_start_and_stop_free_the_port() -> None:
    fake = FakeOpenAI().start()
    try:
        assert httpx.get(f"http://127.0.0.1:{fake.port}/health").status_code == 200
        fake.script(Fault(delay_s=30))
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{fake.base_url}/chat/completions", json=CHAT, timeout=0.1)
    finally:
        started = time.monotonic()
        fake.stop()  # must not wait for the request still sleeping
    assert time.monotonic() - started < 2
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", fake.port), timeout=1).close()
