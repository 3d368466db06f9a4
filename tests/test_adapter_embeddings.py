"""``/v1/embeddings`` through the sidecar: forwarded by model name, failover, exact cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from support.fake_provider import FakeProvider, Recorded, Reply, sidecar
from support.serve import ServerThread


def _embeddings(request: Recorded) -> Reply:
    body = request.json
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(t)), 0.125, -1.5]}
        for i, t in enumerate(texts)
    ]
    usage = {"prompt_tokens": 3 * len(texts), "total_tokens": 3 * len(texts)}
    return Reply(json={"object": "list", "data": data, "model": body["model"], "usage": usage})


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with (
        FakeProvider({"/v1/embeddings": _embeddings}) as one,
        FakeProvider({"/v1/embeddings": _embeddings}) as two,
    ):
        yield one, two


@pytest.fixture(scope="module")
def gateway(
    servers: tuple[FakeProvider, FakeProvider], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    one, two = servers
    registry = f"""
replace_defaults: true
backends:
  - {{name: one, base_url: "{one.url}/v1"}}
  - {{name: two, base_url: "{two.url}/v1"}}
  - {{name: claude, base_url: "http://127.0.0.1:9", adapter: anthropic}}
models:
  - {{name: embed-small, upstream: text-embedding-3-small, backend: one, tier: simple,
     input_per_mtok: 0.02, aliases: [text-embedding-3-small]}}
  - {{name: embed-small, upstream: text-embedding-3-small, backend: two, tier: simple,
     input_per_mtok: 0.02}}
  - {{name: claude-only, backend: claude, tier: simple}}
"""
    with sidecar(registry, tmp_path_factory.mktemp("embed")) as server:
        yield server


@pytest.fixture
def fakes(servers: tuple[FakeProvider, FakeProvider]) -> tuple[FakeProvider, FakeProvider]:
    for fake in servers:
        fake.reset()
    return servers


def test_forwarded_then_served_from_cache(sdk: openai.OpenAI, fakes: Any) -> None:
    one, _ = fakes
    first = sdk.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["alpha", "be"], encoding_format="float"
    )
    assert first.headers["x-optiroute-cache"] == "miss"
    assert first.headers["x-optiroute-model"] == "embed-small"
    assert first.headers["x-optiroute-backend"] == "one"
    assert float(first.headers["x-optiroute-cost"]) == pytest.approx(6 * 0.02 / 1e6)
    assert one.last.json == {"model": "text-embedding-3-small", "input": ["alpha", "be"]}
    vectors = [d.embedding for d in first.parse().data]
    assert vectors == [[5.0, 0.125, -1.5], [2.0, 0.125, -1.5]]
    # the SDK's default (base64) and the float answer share one cache entry
    second = sdk.embeddings.with_raw_response.create(model="embed-small", input=["alpha", "be"])
    assert second.headers["x-optiroute-cache"] == "hit-exact"
    assert [d.embedding for d in second.parse().data] == vectors
    assert len(one.requests) == 1


def test_cache_bypass_and_refresh(sdk: openai.OpenAI, fakes: Any) -> None:
    one, _ = fakes
    for control, expected in (("bypass", "bypass"), ("refresh", "miss"), ("use", "hit-exact")):
        raw = sdk.embeddings.with_raw_response.create(
            model="embed-small", input="cache control", extra_headers={"x-optiroute-cache": control}
        )
        assert raw.headers["x-optiroute-cache"] == expected
    assert len(one.requests) == 2


def test_failover_to_the_next_deployment(sdk: openai.OpenAI, fakes: Any) -> None:
    one, two = fakes
    one.script(Reply(status=503, json={"error": {"message": "overloaded", "type": "server_error"}}))
    raw = sdk.embeddings.with_raw_response.create(model="embed-small", input="failover")
    assert raw.headers["x-optiroute-backend"] == "two"
    assert len(one.requests) == 1 and len(two.requests) == 1


def test_request_errors(gateway: ServerThread, fakes: Any) -> None:
    one, _ = fakes
    unknown = httpx.post(gateway.url + "/v1/embeddings", json={"model": "nope", "input": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    missing = httpx.post(gateway.url + "/v1/embeddings", json={"model": "embed-small"})
    assert missing.status_code == 400 and "input" in missing.json()["error"]["message"]
    unsupported = httpx.post(
        gateway.url + "/v1/embeddings", json={"model": "claude-only", "input": "x"}
    )
    assert unsupported.status_code == 400 and "chat only" in unsupported.json()["error"]["message"]
    one.script(
        Reply(
            status=400,
            json={"error": {"message": "input too long", "type": "invalid_request_error"}},
        )
    )
    refused = httpx.post(
        gateway.url + "/v1/embeddings",
        json={"model": "embed-small", "input": "long"},
        headers={"x-optiroute-cache": "bypass", "x-request-id": "req-embed-1"},
    )
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "input too long"
    assert refused.headers["x-request-id"] == "req-embed-1"
