"""The semantic layer: reuse an answer whose question meant the same, inside one partition.

A lookup embeds the last user message (in a worker thread, never on the event loop),
searches the partition's nearest stored prompts (:mod:`.semantic_index`), keeps those at
or above the similarity threshold that the look-alike guard accepts (:mod:`.guard`), and
fetches the first one's answer from the exact store (the index entry's id is the exact
key of the request that stored it, so TTL, LRU and Redis sharing come from the store).

The model loads in a thread at start-up; until then the layer is skipped, and if it
cannot load the layer turns itself off with one log line while the exact layer goes on.
The index is saved every minute when it changed and on shutdown, and loaded on start
(:mod:`.semantic_snapshot`); with Redis, replicas share entries through
:mod:`.semantic_log` within about ``sync_s`` seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import structlog

from ..observe.metrics import Metrics
from . import semantic_snapshot
from .guard import LookalikeGuard
from .keys import semantic_probe
from .semantic_index import DEFAULT_SIMILARITY_THRESHOLD, Match, SemanticIndex
from .semantic_log import START, LogRecord, SemanticLog
from .semantic_model import TextEmbedder, in_daemon_thread
from .store import CacheStore, MemoryStore

logger = structlog.get_logger(__name__)
T = TypeVar("T")
Vector = npt.NDArray[np.float32]
MAX_CHARS = 1000  # the encoder reads 256 tokens: a longer prompt's tail would go unseen
CANDIDATES = 4
SAVE_EVERY_S = 60.0


@dataclass(slots=True)
class Probe:
    partition: str
    text: str
    vector: Vector | None = None


@dataclass(frozen=True, slots=True)
class SemanticHit:
    entry: bytes
    entry_id: str
    similarity: float
    cached_text: str


class SemanticCache:
    def __init__(
        self,
        store: CacheStore,
        embedder: TextEmbedder,
        *,
        threshold: float = DEFAULT_SIMILARITY_THRESHOLD,
        max_entries: int = 10_000,
        path: str | None = None,
        log: SemanticLog | None = None,
        sync_s: float = 0.5,
        guard: LookalikeGuard | None = None,
        metrics: Metrics | None = None,
        max_chars: int = MAX_CHARS,
        fingerprint: str = "",
        warm_up: bool = True,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.threshold = threshold
        self.index = SemanticIndex(max_entries=max_entries)
        self.path = path
        self.log = log
        self.sync_s = sync_s
        self.guard = guard or LookalikeGuard()
        self.metrics = metrics
        self.max_chars = max_chars
        self.fingerprint = fingerprint
        self.warm_up = warm_up
        self.state = "loading"  # loading | on | off
        self.expires: dict[str, float] = {}  # entry id -> unix time
        self.cursor = START
        self.dirty = False
        self._ready = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optiroute-embed")
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.state == "on"

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._boot())

    async def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Wait for the model (and saved index) to load; True when the layer is on."""
        await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self.active

    async def _boot(self) -> None:
        try:
            await in_daemon_thread(self.embedder.load)
            if self.warm_up:  # the first call through the model is slow
                await self._run(self.embedder.embed_one, "warm up")
        except Exception as exc:  # no model, no semantic layer; the exact layer goes on
            self.state = "off"
            logger.warning(
                "semantic_cache_off",
                reason=str(exc)[:300],
                hint="set OPTIROUTE_EMBED_MODEL_PATH to a local model folder, "
                "or OPTIROUTE_SEMANTIC=false to silence this",
            )
            self._ready.set()
            return
        await self._restore()
        if self.log is not None:
            await self.sync()
        self.state = "on"
        self._ready.set()
        logger.info("semantic_cache_on", entries=len(self.index), threshold=self.threshold)
        await self._background()

    async def _background(self) -> None:
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(self.sync_s if self.log is not None else SAVE_EVERY_S)
            if self.log is not None:
                await self.sync()
            if self.path and self.dirty and time.monotonic() - last_save >= SAVE_EVERY_S:
                last_save = time.monotonic()
                await self.save()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.active and self.path and self.dirty:
            await self.save()
        self.state = "off"
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ------------------------------------------------------------------ lookups

    def probe(self, tenant: str, kind: str, raw: dict[str, Any]) -> Probe | None:
        found = semantic_probe(tenant, kind, raw)
        if found is None or len(found[1]) > self.max_chars:
            return None
        return Probe(*found)

    async def lookup(self, probe: Probe) -> SemanticHit | None:
        """The best stored answer for ``probe`` (threshold and guard passed), or None.

        Raises what the embedder or the store raised; the caller counts it as a miss.
        """
        matches = await self._run(self._search, probe)
        now = time.time()
        for match in matches:
            if self.expires.get(match.entry_id, math.inf) <= now:
                self.forget(match.entry_id)
                continue
            raw = await self.store.get(match.entry_id)
            if raw is None:
                self.forget(match.entry_id)  # expired or evicted from the store
                continue
            return SemanticHit(raw, match.entry_id, match.similarity, match.text)
        return None

    def _search(self, probe: Probe) -> list[Match]:
        if probe.vector is None:
            probe.vector = self.embedder.embed_one(probe.text)
        found = self.index.search(probe.partition, probe.vector, k=CANDIDATES)
        return [
            m
            for m in found
            if m.similarity >= self.threshold and self.guard.accepts(m.text, probe.text)
        ]

    async def remember(self, probe: Probe, entry_id: str, ttl_s: float) -> None:
        """Index a stored answer; with Redis, tell the other replicas."""
        vector, evicted = await self._run(self._add, probe, entry_id)
        for old in evicted:
            self.expires.pop(old, None)
        expires_at = time.time() + ttl_s
        self.expires[entry_id] = expires_at
        self.dirty = True
        if self.log is not None:
            record = LogRecord(probe.partition, entry_id, probe.text, vector, expires_at)
            await self.log.publish(record)

    def _add(self, probe: Probe, entry_id: str) -> tuple[Vector, list[str]]:
        if probe.vector is None:
            probe.vector = self.embedder.embed_one(probe.text)
        evicted = self.index.add(probe.partition, probe.vector, entry_id, probe.text)
        return probe.vector, evicted

    def forget(self, entry_id: str) -> None:
        self.index.remove(entry_id)
        self.expires.pop(entry_id, None)
        self.dirty = True

    # ------------------------------------------------------------------ sharing, persistence

    async def sync(self) -> int:
        """Pull entries other replicas wrote; returns how many were added."""
        if self.log is None:
            return 0
        added = 0
        try:
            while True:
                cursor, records = await self.log.pull(self.cursor)
                added += await self._add_records(records)
                self.cursor = cursor
                if len(records) < 512:
                    return added
        except Exception as exc:  # Redis down: local-only until it returns
            if self.metrics:
                self.metrics.side_errors.labels("semantic_sync").inc()
            logger.debug("semantic_sync_failed", error=type(exc).__name__)
            return added

    async def _add_records(self, records: list[LogRecord]) -> int:
        now = time.time()
        fresh: dict[str, LogRecord] = {}
        for r in records:
            if r.expires_at > now and r.vector.shape == (self.index.ndim,):
                fresh[r.entry_id] = r
        todo = [r for r in fresh.values() if r.entry_id not in self.index]
        if not todo:
            return 0
        evicted = await self._run(
            self.index.add_many,
            [r.partition for r in todo],
            np.stack([r.vector for r in todo]),
            [r.entry_id for r in todo],
            [r.text for r in todo],
        )
        for r in todo:
            self.expires[r.entry_id] = r.expires_at
        for entry_id in evicted:
            self.expires.pop(entry_id, None)
        self.dirty = True
        return len(todo)

    async def save(self) -> None:
        if not self.path:
            return
        self.dirty = False
        answers: list[tuple[str, float, bytes]] = []
        if isinstance(self.store, MemoryStore):
            answers = self.store.dump(self.index.entry_ids())
        try:
            await self._run(
                semantic_snapshot.save,
                self.path,
                self.index,
                dict(self.expires),
                answers,
                self.cursor,
                self.fingerprint,
            )
        except Exception as exc:
            self.dirty = True
            logger.warning("semantic_index_save_failed", path=self.path, error=str(exc)[:200])

    async def _restore(self) -> None:
        if not self.path:
            return
        try:
            loaded = await self._run(
                semantic_snapshot.load, self.path, self.index.max_entries, self.fingerprint
            )
        except semantic_snapshot.Stale as exc:
            logger.info("semantic_index_discarded", path=self.path, reason=str(exc))
            return
        except Exception as exc:
            logger.warning("semantic_index_not_loaded", path=self.path, error=str(exc)[:200])
            return
        if loaded is None:
            return
        self.index, snapshot = loaded
        self.expires = snapshot.expires
        self.cursor = snapshot.cursor
        if isinstance(self.store, MemoryStore):
            self.store.restore(snapshot.answers)
        logger.info("semantic_index_loaded", path=self.path, entries=len(self.index))
