"""The admin API, behind the master key: keys, analytics, cache stats, the ledger.

Mounted by the sidecar at ``/optiroute/admin``; the schema is served (without a
key: it holds no data) at ``/optiroute/admin/openapi.json``.  Every figure comes
from the ledger, flushed first, so the API and the ledger always agree.  Without
``OPTIROUTE_MASTER_KEY`` the API is off (403) rather than open.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sized
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .admin_schema import openapi
from .errors import error_type_for
from .ingress.budgets import month_start
from .ingress.keys import KeyRecord, KeySpecError
from .ledger import analytics
from .wire import error_body

if TYPE_CHECKING:
    from .stack import Gateway

Handler = Callable[[Request], Awaitable[Response]]


class KeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    tenant: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    soft_budget_usd: float | None = None
    allowed_models: list[str] | None = None
    default_mode: str | None = None


class AdminError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def error(status: int, message: str, code: str, param: str | None = None) -> Response:
    body = error_body(message, error_type_for(status), code, param)
    return Response(body, status_code=status, media_type="application/json")


def window(request: Request) -> tuple[float, float]:
    """``since``/``until`` as unix seconds or ISO 8601; default: this month so far."""
    now = time.time()
    return (
        _instant(request, "since", month_start(now)),
        _instant(request, "until", now + 1.0),
    )


def _instant(request: Request, name: str, default: float) -> float:
    value = request.query_params.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        message = f"'{name}' must be unix seconds or ISO 8601."
        raise AdminError(400, message, "invalid_window", name) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class AdminAPI:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.access = gateway.access
        guarded: list[tuple[str, Handler, list[str]]] = [
            ("/keys", self.list_keys, ["GET"]),
            ("/keys", self.create_key, ["POST"]),
            ("/keys/{key_id}", self.get_key, ["GET"]),
            ("/keys/{key_id}", self.revoke_key, ["DELETE"]),
            ("/keys/{key_id}/usage", self.key_usage, ["GET"]),
            ("/analytics/summary", self.summary, ["GET"]),
            ("/analytics/cache", self.cache, ["GET"]),
            ("/analytics/savings", self.savings, ["GET"]),
            ("/analytics/keys", self.usage, ["GET"]),
            ("/ledger", self.ledger_rows, ["GET"]),
        ]
        routes = [Route("/openapi.json", self.schema, methods=["GET"])]
        routes += [Route(path, self.guard(fn), methods=m) for path, fn, m in guarded]
        self.app = Starlette(routes=routes)

    def guard(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if self.access.master_digest is None:
                return error(403, "The admin API is off: set OPTIROUTE_MASTER_KEY.", "admin_off")
            if not self.access.is_master(request.scope):
                return error(401, "A valid master key is required.", "invalid_master_key")
            try:
                return await handler(request)
            except AdminError as exc:
                return error(exc.status, exc.message, exc.code, exc.param)

        return guarded

    async def schema(self, request: Request) -> Response:
        return JSONResponse(openapi())

    # -- keys -----------------------------------------------------------------------

    async def list_keys(self, request: Request) -> Response:
        active = request.query_params.get("active") in ("1", "true")
        records = self.access.keys.records(include_revoked=not active)
        return JSONResponse({"data": [r.public() for r in records]})

    async def create_key(self, request: Request) -> Response:
        try:
            spec = msgspec.json.decode(await request.body(), type=KeyRequest)
        except msgspec.DecodeError as exc:
            raise AdminError(400, f"Invalid key request: {exc}", "invalid_request") from None
        try:
            key, record = self.access.keys.create(
                spec.name,
                tenant=spec.tenant,
                rpm=spec.rpm,
                tpm=spec.tpm,
                budget_usd=spec.budget_usd,
                soft_budget_usd=spec.soft_budget_usd,
                allowed_models=spec.allowed_models,
                default_mode=spec.default_mode,
            )
        except KeySpecError as exc:
            raise AdminError(400, str(exc), "invalid_request") from None
        return JSONResponse({"key": key, **record.public()}, status_code=201)

    def _record(self, request: Request) -> KeyRecord:
        record = self.access.keys.get(request.path_params["key_id"])
        if record is None:
            raise AdminError(404, "No such key.", "key_not_found", "key_id")
        return record

    async def get_key(self, request: Request) -> Response:
        record = self._record(request)
        budgets = self.access.budgets
        return JSONResponse(
            {
                **record.public(),
                "month": budgets.month,
                "month_spend_usd": budgets.spent(record.tenant_view().subject),
            }
        )

    async def revoke_key(self, request: Request) -> Response:
        self._record(request)
        record = self.access.keys.revoke(request.path_params["key_id"])
        return JSONResponse(record.public() if record else None)

    # -- analytics --------------------------------------------------------------------

    async def _query(self, fn: Callable[..., Any], *args: Any) -> Any:
        ledger = self.access.ledger
        if ledger is None:
            raise AdminError(503, "The ledger is off (OPTIROUTE_LEDGER=false).", "ledger_off")
        return await ledger.query(lambda conn: fn(conn, *args))

    async def summary(self, request: Request) -> Response:
        return JSONResponse(await self._query(analytics.summary, *window(request)))

    async def cache(self, request: Request) -> Response:
        stats = await self._query(analytics.cache_stats, *window(request))
        store = self.gateway.store
        stats["entries"] = len(store) if isinstance(store, Sized) else None
        return JSONResponse(stats)

    async def savings(self, request: Request) -> Response:
        return JSONResponse(await self._query(analytics.savings, *window(request)))

    async def usage(self, request: Request) -> Response:
        rows = await self._query(analytics.key_usage, *window(request))
        return JSONResponse({"data": [self._with_key(row) for row in rows]})

    async def key_usage(self, request: Request) -> Response:
        record = self._record(request)
        rows = await self._query(analytics.key_usage, *window(request), record.id)
        empty = {"key_id": record.id, "tenant": record.tenant, "requests": 0}
        return JSONResponse(self._with_key(rows[0] if rows else empty))

    def _with_key(self, row: dict[str, Any]) -> dict[str, Any]:
        """A usage row with the key's name, budgets and this month's spend."""
        record = self.access.keys.get(row["key_id"]) if row["key_id"] else None
        if record is None:
            return row
        return {
            **row,
            "name": record.name,
            "revoked": record.revoked,
            "budget_usd": record.budget_usd,
            "soft_budget_usd": record.soft_budget_usd,
            "month_spend_usd": self.access.budgets.spent(record.tenant_view().subject),
        }

    async def ledger_rows(self, request: Request) -> Response:
        try:
            limit = min(1000, max(1, int(request.query_params.get("limit", "100"))))
        except ValueError:
            raise AdminError(400, "'limit' must be a number.", "invalid_request", "limit") from None
        rows = await self._query(analytics.recent, limit, request.query_params.get("key_id"))
        return JSONResponse({"data": rows})
