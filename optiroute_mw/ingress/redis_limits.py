"""Token buckets in Redis, updated atomically by Lua so replicas share one allowance.

Each bucket is a hash ``{level, ts}``; the script refills it from Redis's own clock
(replicas' clocks never disagree), checks every bucket of the call and takes from
all of them or from none.  Numbers travel as strings: Redis would truncate a Lua
float reply to an integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .limits import WINDOW_S, Bucket, Verdict

PREFIX = "optiroute:rl:"
TTL_MS = int(WINDOW_S * 2000)  # an idle bucket is full again after a minute anyway

_REFILL = """
local function refill(key, cap, now)
  local state = redis.call('HMGET', key, 'level', 'ts')
  local level = tonumber(state[1]) or cap
  local ts = tonumber(state[2]) or now
  return math.min(cap, level + math.max(0, now - ts) * cap / WINDOW_MS)
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = tonumber(ARGV[1])
"""

# KEYS: the call's buckets; ARGV: ttl_ms, then capacity and cost per bucket.
# Returns {wait_ms, level...}; wait_ms "0" means taken.
TAKE = (
    _REFILL
    + """
local levels = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[2 * i])
  local cost = tonumber(ARGV[2 * i + 1])
  levels[i] = refill(key, cap, now)
  if cost > levels[i] then
    wait = math.max(wait, (cost - levels[i]) * WINDOW_MS / cap)
  end
end
if wait == 0 then
  for i, key in ipairs(KEYS) do
    levels[i] = levels[i] - tonumber(ARGV[2 * i + 1])
    redis.call('HSET', key, 'level', tostring(levels[i]), 'ts', now)
    redis.call('PEXPIRE', key, ttl)
  end
end
local out = {tostring(wait)}
for i = 1, #levels do out[i + 1] = tostring(levels[i]) end
return out
"""
).replace("WINDOW_MS", str(int(WINDOW_S * 1000)))

# KEYS: token buckets; ARGV: ttl_ms, then capacity and delta per bucket (a negative
# delta gives back, never above capacity).
ADJUST = (
    _REFILL
    + """
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[2 * i])
  local level = math.min(cap, refill(key, cap, now) - tonumber(ARGV[2 * i + 1]))
  redis.call('HSET', key, 'level', tostring(level), 'ts', now)
  redis.call('PEXPIRE', key, ttl)
end
return 1
"""
).replace("WINDOW_MS", str(int(WINDOW_S * 1000)))


class RedisLimits:
    def __init__(self, url: str, *, timeout_s: float = 0.25) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # no retries and short timeouts: a slow Redis must not hold calls up; the
        # caller falls back to local buckets instead
        self.client: Any = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._take = self.client.register_script(TAKE)
        self._adjust = self.client.register_script(ADJUST)

    @staticmethod
    def _args(buckets: Sequence[Bucket]) -> tuple[list[str], list[str]]:
        keys = [PREFIX + b.key for b in buckets]
        args = [str(TTL_MS)]
        for b in buckets:
            args += [repr(float(b.capacity)), repr(float(b.cost))]
        return keys, args

    async def take(self, buckets: Sequence[Bucket]) -> Verdict:
        keys, args = self._args(buckets)
        reply = await self._take(keys=keys, args=args)
        wait_ms = float(reply[0])
        levels = [float(v) for v in reply[1:]]
        return Verdict(wait_ms == 0, wait_ms / 1000, levels)

    async def adjust(self, buckets: Sequence[Bucket]) -> None:
        keys, args = self._args(buckets)
        await self._adjust(keys=keys, args=args)

    async def aclose(self) -> None:
        await self.client.aclose()
