"""The exact-cache key: SHA-256 over a canonical encoding of what changes the answer.

Everything in the request counts (model, every message, every generation
parameter, unknown fields too) except what only changes the delivery: ``stream``
and ``stream_options``.  Keys are sorted and integral floats folded to ints, so
parameter order, JSON whitespace and ``1`` vs ``1.0`` do not change the key.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

DELIVERY_ONLY = frozenset({"stream", "stream_options", "optiroute"})


def _fold(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _fold(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fold(v) for v in value]
    return value


def canonical(raw: dict[str, Any]) -> bytes:
    kept = {k: _fold(v) for k, v in raw.items() if k not in DELIVERY_ONLY}
    return msgspec.json.encode(kept, order="sorted")


def exact_key(tenant: str, kind: str, raw: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(tenant.encode())
    digest.update(b"\x00")
    digest.update(kind.encode())
    digest.update(b"\x00")
    digest.update(canonical(raw))
    return digest.hexdigest()


def semantic_probe(tenant: str, kind: str, raw: dict[str, Any]) -> tuple[str, str] | None:
    """``(partition, last user text)`` for the semantic cache, or None when it cannot apply.

    The partition is a SHA-256 over everything the exact key covers except the content of
    the last user message: tenant, requested model, system prompt, earlier turns and every
    generation parameter.  Two requests may share an answer only inside one partition, so
    only their last user turn may differ.  A last user turn that is not plain text (images,
    audio, files) is never compared by meaning.
    """
    messages = raw.get("messages")
    if kind != "chat" or not isinstance(messages, list):
        return None
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, dict) and message.get("role") == "user":
            break
    else:
        return None
    text = _plain_text(message.get("content"))
    if not text:
        return None
    masked = list(messages)
    masked[index] = {**message, "content": None}
    digest = hashlib.sha256()
    digest.update(b"semantic\x00")
    digest.update(tenant.encode())
    digest.update(b"\x00")
    digest.update(kind.encode())
    digest.update(b"\x00")
    digest.update(canonical({**raw, "messages": masked}))
    return digest.hexdigest(), text


def _plain_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content.strip() or None
    if isinstance(content, list) and content:
        parts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                return None
            parts.append(str(part.get("text", "")))
        return "\n".join(parts).strip() or None
    return None
