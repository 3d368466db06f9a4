"""Approximate nearest-neighbour index for the semantic cache (usearch, cosine metric).

Entries are grouped by a *partition* string (for example model + system prompt + tenant); a
lookup only ever sees entries of its own partition.  Each partition has its own usearch HNSW
index: isolation is exact by construction and a search costs the same however the entries are
spread over partitions, which a single shared index with a per-key partition filter and an
oversampled ``k`` cannot promise (a small partition next to a large one needs a huge ``k``).

The whole index holds at most ``max_entries`` entries; adding past the bound evicts the oldest
entries first and returns their ids so the caller can drop the cached responses too.

``save(path)`` writes a directory: one usearch file per partition (usearch's own format) plus
``meta.json``, a msgspec-encoded sidecar with the entry ids, partitions, texts and insertion
order.  ``SemanticIndex.load(path)`` restores it after a restart.

Thread safety: every public method takes one lock, so one writer and any number of readers
may share an instance.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

with contextlib.suppress(ImportError):
    # onnxruntime (the embedding model) crashes the process when it is first imported
    # after usearch; importing it first keeps either order of use safe
    import onnxruntime  # noqa: F401
from usearch.index import Index  # type: ignore[import-untyped,unused-ignore]

__all__ = ["DEFAULT_DIM", "DEFAULT_SIMILARITY_THRESHOLD", "Match", "SemanticIndex"]

DEFAULT_DIM = 384
DEFAULT_MAX_ENTRIES = 100_000
# Cosine cut-off for all-MiniLM-L6-v2 used together with ``LookalikeGuard`` (see
# tools/tune_semantic.py): the lowest setting that keeps medical-question precision >= 0.97
# with margin while QQP recall stays above 0.40.
DEFAULT_SIMILARITY_THRESHOLD = 0.89
_FORMAT_VERSION = 1
_META_FILE = "meta.json"


@dataclass(frozen=True, slots=True)
class Match:
    """A search hit: ``similarity`` is the cosine similarity (1.0 = same direction)."""

    entry_id: str
    text: str
    similarity: float


@dataclass(slots=True)
class _Entry:
    key: int
    entry_id: str
    partition: str
    text: str


class _Partition:
    __slots__ = ("index", "removed")

    def __init__(self, index: Any) -> None:
        self.index = index
        self.removed = 0  # tombstones left in the usearch graph by remove()


class _SidecarEntry(msgspec.Struct, array_like=True):
    key: int
    entry_id: str
    partition: str
    text: str


class _Sidecar(msgspec.Struct):
    format: int
    ndim: int
    dtype: str
    max_entries: int
    next_key: int
    partition_files: dict[str, str]
    entries: list[_SidecarEntry]  # oldest first


class SemanticIndex:
    """Cosine nearest-neighbour search over cached prompts, one usearch index per partition."""

    def __init__(
        self,
        ndim: int = DEFAULT_DIM,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        dtype: str = "f32",
        connectivity: int | None = None,
        expansion_search: int | None = None,
    ) -> None:
        if ndim <= 0:
            raise ValueError("ndim must be positive")
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.ndim = ndim
        self.max_entries = max_entries
        self.dtype = dtype
        self._connectivity = connectivity
        self._expansion_search = expansion_search
        self._lock = threading.RLock()
        self._partitions: dict[str, _Partition] = {}
        self._by_id: dict[str, _Entry] = {}
        self._by_key: OrderedDict[int, _Entry] = OrderedDict()  # insertion order = age
        self._next_key = 1

    # ------------------------------------------------------------------ basics

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_key)

    def __contains__(self, entry_id: object) -> bool:
        with self._lock:
            return entry_id in self._by_id

    def entry_ids(self) -> list[str]:
        with self._lock:
            return list(self._by_id)

    @property
    def partitions(self) -> list[str]:
        with self._lock:
            return list(self._partitions)

    def clear(self) -> None:
        with self._lock:
            self._partitions.clear()
            self._by_id.clear()
            self._by_key.clear()

    # ------------------------------------------------------------------ writes

    def add(self, partition: str, vector: npt.ArrayLike, entry_id: str, text: str) -> list[str]:
        """Add (or replace) an entry; returns the ids evicted to respect ``max_entries``."""
        vec = self._vector(vector)
        with self._lock:
            if entry_id in self._by_id:
                self._remove_locked(entry_id)
            key = self._next_key
            self._next_key += 1
            part = self._partition_for(partition)
            part.index.add(key, vec)
            entry = _Entry(key, entry_id, partition, text)
            self._by_id[entry_id] = entry
            self._by_key[key] = entry
            return self._evict_locked()

    def add_many(
        self,
        partitions: Sequence[str],
        vectors: npt.ArrayLike,
        entry_ids: Sequence[str],
        texts: Sequence[str],
    ) -> list[str]:
        """Bulk ``add`` (one usearch call per partition); returns the evicted ids."""
        mat = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(entry_ids)
        if mat.ndim != 2 or mat.shape != (n, self.ndim):
            raise ValueError(f"expected vectors of shape ({n}, {self.ndim}), got {mat.shape}")
        if not (len(partitions) == len(texts) == n):
            raise ValueError("partitions, vectors, entry_ids and texts differ in length")
        if len(set(entry_ids)) != n:
            raise ValueError("duplicate entry ids in one batch")
        if not np.all(np.isfinite(mat)):
            raise ValueError("vectors must be finite")
        with self._lock:
            groups: dict[str, list[int]] = {}
            keys = np.empty(n, dtype=np.uint64)
            for i, (partition, entry_id, text) in enumerate(
                zip(partitions, entry_ids, texts, strict=True)
            ):
                if entry_id in self._by_id:
                    self._remove_locked(entry_id)
                key = self._next_key
                self._next_key += 1
                keys[i] = key
                entry = _Entry(key, entry_id, partition, text)
                self._by_id[entry_id] = entry
                self._by_key[key] = entry
                groups.setdefault(partition, []).append(i)
            for partition, rows in groups.items():
                self._partition_for(partition).index.add(keys[rows], mat[rows])
            return self._evict_locked()

    def remove(self, entry_id: str) -> bool:
        """Remove an entry; False if it was not there."""
        with self._lock:
            return self._remove_locked(entry_id)

    # ------------------------------------------------------------------ reads

    def search(self, partition: str, vector: npt.ArrayLike, k: int = 4) -> list[Match]:
        """Up to ``k`` entries of ``partition`` nearest to ``vector``, most similar first."""
        if k <= 0:
            return []
        vec = self._vector(vector)
        with self._lock:
            part = self._partitions.get(partition)
            if part is None:
                return []
            found = part.index.search(vec, min(k, len(part.index)))
            out: list[Match] = []
            for key, distance in zip(found.keys.tolist(), found.distances.tolist(), strict=True):
                entry = self._by_key.get(int(key))
                if entry is None:
                    continue
                similarity = min(1.0, max(-1.0, 1.0 - float(distance)))
                out.append(Match(entry.entry_id, entry.text, similarity))
        out.sort(key=lambda m: m.similarity, reverse=True)
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the directory ``path`` (replaced atomically as a whole)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        try:
            with self._lock:
                files: dict[str, str] = {}
                for n, (name, part) in enumerate(self._partitions.items()):
                    filename = f"partition-{n:05d}.usearch"
                    part.index.save(str(tmp / filename))
                    files[name] = filename
                sidecar = _Sidecar(
                    format=_FORMAT_VERSION,
                    ndim=self.ndim,
                    dtype=self.dtype,
                    max_entries=self.max_entries,
                    next_key=self._next_key,
                    partition_files=files,
                    entries=[
                        _SidecarEntry(e.key, e.entry_id, e.partition, e.text)
                        for e in self._by_key.values()
                    ],
                )
            with open(tmp / _META_FILE, "wb") as fh:
                fh.write(msgspec.json.encode(sidecar))
                fh.flush()
                os.fsync(fh.fileno())
            old: Path | None = None
            if target.exists():
                old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
                target.rename(old)
            tmp.rename(target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], max_entries: int | None = None) -> SemanticIndex:
        """Restore an index written by ``save``.  ``max_entries`` overrides the saved bound."""
        root = Path(path)
        try:
            sidecar = msgspec.json.decode((root / _META_FILE).read_bytes(), type=_Sidecar)
        except (OSError, msgspec.DecodeError) as exc:
            raise ValueError(f"not a saved SemanticIndex: {root}: {exc}") from exc
        if sidecar.format != _FORMAT_VERSION:
            raise ValueError(f"unsupported SemanticIndex format {sidecar.format}")
        index = cls(
            sidecar.ndim,
            max_entries if max_entries is not None else sidecar.max_entries,
            dtype=sidecar.dtype,
        )
        for name, filename in sidecar.partition_files.items():
            restored = Index.restore(str(root / filename), view=False)
            if restored is None or restored.ndim != sidecar.ndim:
                raise ValueError(f"missing or mismatched usearch file {filename} in {root}")
            index._partitions[name] = _Partition(restored)
        for item in sidecar.entries:
            part = index._partitions.get(item.partition)
            if part is None or not part.index.contains(item.key):
                continue  # sidecar and index disagree: drop the entry rather than guess
            entry = _Entry(item.key, item.entry_id, item.partition, item.text)
            index._by_id[entry.entry_id] = entry
            index._by_key[entry.key] = entry
        index._next_key = max(sidecar.next_key, max(index._by_key, default=0) + 1)
        # Drop graph nodes the sidecar no longer knows about, then apply the bound.
        live_by_partition: dict[str, set[int]] = {}
        for entry in index._by_key.values():
            live_by_partition.setdefault(entry.partition, set()).add(entry.key)
        for name, part in list(index._partitions.items()):
            live = live_by_partition.get(name, set())
            if not live:
                del index._partitions[name]
                continue
            if len(part.index) != len(live):
                for key in part.index.keys:
                    if int(key) not in live:
                        part.index.remove(int(key))
        index._evict_locked()
        return index

    # ------------------------------------------------------------------ internals

    def _vector(self, vector: npt.ArrayLike) -> npt.NDArray[np.float32]:
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.ndim:
            raise ValueError(f"expected a {self.ndim}-d vector, got {vec.shape[0]}")
        if not np.all(np.isfinite(vec)):
            raise ValueError("vector must be finite")
        return vec

    def _partition_for(self, partition: str) -> _Partition:
        part = self._partitions.get(partition)
        if part is None:
            part = _Partition(self._new_usearch_index())
            self._partitions[partition] = part
        return part

    def _remove_locked(self, entry_id: str) -> bool:
        entry = self._by_id.pop(entry_id, None)
        if entry is None:
            return False
        del self._by_key[entry.key]
        part = self._partitions[entry.partition]
        part.index.remove(entry.key)
        part.removed += 1
        live = len(part.index)
        if live == 0:
            del self._partitions[entry.partition]
        elif part.removed > max(1024, live):
            self._compact_locked(entry.partition, part)
        return True

    def _compact_locked(self, name: str, part: _Partition) -> None:
        """Rebuild a partition's graph once tombstones outnumber live entries."""
        keys = np.asarray(part.index.keys, dtype=np.uint64)
        vectors = part.index.get(keys)
        fresh = _Partition(self._new_usearch_index())
        fresh.index.add(keys, np.asarray(vectors, dtype=np.float32))
        self._partitions[name] = fresh

    def _new_usearch_index(self) -> Any:
        kwargs: dict[str, Any] = {"ndim": self.ndim, "metric": "cos", "dtype": self.dtype}
        if self._connectivity is not None:
            kwargs["connectivity"] = self._connectivity
        if self._expansion_search is not None:
            kwargs["expansion_search"] = self._expansion_search
        return Index(**kwargs)

    def _evict_locked(self) -> list[str]:
        evicted: list[str] = []
        while len(self._by_key) > self.max_entries:
            oldest = next(iter(self._by_key.values()))
            self._remove_locked(oldest.entry_id)
            evicted.append(oldest.entry_id)
        return evicted
