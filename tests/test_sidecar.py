"""The sidecar end to end: the real openai SDK → sidecar → fake backends, over HTTP."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from support.fake_openai import FakeOpenAI, Fault
from support.serve import ServerThread

from optiroute_mw.server import create_app

HARD = (
    "Design a distributed rate limiter for a microservices architecture; explain the "
    "trade-offs between token bucket and sliding window, then write Python code for it."
)


def client(sidecar: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=sidecar.url + "/v1",
        api_key="client-key-not-for-backends",
        max_retries=0,
        timeout=10,
    )


def chat(sidecar: ServerThread, body: dict[str, object], **headers: str) -> httpx.Response:
    return httpx.post(sidecar.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def test_json_completion_routed_and_described(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    raw = client(sidecar).chat.completions.with_raw_response.create(
        model="large", messages=[{"role": "user", "content": "what is 2+2"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: what is 2+2"
    # a simple prompt goes to the cheap model, under the requested model's price ceiling
    assert raw.headers["x-optiroute-model"] == "small"
    assert raw.headers["x-optiroute-backend"] == "primary"
    assert raw.headers["x-optiroute-tier"] == "simple"
    assert raw.headers["x-optiroute-cache"] == "miss"
    assert float(raw.headers["x-optiroute-overhead-ms"]) >= 0
    assert float(raw.headers["x-optiroute-cost"]) > 0
    assert raw.headers["x-request-id"]
    sent = fake.requests[-1]
    assert sent.json["model"] == "small-up"  # the backend's own name for the model


def test_hard_prompt_goes_to_strong_model(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    response = chat(sidecar, {"model": "auto", "messages": [{"role": "user", "content": HARD}]})
    assert response.status_code == 200
    assert response.headers["x-optiroute-tier"] == "complex"
    assert response.headers["x-optiroute-model"] == "large"
    assert fake.requests[-1].json["model"] == "large-up"


def test_streaming_through_sidecar(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    stream = client(sidecar).chat.completions.create(
        model="large", messages=[{"role": "user", "content": "say one two three"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: say one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"
    # usage was asked of the backend for cost accounting, but not shown to this caller
    assert all(c.usage is None for c in chunks)
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}


def test_stream_include_usage_honoured(sidecar: ServerThread) -> None:
    stream = client(sidecar).chat.completions.create(
        model="large",
        messages=[{"role": "user", "content": "count words please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_unknown_fields_forwarded_and_client_key_kept_back(
    sidecar: ServerThread, fake: FakeOpenAI
) -> None:
    body = {
        "model": "small",
        "messages": [{"role": "user", "content": "hi"}],
        "vendor_param": {"nested": [1, 2]},
        "top_k": 5,
    }
    response = chat(
        sidecar,
        body,
        authorization="Bearer client-secret-key",
        connection="keep-alive, x-custom",
        **{"x-custom": "1"},
    )
    assert response.status_code == 200
    sent = fake.requests[-1]
    assert sent.json["vendor_param"] == {"nested": [1, 2]} and sent.json["top_k"] == 5
    assert sent.headers["authorization"] == "Bearer sk-backend-secret-123456"
    assert "client-secret-key" not in json.dumps(sent.headers)
    assert "x-custom" not in sent.headers
    assert sent.headers["x-backend-extra"] == "yes"
    assert sent.headers["x-request-id"] == response.headers["x-request-id"]


def test_caller_request_id_echoed(sidecar: ServerThread) -> None:
    response = chat(
        sidecar,
        {"model": "small", "messages": [{"role": "user", "content": "x"}]},
        **{"x-request-id": "abc-123"},
    )
    assert response.headers["x-request-id"] == "abc-123"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b'{"model": "small"}', 400, "missing_required_parameter"),
        (b'{"model": "small", "messages": "hello"}', 400, "invalid_type"),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', 400, "invalid_type"),
        (
            b'{"model": "small", "messages": [{"role": "wizard", "content": "x"}]}',
            400,
            "invalid_type",
        ),
        (b'{"model": "small", "messages": [], "temperature": 1}', 400, "invalid_type"),
        (b"[1, 2, 3]", 400, "invalid_type"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    sidecar: ServerThread, fake: FakeOpenAI, body: bytes, status: int, code: str
) -> None:
    response = httpx.post(
        sidecar.url + "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]
    assert fake.hits == 0


def test_oversized_body_is_413(make_settings, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    with ServerThread(create_app(make_settings(max_body_bytes=2048))) as server:
        big = {"model": "small", "messages": [{"role": "user", "content": "x" * 5000}]}
        response = httpx.post(server.url + "/v1/chat/completions", json=big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"

        # also when the client streams the body without a content-length
        def chunks():  # type: ignore[no-untyped-def]
            yield json.dumps(big).encode()

        response = httpx.post(server.url + "/v1/chat/completions", content=chunks())
        assert response.status_code == 413
    assert fake.hits == 0


def test_sdk_sees_openai_error_for_bad_request(sidecar: ServerThread) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(sidecar).chat.completions.create(model="small", messages=[])
    assert caught.value.status_code == 400


def test_backend_500_fails_over_then_reports_cleanly(
    sidecar: ServerThread, fake: FakeOpenAI, fake2: FakeOpenAI
) -> None:
    body = {"model": "large", "messages": [{"role": "user", "content": HARD}]}
    fake.always(Fault(status=500))
    response = chat(sidecar, body)
    # the large model is also on the secondary backend: that one answers
    assert response.status_code == 200
    assert response.headers["x-optiroute-backend"] == "secondary"
    fake2.always(Fault(status=500))
    response = chat(sidecar, body, **{"x-optiroute-cache": "bypass"})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"


def test_backend_timeout_is_an_error_not_a_hang(make_settings, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    with ServerThread(
        create_app(make_settings(with_secondary=False, read_timeout_s=0.3))
    ) as server:
        fake.always(Fault(delay_s=3))
        response = httpx.post(
            server.url + "/v1/chat/completions",
            timeout=10,
            json={"model": "small", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "timeout"


def test_backend_bad_request_is_passed_on_without_failover(
    sidecar: ServerThread, fake: FakeOpenAI, fake2: FakeOpenAI
) -> None:
    fake.script(Fault(status=400))
    response = chat(sidecar, {"model": "large", "messages": [{"role": "user", "content": HARD}]})
    assert response.status_code == 400
    assert fake2.hits == 0


def test_truncated_stream_ends_with_an_error_event(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    fake.script(Fault(truncate_after_chunks=2))
    with pytest.raises(openai.APIError):
        list(
            client(sidecar).chat.completions.create(
                model="small", messages=[{"role": "user", "content": "a b c d e"}], stream=True
            )
        )


def test_exact_cache_hit_json_and_sse_replay(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    messages = [{"role": "user", "content": "cache me if you can"}]
    first = client(sidecar).chat.completions.with_raw_response.create(
        model="large", messages=messages
    )
    assert first.headers["x-optiroute-cache"] == "miss"
    again = client(sidecar).chat.completions.with_raw_response.create(
        model="large", messages=messages
    )
    assert again.headers["x-optiroute-cache"] == "hit-exact"
    assert again.parse().choices[0].message.content == "echo: cache me if you can"
    assert fake.hits == 1
    stream = client(sidecar).chat.completions.create(
        model="large", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "echo: cache me if you can"
    )
    assert chunks[-1].usage is not None
    assert fake.hits == 1
    bypass = chat(
        sidecar, {"model": "large", "messages": messages}, **{"x-optiroute-cache": "bypass"}
    )
    assert bypass.headers["x-optiroute-cache"] == "bypass" and fake.hits == 2


def test_stream_stored_only_when_complete(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    messages = [{"role": "user", "content": "streamed then cached"}]
    fake.script(Fault(truncate_after_chunks=2))
    with pytest.raises(openai.APIError):
        list(client(sidecar).chat.completions.create(model="small", messages=messages, stream=True))
    second = chat(sidecar, {"model": "small", "messages": messages})
    assert second.headers["x-optiroute-cache"] == "miss"
    list(client(sidecar).chat.completions.create(model="small", messages=messages, stream=True))
    third = chat(sidecar, {"model": "small", "messages": messages})
    assert third.headers["x-optiroute-cache"] == "hit-exact"


def test_service_endpoints(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    assert httpx.get(sidecar.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(sidecar.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == ["large", "small"]
    models = client(sidecar).models.list()
    assert {m.id for m in models.data} == {"auto", "small", "large"}
    chat(sidecar, {"model": "small", "messages": [{"role": "user", "content": "metric me"}]})
    metrics = httpx.get(sidecar.url + "/metrics").text
    assert (
        'optiroute_requests_total{cache="miss",model="small",route="chat",status="2xx",tier="simple"}'
        in metrics
    )
    assert "optiroute_gateway_overhead_seconds_bucket" in metrics
    assert "sk-backend-secret" not in metrics


def test_completions_route_forwarded(sidecar: ServerThread) -> None:
    completion = client(sidecar).completions.create(model="small", prompt="hello there")
    assert completion.choices[0].text == "echo: hello there"


def test_unknown_model_routed_as_auto_or_404_when_strict(make_settings, fake: FakeOpenAI) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    with ServerThread(create_app(make_settings())) as server:
        assert httpx.post(server.url + "/v1/chat/completions", json=body).status_code == 200
    with ServerThread(create_app(make_settings(strict_models=True))) as server:
        response = httpx.post(server.url + "/v1/chat/completions", json=body)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"


def test_pin_and_mode_headers(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    body = {"model": "large", "messages": [{"role": "user", "content": "what is 2+2"}]}
    pinned = chat(sidecar, body, **{"x-optiroute-model": "large", "x-optiroute-cache": "bypass"})
    assert pinned.headers["x-optiroute-model"] == "large"
    quality = chat(sidecar, body, **{"x-optiroute-mode": "quality", "x-optiroute-cache": "bypass"})
    assert quality.headers["x-optiroute-model"] == "large"
    bad = chat(sidecar, body, **{"x-optiroute-mode": "cheapest"})
    assert bad.status_code == 400


def test_gateway_store_is_the_cache_store(make_settings) -> None:  # type: ignore[no-untyped-def]
    from optiroute_mw.cache.store import MemoryStore
    from optiroute_mw.stack import Gateway

    store = MemoryStore()
    gateway = Gateway(make_settings(), store=store)
    with ServerThread(create_app(gateway=gateway)) as server:
        httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "small", "messages": [{"role": "user", "content": "keep"}]},
        )
    # an empty store is falsy: it must still be the one the cache stage uses
    assert len(store) == 1


def test_sidecar_process_tunes_the_collector(sidecar: ServerThread) -> None:
    import gc

    from optiroute_mw.stack import YOUNG_GC_THRESHOLD

    # the sidecar owns its process: start-up froze what it built and raised the young
    # generation's threshold (a call's garbage goes by reference counting)
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD
    assert chat(
        sidecar, {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    ).is_success
