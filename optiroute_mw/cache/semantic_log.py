"""How replicas share the semantic index: an append-only Redis stream of new entries.

Each replica keeps its own usearch index in memory (searching is a local, sub-millisecond
affair) and the answers live in the shared exact store.  When a replica stores an answer
it also appends ``(partition, entry id, prompt, vector, expiry)`` to one Redis stream
(``XADD`` with an approximate ``MAXLEN``, so the stream stays bounded); every replica
reads the stream from its own cursor every ``OPTIROUTE_SEMANTIC_SYNC_S`` seconds
(``XREAD``, never blocking) and adds what it has not seen.  An entry written through one
replica is therefore found by the others within about one sync interval.  A new or
restarted replica reads the stream from its saved cursor (or from the start) and catches up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .redis_store import RedisStore

STREAM = "optiroute:semantic:log"
START = "0-0"


@dataclass(frozen=True, slots=True)
class LogRecord:
    partition: str
    entry_id: str
    text: str
    vector: npt.NDArray[np.float32]
    expires_at: float  # unix time


class SemanticLog:
    """Publish and pull semantic entries through the Redis the exact store uses."""

    def __init__(self, store: RedisStore, maxlen: int, stream: str = STREAM) -> None:
        self.store = store
        self.maxlen = maxlen
        self.stream = stream

    async def publish(self, record: LogRecord) -> None:
        fields = {
            "p": record.partition,
            "k": record.entry_id,
            "t": record.text,
            "v": np.asarray(record.vector, dtype="<f4").tobytes(),
            "e": repr(record.expires_at),
        }
        await self.store.call(
            self.store.client.xadd, self.stream, fields, maxlen=self.maxlen, approximate=True
        )

    async def pull(self, after: str, count: int = 512) -> tuple[str, list[LogRecord]]:
        """Records after the cursor ``after`` (at most ``count``) and the new cursor."""
        reply: Any = await self.store.call(
            self.store.client.xread, {self.stream: after}, count=count
        )
        records: list[LogRecord] = []
        cursor = after
        for _stream, messages in reply or ():
            for message_id, fields in messages:
                cursor = _text(message_id)
                record = _decode(fields)
                if record is not None:
                    records.append(record)
        return cursor, records


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(fields: dict[Any, Any]) -> LogRecord | None:
    try:
        get = {_text(k): v for k, v in fields.items()}
        vector = np.frombuffer(bytes(get["v"]), dtype="<f4").astype(np.float32)
        return LogRecord(
            partition=_text(get["p"]),
            entry_id=_text(get["k"]),
            text=bytes(get["t"]).decode("utf-8", "replace"),
            vector=vector,
            expires_at=float(_text(get["e"])),
        )
    except (KeyError, ValueError, TypeError):
        return None  # a foreign or damaged record: skipped, never fatal
