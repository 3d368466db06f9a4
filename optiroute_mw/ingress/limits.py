"""Rate limits: requests and tokens per minute, per key and for the whole gateway.

Each limit is a token bucket holding one minute's allowance and refilling
continuously, so a client may burst up to its limit and then runs at the limit's
pace (no cliff at the top of each minute).  A call takes one request and its
estimated prompt tokens from every bucket that applies, all or nothing; after the
call the token buckets are corrected by the difference between the real usage and
the estimate (a bucket may go below zero: the next calls then wait).

In one process the buckets live in memory; with ``OPTIROUTE_REDIS_URL`` they live
in Redis and are updated by one Lua script per call, so replicas share them.  When
Redis fails the limiter falls back to its in-memory buckets for a short while
(counted and logged): Redis trouble never fails a call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import structlog

from ..observe.metrics import Metrics
from .tenants import Tenant

logger = structlog.get_logger(__name__)
WINDOW_S = 60.0


class Bucket(NamedTuple):  # a tuple: built several times per call, and cheap to build
    key: str  # e.g. "key:3f2a…:rpm", "global:tpm"
    capacity: float  # allowance per minute
    cost: float  # what this call takes (or, when correcting, gives back if negative)
    kind: str = "requests"  # requests | tokens


@dataclass(slots=True)
class Verdict:
    allowed: bool
    retry_after_s: float = 0.0
    levels: list[float] = field(default_factory=list)  # what is left in each bucket


class LimitBackend(Protocol):
    async def take(self, buckets: Sequence[Bucket]) -> Verdict: ...
    async def adjust(self, buckets: Sequence[Bucket]) -> None: ...
    async def aclose(self) -> None: ...


class MemoryLimits:
    """Token buckets in a dict: one process, no I/O."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._state: dict[str, tuple[float, float]] = {}  # key -> (level, at)

    def _level(self, bucket: Bucket, now: float) -> float:
        level, at = self._state.get(bucket.key, (bucket.capacity, now))
        return min(bucket.capacity, level + (now - at) * bucket.capacity / WINDOW_S)

    async def take(self, buckets: Sequence[Bucket]) -> Verdict:
        now = self.clock()
        levels = [self._level(b, now) for b in buckets]
        wait = max(
            (
                (b.cost - level) * WINDOW_S / b.capacity
                for b, level in zip(buckets, levels, strict=True)
                if b.cost > level
            ),
            default=0.0,
        )
        if wait > 0:
            return Verdict(False, wait, levels)
        levels = [level - b.cost for b, level in zip(buckets, levels, strict=True)]
        for b, level in zip(buckets, levels, strict=True):
            self._state[b.key] = (level, now)
        if len(self._state) > 100_000:  # a minute idle refills a bucket (a deficit is forgiven)
            self._state = {k: v for k, v in self._state.items() if now - v[1] < WINDOW_S}
        return Verdict(True, 0.0, levels)

    async def adjust(self, buckets: Sequence[Bucket]) -> None:
        now = self.clock()
        for b in buckets:
            self._state[b.key] = (min(b.capacity, self._level(b, now) - b.cost), now)

    async def aclose(self) -> None:
        return None


@dataclass(slots=True)
class Admission:
    allowed: bool
    retry_after_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    too_large: bool = False  # the estimate exceeds a whole minute's token allowance
    exceeded: str = ""  # which limits refused: "requests", "tokens" or both


class RateLimiter:
    """Which buckets apply to a call, the verdict, the headers, and Redis failing open."""

    def __init__(
        self,
        *,
        global_rpm: int | None = None,
        global_tpm: int | None = None,
        backend: LimitBackend | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_s: float = 1.0,
    ) -> None:
        self.global_rpm = global_rpm
        self.global_tpm = global_tpm
        self.local = MemoryLimits(clock)
        self.shared = backend  # Redis, when configured
        self.metrics = metrics
        self.clock = clock
        self.retry_s = retry_s  # after a Redis failure, stay local this long
        self._shared_down_until = float("-inf")
        self._last_warning = float("-inf")

    def buckets(self, tenant: Tenant, tokens: float) -> list[Bucket]:
        out: list[Bucket] = []
        scope = tenant.subject
        for name, rpm, tpm in (
            (scope, tenant.rpm, tenant.tpm),
            ("global", self.global_rpm, self.global_tpm),
        ):
            if rpm:
                out.append(Bucket(f"{name}:rpm", rpm, 1, "requests"))
            if tpm:
                out.append(Bucket(f"{name}:tpm", tpm, tokens, "tokens"))
        return out

    async def admit(self, tenant: Tenant, estimated_tokens: int) -> Admission:
        buckets = self.buckets(tenant, estimated_tokens)
        if not buckets:
            return Admission(True)
        if any(b.kind == "tokens" and b.cost > b.capacity for b in buckets):
            return Admission(False, WINDOW_S, headers(buckets, [b.capacity for b in buckets]), True)
        verdict = await self._call("take", buckets)
        assert verdict is not None
        admission = Admission(
            verdict.allowed, verdict.retry_after_s, headers(buckets, verdict.levels)
        )
        if not verdict.allowed:
            short = [b for b, lv in zip(buckets, verdict.levels, strict=True) if b.cost > lv]
            admission.exceeded = " and ".join(sorted({b.kind for b in short}))
        return admission

    async def correct(self, tenant: Tenant, estimated_tokens: int, real_tokens: int) -> None:
        """Charge the difference between the real usage and what was taken up front."""
        delta = real_tokens - estimated_tokens
        buckets = [b for b in self.buckets(tenant, delta) if b.kind == "tokens"]
        if buckets and delta:
            await self._call("adjust", buckets)

    async def _call(self, op: str, buckets: list[Bucket]) -> Verdict | None:
        shared = self.shared
        if shared is not None and self.clock() >= self._shared_down_until:
            try:
                if op == "take":
                    return await shared.take(buckets)
                await shared.adjust(buckets)
                return None
            except Exception as exc:  # a side system: fall back to local buckets
                self._shared_failed(exc)
        if op == "take":
            return await self.local.take(buckets)
        await self.local.adjust(buckets)
        return None

    def _shared_failed(self, exc: Exception) -> None:
        now = self.clock()
        self._shared_down_until = now + self.retry_s
        if self.metrics is not None:
            self.metrics.side_errors.labels("ratelimit").inc()
        if now - self._last_warning >= 10.0:  # one line per outage burst, not per call
            self._last_warning = now
            logger.warning(
                "ratelimit_redis_unavailable",
                error=type(exc).__name__,
                fallback="in-memory limits for this process",
            )

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()


def headers(buckets: Sequence[Bucket], levels: Sequence[float]) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, from the tightest bucket of each kind."""
    tightest: dict[str, tuple[float, Bucket, float]] = {}
    for bucket, level in zip(buckets, levels, strict=True):
        share = level / bucket.capacity
        known = tightest.get(bucket.kind)
        if known is None or share < known[0]:
            tightest[bucket.kind] = (share, bucket, level)
    out: dict[str, str] = {}
    for kind, (_, bucket, level) in tightest.items():
        reset = (bucket.capacity - level) * WINDOW_S / bucket.capacity
        out["x-ratelimit-limit-" + kind] = str(int(bucket.capacity))
        out["x-ratelimit-remaining-" + kind] = str(max(0, math.floor(level)))
        out["x-ratelimit-reset-" + kind] = duration(reset)
    return out


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
