"""Who is calling and may they: keys, rate limits, budgets, and the ledger row at the end.

The ingress stage asks three things of :class:`Access`, in order:

* ``identify`` (headers only, before the body is read): the tenant, from the host
  app's resolver, from an API key, or anonymous while auth is off; else a 401.
* ``admit`` (once the request is parsed): allowed model, monthly budget (the soft
  limit switches the mode to ``cost``, the hard limit is a 402), then the rate
  limits (a 429 with ``Retry-After``).  Refusals are cheapest first, so a call
  refused for its budget never spends rate allowance.
* ``settle`` (after the answer went out): token buckets corrected with the real
  usage, the spend added to the month, one ledger row appended.

The key itself goes nowhere: it is hashed to look it up, and only the key's id and
tenant travel on (in the Exchange, the log line and the ledger).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import math
import time
from dataclasses import dataclass

import structlog
from starlette.types import Scope

from ..exchange import Exchange, estimate_tokens, header
from ..ledger import Ledger, LedgerRow
from ..observe.metrics import Metrics
from ..registry import AUTO
from ..settings import Settings, SettingsError
from ..wire import RequestError
from .budgets import HARD, SOFT, BudgetBook, RedisSpend, month_of, month_start
from .keys import KeyStore
from .limits import RateLimiter
from .tenants import ANONYMOUS, Tenant, TenantResolver

logger = structlog.get_logger(__name__)
ANONYMOUS_TENANT = Tenant(id=ANONYMOUS)


class AccessDenied(RequestError):
    """A refusal with its own response headers (Retry-After, x-ratelimit-*)."""

    def __init__(
        self,
        message: str,
        status: int,
        code: str,
        error_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, error_type=error_type)
        self.headers = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]


@dataclass(slots=True)
class Admitted:
    tenant: Tenant
    estimated_tokens: int = 0
    limited: bool = False  # token buckets were charged and need correcting


def presented_key(scope: Scope) -> str | None:
    """The caller's key from ``Authorization: Bearer`` or ``x-api-key``."""
    value = header(scope, b"authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return header(scope, b"x-api-key") or None


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Access:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        tenant_resolver: TenantResolver | None = None,
        keys: KeyStore | None = None,
        limiter: RateLimiter | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.resolver = tenant_resolver
        if keys is None:
            keys = KeyStore(settings.data_file(settings.keys_db, "keys.db"))
        self.keys = keys
        if limiter is None:
            backend = None
            if settings.redis_url:
                try:
                    from .redis_limits import RedisLimits

                    backend = RedisLimits(settings.redis_url)
                except ImportError:
                    raise SettingsError(
                        "OPTIROUTE_REDIS_URL needs the redis client: "
                        "pip install 'optiroute-mw[redis]'"
                    ) from None
            limiter = RateLimiter(
                global_rpm=settings.global_rpm,
                global_tpm=settings.global_tpm,
                backend=backend,
                metrics=metrics,
            )
        self.limiter = limiter
        # with Redis, replicas share the month's spend (synced off the request path)
        self.budgets = BudgetBook(
            shared=RedisSpend(settings.redis_url) if settings.redis_url else None,
            on_error=self._budget_sync_failed,
        )
        if ledger is None and settings.ledger:
            ledger = Ledger(
                settings.data_file(settings.ledger_path, "ledger.db"),
                flush_s=settings.ledger_flush_s,
                metrics=metrics,
            )
        self.ledger = ledger
        # the master key is kept only as a digest, compared in constant time
        self.master_digest = digest(settings.master_key) if settings.master_key else None

    async def start(self) -> None:
        self.keys.refresh(force=True)  # an unreadable key file must stop start-up: fail closed
        if self.ledger is None:
            return
        try:
            await self.ledger.start()
            now = time.time()
            self.budgets.load(await self.ledger.spend_since(month_start(now)), month_of(now))
        except Exception as exc:  # a side system: calls go on, unrecorded, and it is said
            logger.error("ledger_unavailable", path=self.ledger.path, error=str(exc)[:200])
            if self.metrics is not None:
                self.metrics.side_errors.labels("ledger").inc()
            self.ledger = None

    async def stop(self) -> None:
        if self.ledger is not None:
            await self.ledger.stop()
        await self.limiter.aclose()
        await self.budgets.aclose()  # pushes the last spend
        self.keys.close()

    @property
    def auth_required(self) -> bool:
        return self.settings.require_auth or self.keys.has_keys

    def is_master(self, scope: Scope) -> bool:
        presented = presented_key(scope)
        if self.master_digest is None or presented is None:
            return False
        return hmac.compare_digest(digest(presented), self.master_digest)

    def _budget_sync_failed(self, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.side_errors.labels("budget").inc()

    def _refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.refusals.labels(reason).inc()

    async def identify(self, scope: Scope) -> Tenant:
        if self.resolver is not None:
            try:
                found = self.resolver(scope)
                tenant = await found if inspect.isawaitable(found) else found
            except Exception:  # the host app's code: a clean 500, never a dropped request
                logger.exception("tenant_resolver_failed")
                raise AccessDenied(
                    "The gateway could not identify the caller.", 500, "internal_error", "api_error"
                ) from None
            if tenant is not None:
                return tenant
        presented = presented_key(scope)
        # a key created by the CLI while serving turns auth on without a restart
        self.keys.refresh()
        if not self.auth_required:
            return ANONYMOUS_TENANT  # the demo's default: any or no key is fine
        if presented is None:
            self._refused("auth")
            raise AccessDenied(
                "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'.",
                401,
                "missing_api_key",
                "authentication_error",
            )
        record = self.keys.verify(presented)
        if record is None or record.revoked:
            self._refused("auth")
            raise AccessDenied(
                "This API key has been revoked." if record else "Incorrect API key provided.",
                401,
                "revoked_api_key" if record else "invalid_api_key",
                "authentication_error",
            )
        return record.tenant_view()

    async def admit(self, exchange: Exchange, tenant: Tenant) -> Admitted:
        exchange.tenant = tenant.id
        admitted = Admitted(tenant)
        allowed = tenant.allowed_models
        if allowed is not None:
            for name in (exchange.requested_model, exchange.pinned_model):
                if name and name not in allowed:
                    self._refused("model")
                    raise AccessDenied(
                        f"This key may not use the model '{name}'"
                        + ("" if AUTO in allowed else " ('auto' is not allowed either)")
                        + f"; allowed: {', '.join(sorted(allowed))}.",
                        403,
                        "model_not_allowed",
                        "permission_error",
                    )
        state = self.budgets.state(tenant)
        if state == HARD:
            self._refused("budget")
            spent = self.budgets.spent(tenant.subject)
            raise AccessDenied(
                f"Monthly budget exhausted: ${spent:.4f} spent of ${tenant.budget_usd:.4f} "
                f"this month ({self.budgets.month}, UTC). It renews next month.",
                402,
                "budget_exceeded",
                "insufficient_quota",
            )
        if state == SOFT:
            # over the soft limit: still served, on the cheapest adequate models
            exchange.mode = "cost"
            exchange.response_headers["x-optiroute-budget"] = "soft-limit"
        estimate = estimate_tokens(exchange.request.prompt_text())
        verdict = await self.limiter.admit(tenant, estimate)
        if not verdict.allowed:
            self._refused("rate_limit")
            retry = max(1, math.ceil(verdict.retry_after_s))
            message = (
                f"Request too large: about {estimate} prompt tokens, more than a minute's "
                "token limit."
                if verdict.too_large
                else f"Rate limit reached ({verdict.exceeded} per minute). Retry after {retry} s."
            )
            raise AccessDenied(
                message,
                429,
                "rate_limit_exceeded",
                "rate_limit_error",
                {**verdict.headers, "retry-after": str(retry)},
            )
        exchange.response_headers.update(verdict.headers)
        admitted.estimated_tokens = estimate
        admitted.limited = bool(verdict.headers)
        return admitted

    async def settle(self, exchange: Exchange, admitted: Admitted, latency_s: float) -> None:
        """After the call: correct the token buckets, count the spend, write the row."""
        tenant = admitted.tenant
        try:
            if admitted.limited:
                real = exchange.prompt_tokens + exchange.completion_tokens
                await self.limiter.correct(tenant, admitted.estimated_tokens, real)
            self.budgets.add(tenant.subject, exchange.cost_usd)
            if self.ledger is not None:
                self.ledger.record(ledger_row(exchange, tenant, latency_s))
        except Exception:  # the answer is already out; never let accounting fail it
            logger.warning("settle_failed", request_id=exchange.request_id, exc_info=True)


def ledger_row(exchange: Exchange, tenant: Tenant, latency_s: float) -> LedgerRow:
    model = exchange.model
    selection = exchange.selection
    return LedgerRow(
        ts=time.time() - latency_s,
        request_id=exchange.request_id,
        tenant=tenant.id,
        key_id=tenant.key_id,
        route=exchange.kind,
        requested_model=exchange.requested_model,
        # a cache hit has no deployment; the cache says which model gave the answer
        model=model.name if model else exchange.response_headers.get("x-optiroute-model"),
        backend=model.backend if model else exchange.response_headers.get("x-optiroute-backend"),
        tier=exchange.classification.tier if exchange.classification else None,
        mode=exchange.mode,
        cache=exchange.cache_status,
        stream=exchange.stream,
        status=exchange.status,
        prompt_tokens=exchange.prompt_tokens,
        completion_tokens=exchange.completion_tokens,
        tokens_estimated=exchange.usage_estimated,
        cost_usd=exchange.cost_usd,
        baseline_cost_usd=exchange.baseline_cost_usd,
        latency_ms=round(latency_s * 1000, 3),
        attempts=len(exchange.attempts),
        fallback=bool(selection and model and model is not selection.primary),
    )
