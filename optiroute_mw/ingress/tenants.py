"""Tenants: who a call belongs to, and what that caller may do.

A tenant comes from an API key (one key, one set of limits) or, in middleware
mode, from the host app's own auth through a resolver hook.  Limits, budgets and
the ledger are kept per *subject*: the key when there is one, else the tenant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.types import Scope

ANONYMOUS = "default"


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    key_id: str | None = None
    rpm: int | None = None  # requests per minute; None: no per-tenant limit
    tpm: int | None = None  # tokens per minute
    budget_usd: float | None = None  # hard monthly limit: refused above it
    soft_budget_usd: float | None = None  # soft monthly limit: cheaper mode above it
    allowed_models: frozenset[str] | None = None  # None: any model
    default_mode: str | None = None  # None: the gateway's default

    @property
    def subject(self) -> str:
        """What limits and budgets count against: the key, else the tenant."""
        return f"key:{self.key_id}" if self.key_id else f"tenant:{self.id}"


# In middleware mode the host app may say who is calling (from its own session or
# token); returning None falls back to API keys (or anonymous when auth is off).
TenantResolver = Callable[[Scope], "Tenant | Awaitable[Tenant | None] | None"]
