"""The Azure OpenAI adapter: deployment URLs, api-version, api-key, Azure's stream habits."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from support.fake_azure import FakeAzure
from support.fake_provider import sidecar
from support.serve import ServerThread

KEY = "azure-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAzure]:
    with FakeAzure() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(server: FakeAzure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TEST_AZURE_KEY", KEY)
    registry = f"""
replace_defaults: true
backends:
  - {{name: azure, base_url: "{server.url}", adapter: azure, api_key_env: TEST_AZURE_KEY,
     api_version: "2024-10-21"}}
  - {{name: azure-v1, base_url: "{server.url}/openai", adapter: azure, api_key_env: TEST_AZURE_KEY,
     api_version: v1}}
models:
  - {{name: gpt-4o, upstream: my-gpt4o-deployment, backend: azure, tier: complex}}
  - {{name: gpt-4o-v1, upstream: gpt-4o, backend: azure-v1, tier: complex}}
  - {{name: text-embedding-3-small, upstream: embed-deployment, backend: azure, tier: simple}}
"""
    with sidecar(registry, tmp_path_factory.mktemp("azure")) as gateway:
        yield gateway
    mp.undo()


@pytest.fixture
def fake(server: FakeAzure) -> FakeAzure:
    server.reset()
    return server


def pin(model: str) -> dict[str, str]:
    return {"x-optiroute-model": model, "x-optiroute-cache": "bypass"}


def test_deployment_url_version_and_key(sdk: openai.OpenAI, fake: FakeAzure) -> None:
    answer = sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers=pin("gpt-4o")
    )
    sent = fake.last
    assert sent.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert sent.query == "api-version=2024-10-21"
    assert sent.headers["api-key"] == KEY
    assert "authorization" not in sent.headers
    assert answer.choices[0].message.content == "echo: hi"


def test_v1_api(sdk: openai.OpenAI, fake: FakeAzure) -> None:
    sdk.chat.completions.create(
        model="gpt-4o-v1",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers=pin("gpt-4o-v1"),
    )
    assert fake.last.path == "/openai/v1/chat/completions" and fake.last.query == ""
    assert fake.last.json["model"] == "gpt-4o"


def test_stream_starts_with_a_real_chunk(sdk: openai.OpenAI, fake: FakeAzure) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "a b"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=pin("gpt-4o"),
        )
    )
    # Azure's opening chunk (no choices, empty id) is not passed on; nothing else is lost
    assert chunks[0].id == "chatcmpl-AzureFake1" and chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: a b"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_embeddings_at_the_deployment(sdk: openai.OpenAI, fake: FakeAzure) -> None:
    result = sdk.embeddings.create(model="text-embedding-3-small", input="abc")
    assert fake.last.path == "/openai/deployments/embed-deployment/embeddings"
    assert fake.last.query == "api-version=2024-10-21"
    assert "encoding_format" not in fake.last.json  # floats asked for; base64 made here
    assert result.data[0].embedding == pytest.approx([0.25, -0.5, 3.0])
