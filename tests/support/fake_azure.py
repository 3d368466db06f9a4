"""A fake Azure OpenAI resource: deployment URLs with ``?api-version=``, answers as Azure's.

``/openai/deployments/{deployment}/chat/completions`` echoes ``"echo: " + <last user
text>`` with the deployment's model name; streams open with Azure's chunk that holds
only ``prompt_filter_results`` (no choices, empty id and model), and every choice
carries ``content_filter_results``.  ``/openai/deployments/{deployment}/embeddings``
answers a small vector per input; ``/openai/v1/chat/completions`` is the v1 API.
"""

from __future__ import annotations

import json
from typing import Any

from support.fake_provider import FakeProvider, Recorded, Reply, last_user_text

FILTERS = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
PROMPT_FILTER_CHUNK = {
    "choices": [],
    "created": 0,
    "id": "",
    "model": "",
    "object": "",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}],
}


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _chat(request: Recorded) -> Reply:
    body = request.json
    text = "echo: " + last_user_text(body)
    model = "gpt-4o-2024-08-06"
    base = {"id": "chatcmpl-AzureFake1", "created": 1727000000, "model": model}
    if body.get("stream"):
        words = text.split(" ")
        pieces = [w + " " for w in words[:-1]] + words[-1:]
        events = [sse(PROMPT_FILTER_CHUNK)]
        first = {"role": "assistant", "content": ""}
        for delta in [first, *({"content": p} for p in pieces)]:
            choice = {
                "index": 0,
                "delta": delta,
                "finish_reason": None,
                "content_filter_results": {} if "role" in delta else FILTERS,
            }
            events.append(sse({**base, "object": "chat.completion.chunk", "choices": [choice]}))
        events.append(
            sse(
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
            )
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": 9,
                "completion_tokens": len(pieces),
                "total_tokens": 9 + len(pieces),
            }
            events.append(
                sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            )
        events.append(b"data: [DONE]\n\n")
        return Reply(chunks=events, content_type="text/event-stream")
    answer = {
        **base,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "content_filter_results": FILTERS,
            }
        ],
        "prompt_filter_results": PROMPT_FILTER_CHUNK["prompt_filter_results"],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }
    return Reply(json=answer)


def _embeddings(request: Recorded) -> Reply:
    body = request.json
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [
        {"object": "embedding", "index": i, "embedding": [0.25, -0.5, float(len(t))]}
        for i, t in enumerate(texts)
    ]
    usage = {"prompt_tokens": 4 * len(texts), "total_tokens": 4 * len(texts)}
    return Reply(
        json={"object": "list", "data": data, "model": "text-embedding-3-small", "usage": usage}
    )


class FakeAzure(FakeProvider):
    def __init__(self) -> None:
        super().__init__(
            {
                "/openai/deployments/{deployment}/chat/completions": _chat,
                "/openai/deployments/{deployment}/embeddings": _embeddings,
                "/openai/v1/chat/completions": _chat,
            }
        )
