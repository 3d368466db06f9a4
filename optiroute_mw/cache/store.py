"""Cache stores: bounded in-memory LRU with TTL (the default); Redis in ``redis_store``."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...
    async def delete(self, key: str) -> None: ...


class StoreUnavailable(Exception):
    """The store cannot be reached now (already logged and counted by the store): a miss."""


class MemoryStore:
    """LRU over an OrderedDict; an entry past its TTL is a miss and is dropped."""

    def __init__(
        self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self.clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (self.clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    def dump(self, keys: Iterable[str]) -> list[tuple[str, float, bytes]]:
        """``(key, seconds left, value)`` of the live entries among ``keys``, oldest first."""
        now = self.clock()
        wanted = set(keys)
        return [
            (key, expires - now, value)
            for key, (expires, value) in self._entries.items()
            if key in wanted and expires > now
        ]

    def restore(self, items: Iterable[tuple[str, float, bytes]]) -> int:
        """Put back entries from :meth:`dump` (oldest first); returns how many were live."""
        count = 0
        for key, seconds_left, value in items:
            if seconds_left > 0 and key not in self._entries:
                self._entries[key] = (self.clock() + seconds_left, value)
                count += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return count
