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
