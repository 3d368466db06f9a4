"""Monthly budgets per key: a soft limit that downgrades, a hard limit that refuses.

Spend is kept per subject (the key, or the host-supplied tenant) for the current
calendar month in UTC.  It is seeded from the ledger at start-up, so it survives
restarts, and grows as calls finish.  Calls already in flight when a limit is
crossed still finish: the overshoot is at most what those calls cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from .tenants import Tenant

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


class BudgetBook:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        now = clock()
        self.month = month_of(now)
        self._month_ends = next_month_start(now)  # checked per call: cheaper than a date
        self._spend: dict[str, float] = {}

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

    def spent(self, subject: str) -> float:
        self._roll()
        return self._spend.get(subject, 0.0)

    def add(self, subject: str, usd: float) -> None:
        if usd > 0:
            self._roll()
            self._spend[subject] = self._spend.get(subject, 0.0) + usd

    def state(self, tenant: Tenant) -> str:
        if tenant.budget_usd is None and tenant.soft_budget_usd is None:
            return OK
        spent = self.spent(tenant.subject)
        if tenant.budget_usd is not None and spent >= tenant.budget_usd:
            return HARD
        if tenant.soft_budget_usd is not None and spent >= tenant.soft_budget_usd:
            return SOFT
        return OK
