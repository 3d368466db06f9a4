"""Monthly budgets per key: a soft limit that downgrades, a hard limit that refuses.

Spend is kept per subject (the key, or the host-supplied tenant) for the current
calendar month in UTC.  It is seeded from the ledger at start-up, so it survives
restarts, and grows as calls finish.  Calls already in flight when a limit is
crossed still finish: the overshoot is at most what those calls cost.

With a shared store (Redis, :class:`RedisSpend`) replicas share the month's spend:
each process pushes what it added and reads the totals of the subjects it checks,
in one batched round-trip every ``sync_s``, off the request path.  A subject's spend
is then the larger of the shared total and this process's own figure (its ledger
plus its calls), so a Redis that lost its data never lowers a budget already used.
The store failing keeps the book local (counted and logged); unsent spend waits and
goes out when the store answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from .tenants import Tenant

logger = structlog.get_logger(__name__)

OK, SOFT, HARD = "ok", "soft", "hard"


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


def month_start(ts: float) -> float:
    """Unix time of the first instant of ``ts``'s month, UTC."""
    day = datetime.fromtimestamp(ts, UTC)
    return datetime(day.year, day.month, 1, tzinfo=UTC).timestamp()


def next_month_start(ts: float) -> float:
    day = datetime.fromtimestamp(ts, UTC)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


class SharedSpend(Protocol):
    async def sync(
        self, month: str, increments: Mapping[str, float], subjects: Sequence[str]
    ) -> dict[str, float]:
        """Add ``increments``; return the month's totals of ``subjects`` (and of those added)."""
        ...

    async def aclose(self) -> None: ...


class BudgetBook:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        shared: SharedSpend | None = None,
        sync_s: float = 1.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.clock = clock
        now = clock()
        self.month = month_of(now)
        self._month_ends = next_month_start(now)  # checked per call: cheaper than a date
        self._spend: dict[str, float] = {}
        # shared across replicas: last totals read, spend not pushed yet, subjects checked
        self.shared = shared
        self.sync_s = sync_s
        self.on_error = on_error
        self._totals: dict[str, float] = {}
        self._pending: dict[str, float] = {}
        self._watched: dict[str, float] = {}  # subject -> when last checked (clock)
        self._task: asyncio.Task[None] | None = None
        self._last_warning = float("-inf")

    def load(self, spend: Mapping[str, float], month: str) -> None:
        """Seed this month's spend (from the ledger); another month's figures are ignored."""
        if month == self.month:
            for subject, usd in spend.items():
                self._spend[subject] = self._spend.get(subject, 0.0) + usd

    def _roll(self) -> None:
        now = self.clock()
        if now >= self._month_ends:
            self.month = month_of(now)
            self._month_ends = next_month_start(now)
            self._spend = {}
            self._totals = {}
            self._pending = {}

    def spent(self, subject: str) -> float:
        self._roll()
        own = self._spend.get(subject, 0.0)
        if self.shared is None:
            return own
        shared = self._totals.get(subject, 0.0) + self._pending.get(subject, 0.0)
        return max(own, shared)

    def add(self, subject: str, usd: float) -> None:
        if usd > 0:
            self._roll()
            self._spend[subject] = self._spend.get(subject, 0.0) + usd
            if self.shared is not None:
                self._pending[subject] = self._pending.get(subject, 0.0) + usd
                self._ensure_sync()

    def state(self, tenant: Tenant) -> str:
        if tenant.budget_usd is None and tenant.soft_budget_usd is None:
            return OK
        if self.shared is not None:
            self._watched[tenant.subject] = self.clock()
            self._ensure_sync()
        spent = self.spent(tenant.subject)
        if tenant.budget_usd is not None and spent >= tenant.budget_usd:
            return HARD
        if tenant.soft_budget_usd is not None and spent >= tenant.soft_budget_usd:
            return SOFT
        return OK

    # -- sharing through a store (Redis) ----------------------------------------------

    def _ensure_sync(self) -> None:
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a CLI or a unit test): stay local
                return
            self._task = loop.create_task(self._run(), name="optiroute-budget-sync")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sync_s)
            await self.sync()

    async def sync(self) -> None:
        """Push this process's new spend and read the totals of the subjects it checks."""
        shared = self.shared
        if shared is None:
            return
        self._roll()
        month, pending = self.month, self._pending
        self._pending = {}
        now = self.clock()
        # a subject not checked for ten minutes is no longer read back
        self._watched = {s: t for s, t in self._watched.items() if now - t < 600}
        try:
            totals = await shared.sync(month, pending, list(self._watched))
        except Exception as exc:  # a side system: keep the spend for the next round
            if self.month == month:
                for subject, usd in pending.items():
                    self._pending[subject] = self._pending.get(subject, 0.0) + usd
            self._sync_failed(exc)
            return
        if self.month == month:
            self._totals.update(totals)

    def _sync_failed(self, exc: Exception) -> None:
        if self.on_error is not None:
            self.on_error(exc)
        now = time.monotonic()
        if now - self._last_warning >= 10.0:  # one line per outage burst
            self._last_warning = now
            logger.warning(
                "budget_redis_unavailable",
                error=type(exc).__name__,
                fallback="this process's own spend until Redis answers",
            )

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.shared is not None:
            if self._pending:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.sync(), 2.0)  # what this process spent last
            await self.shared.aclose()


class RedisSpend:
    """Month spend per subject in Redis: ``INCRBYFLOAT optiroute:spend:<month>:<subject>``.

    One pipelined round-trip per sync (the increments, then one MGET); keys expire
    some weeks after their month, so nothing needs cleaning up.
    """

    PREFIX = "optiroute:spend:"
    TTL_S = 40 * 24 * 3600

    def __init__(self, url: str, *, timeout_s: float = 0.5) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.client: Any = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def key(self, month: str, subject: str) -> str:
        return f"{self.PREFIX}{month}:{subject}"

    async def sync(
        self, month: str, increments: Mapping[str, float], subjects: Sequence[str]
    ) -> dict[str, float]:
        added = [s for s, usd in increments.items() if usd > 0]
        read = [s for s in subjects if s not in increments]
        if not added and not read:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for subject in added:
            key = self.key(month, subject)
            pipe.incrbyfloat(key, repr(float(increments[subject])))
            pipe.expire(key, self.TTL_S)
        if read:
            pipe.mget([self.key(month, s) for s in read])
        replies = await pipe.execute()
        totals = {s: float(replies[2 * i]) for i, s in enumerate(added)}
        if read:
            for subject, value in zip(read, replies[-1], strict=True):
                if value is not None:
                    totals[subject] = float(value)
        return totals

    async def aclose(self) -> None:
        await self.client.aclose()
