"""The exact cache in Redis, shared by replicas: TTL per entry and a bounded LRU.

Built on redis-py's asyncio client rather than aiocache.  aiocache's Redis backend
gives get/set with a TTL but no size bound, and the bound here must hold across
replicas: each entry is a string key with its own expiry plus a member of one sorted
set scored by last use, and a Lua script updates both in one round trip (a hit
refreshes its recency; a store past ``max_entries`` drops the least recently used).
aiocache would add a serializer and a timeout wrapper on top and hide the raw client
the scripts and the semantic store's stream need.

Redis is a side system: short socket timeouts, no retries; when a command fails the
store raises :class:`StoreUnavailable`, logs once that Redis is down and for a short,
growing pause fails fast without touching the network, then tries again (redis-py
reconnects by itself).  The cache stage turns that into a miss and counts it.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from .store import StoreUnavailable

logger = structlog.get_logger(__name__)

PREFIX = "optiroute:cache:"
LRU_SUFFIX = "lru"

# KEYS: entry, lru index.  Returns the value or nil; a hit becomes the most recent.
_GET = """
local value = redis.call('GET', KEYS[1])
if value then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], t[1] .. string.format('%06d', t[2]), KEYS[1])
else
  redis.call('ZREM', KEYS[2], KEYS[1])
end
return value
"""

# KEYS: entry, lru index; ARGV: value, ttl ms, max entries.
_SET = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], t[1] .. string.format('%06d', t[2]), KEYS[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #oldest, 2 do redis.call('DEL', oldest[i]) end
end
return 1
"""


class RedisStore:
    """A :class:`~optiroute_mw.cache.store.CacheStore` over one Redis, failing fast when down."""

    def __init__(
        self,
        url: str,
        max_entries: int = 10_000,
        *,
        prefix: str = PREFIX,
        timeout_s: float = 0.25,
        pause_s: float = 0.5,
        max_pause_s: float = 5.0,
    ) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.client: Any = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self.max_entries = max_entries
        self.prefix = prefix
        self.lru_key = prefix + LRU_SUFFIX
        self._get = self.client.register_script(_GET)
        self._set = self.client.register_script(_SET)
        self._pause_s = pause_s
        self._max_pause_s = max_pause_s
        self._next_pause_s = pause_s
        self._down_until = 0.0
        self.down = False

    def _key(self, key: str) -> str:
        return self.prefix + "e:" + key

    async def get(self, key: str) -> bytes | None:
        value = await self.call(self._get, keys=[self._key(key), self.lru_key])
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        ttl_ms = max(1, int(ttl_s * 1000))
        await self.call(
            self._set,
            keys=[self._key(key), self.lru_key],
            args=[value, ttl_ms, self.max_entries],
        )

    async def delete(self, key: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._key(key))
        pipe.zrem(self.lru_key, self._key(key))
        await self.call(pipe.execute)

    async def call(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one Redis command: StoreUnavailable when Redis is down or slow."""
        now = time.monotonic()
        if self.down and now < self._down_until:
            raise StoreUnavailable("redis paused after a failure")
        try:
            result = await command(*args, **kwargs)
        except Exception as exc:  # connection refused, timeout, reset, protocol: all "down"
            self._failed(now, exc)
            raise StoreUnavailable(type(exc).__name__) from exc
        if self.down:
            self.down = False
            self._next_pause_s = self._pause_s
            logger.info("cache_redis_back")
        return result

    def _failed(self, now: float, exc: Exception) -> None:
        if not self.down:
            logger.warning("cache_redis_down", error=type(exc).__name__, detail=str(exc)[:200])
        self.down = True
        self._down_until = now + self._next_pause_s
        self._next_pause_s = min(self._max_pause_s, self._next_pause_s * 2)

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        except Exception:  # closing a dead connection is not worth a failure
            logger.debug("cache_redis_close_failed", exc_info=True)
