"""The semantic cache on disk: its index, the entries' expiry, and (memory store) the answers.

``<path>/index`` is a :class:`~optiroute_mw.cache.semantic_index.SemanticIndex` directory;
``<path>/entries.msgpack`` holds when each entry expires, the Redis stream cursor, and,
when the answers live in this process's memory, the answers themselves (an index whose
answers were lost in a restart would only ever miss).  Both are written atomically, the
index first; a snapshot that does not load is reported and the cache starts empty.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

from .semantic_index import SemanticIndex

INDEX_DIR = "index"
ENTRIES_FILE = "entries.msgpack"


class Snapshot(msgspec.Struct):
    fingerprint: str  # the embedding model and the settings that shape answers
    saved_at: float  # unix time
    cursor: str
    expires: dict[str, float]  # entry id -> unix time
    answers: list[tuple[str, float, bytes]]  # (entry id, seconds left at saved_at, answer)


def save(
    path: str,
    index: SemanticIndex,
    expires: dict[str, float],
    answers: list[tuple[str, float, bytes]],
    cursor: str,
    fingerprint: str,
) -> None:
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    index.save(root / INDEX_DIR)
    snapshot = Snapshot(fingerprint, time.time(), cursor, expires, answers)
    tmp = root / f".{ENTRIES_FILE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.msgpack.encode(snapshot))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(root / ENTRIES_FILE)


class Stale(ValueError):
    """The snapshot was made with another embedding model or configuration."""


def load(path: str, max_entries: int, fingerprint: str) -> tuple[SemanticIndex, Snapshot] | None:
    """The saved index and snapshot, expired entries dropped; None when nothing was saved.

    Raises :class:`Stale` when it was saved under another fingerprint: vectors of another
    model, or answers from another registry, must not be served.
    """
    root = Path(path)
    entries = root / ENTRIES_FILE
    if not (root / INDEX_DIR).is_dir() or not entries.is_file():
        return None
    snapshot = msgspec.msgpack.decode(entries.read_bytes(), type=Snapshot)
    if snapshot.fingerprint != fingerprint:
        raise Stale("saved with another embedding model or configuration")
    index = SemanticIndex.load(root / INDEX_DIR, max_entries=max_entries)
    now = time.time()
    elapsed = max(0.0, now - snapshot.saved_at)
    for entry_id, expires_at in list(snapshot.expires.items()):
        if expires_at <= now:
            index.remove(entry_id)
            del snapshot.expires[entry_id]
    snapshot.answers = [
        (key, left - elapsed, value) for key, left, value in snapshot.answers if left > elapsed
    ]
    return index, snapshot
