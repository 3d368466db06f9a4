"""The admin API's OpenAPI 3.1 document, written out by hand so it stays small and exact."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

NUM = {"type": "number"}
INT = {"type": "integer"}
STR = {"type": "string"}
NULL_NUM = {"type": ["number", "null"]}
NULL_INT = {"type": ["integer", "null"]}
NULL_STR = {"type": ["string", "null"]}
WINDOW_PARAMS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": STR,
        "description": f"{text}: unix seconds or ISO 8601 (UTC unless a zone is given)",
    }
    for name, text in (
        ("since", "window start, inclusive; default the start of this month (UTC)"),
        ("until", "window end, exclusive; default now"),
    )
]
KEY_ID = {"name": "key_id", "in": "path", "required": True, "schema": STR}


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: Json, required: tuple[str, ...] = ()) -> Json:
    return {"type": "object", "properties": properties, "required": list(required)}


TOTALS: Json = {
    "requests": INT,
    "errors": INT,
    "spend_usd": NUM,
    "baseline_usd": NUM,
    "savings_usd": {**NUM, "description": "baseline_usd - spend_usd"},
    "savings_pct": NUM,
    "prompt_tokens": INT,
    "completion_tokens": INT,
    "cache_hits": INT,
    "cache_lookups": INT,
    "cache_hit_rate": {**NUM, "description": "cache_hits / cache_lookups (hits and misses)"},
}
KEY_FIELDS: Json = {
    "id": STR,
    "prefix": STR,
    "name": STR,
    "tenant": STR,
    "created_at": NUM,
    "revoked_at": NULL_NUM,
    "rpm": NULL_INT,
    "tpm": NULL_INT,
    "budget_usd": {**NULL_NUM, "description": "hard monthly limit: 402 above it"},
    "soft_budget_usd": {**NULL_NUM, "description": "soft monthly limit: mode 'cost' above it"},
    "allowed_models": {"type": ["array", "null"], "items": STR},
    "default_mode": NULL_STR,
}
WINDOW = obj({"since": NUM, "until": NUM})

SCHEMAS: Json = {
    "Error": obj(
        {"error": obj({"message": STR, "type": STR, "code": NULL_STR, "param": NULL_STR})}
    ),
    "KeyCreate": obj(
        {k: v for k, v in KEY_FIELDS.items() if k not in ("id", "prefix", "created_at")},
        ("name",),
    ),
    "Key": obj(KEY_FIELDS),
    "KeyCreated": obj({"key": {**STR, "description": "the key, shown this once"}, **KEY_FIELDS}),
    "KeyDetail": obj({**KEY_FIELDS, "month": STR, "month_spend_usd": NUM}),
    "Totals": obj(TOTALS),
    "Summary": obj(
        {
            "window": WINDOW,
            **TOTALS,
            "by_model": {"type": "array", "items": obj({"model": NULL_STR, **TOTALS})},
            "by_tier": {"type": "array", "items": obj({"tier": NULL_STR, **TOTALS})},
        }
    ),
    "CacheStats": obj(
        {
            "window": WINDOW,
            "results": {"type": "object", "additionalProperties": INT},
            "hits": INT,
            "lookups": INT,
            "hit_rate": NUM,
            "saved_usd": {**NUM, "description": "baseline minus cost of the hits"},
            "entries": {**NULL_INT, "description": "entries in the live cache store"},
        }
    ),
    "Savings": obj(
        {
            "window": WINDOW,
            "baseline_usd": NUM,
            "spend_usd": NUM,
            "savings_usd": NUM,
            "savings_pct": NUM,
            "from_cache_usd": NUM,
            "from_routing_usd": NUM,
            "by_day": {"type": "array", "items": obj({"day": STR, **TOTALS})},
        }
    ),
    "KeyUsage": obj(
        {
            "key_id": NULL_STR,
            "tenant": STR,
            **TOTALS,
            "rate_limited": INT,
            "budget_refused": INT,
            "name": STR,
            "revoked": {"type": "boolean"},
            "budget_usd": NULL_NUM,
            "soft_budget_usd": NULL_NUM,
            "month_spend_usd": NUM,
        }
    ),
    "LedgerRow": obj(
        {
            "ts": NUM,
            "request_id": STR,
            "tenant": STR,
            "key_id": NULL_STR,
            "route": STR,
            "requested_model": STR,
            "model": NULL_STR,
            "backend": NULL_STR,
            "tier": NULL_STR,
            "mode": STR,
            "cache": STR,
            "stream": {"type": "boolean"},
            "status": INT,
            "prompt_tokens": INT,
            "completion_tokens": INT,
            "tokens_estimated": {"type": "boolean"},
            "cost_usd": NUM,
            "baseline_cost_usd": NUM,
            "latency_ms": NUM,
            "attempts": INT,
            "fallback": {"type": "boolean"},
        }
    ),
}


def op(summary: str, response: Json, *, params: list[Json] | None = None, **extra: Any) -> Json:
    errors = {
        str(code): {"description": text, "content": {"application/json": {"schema": ref("Error")}}}
        for code, text in ((401, "missing or wrong master key"), (403, "admin API off"))
    }
    out: Json = {
        "summary": summary,
        "parameters": params or [],
        "responses": {"200": {"description": "OK", "content": json_of(response)}, **errors},
    }
    out.update(extra)
    return out


def json_of(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def listing(name: str) -> Json:
    return obj({"data": {"type": "array", "items": ref(name)}})


def openapi() -> Json:
    created = {"201": {"description": "created", "content": json_of(ref("KeyCreated"))}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "optiroute-mw admin API", "version": "1"},
        "servers": [{"url": "/optiroute/admin"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/keys": {
                "get": op("List keys (never the keys themselves)", listing("Key")),
                "post": {
                    **op("Create a key", ref("KeyCreated")),
                    "requestBody": {"required": True, "content": json_of(ref("KeyCreate"))},
                    "responses": created,
                },
            },
            "/keys/{key_id}": {
                "get": op("A key with this month's spend", ref("KeyDetail"), params=[KEY_ID]),
                "delete": op("Revoke a key", ref("Key"), params=[KEY_ID]),
            },
            "/keys/{key_id}/usage": {
                "get": op("Usage of one key", ref("KeyUsage"), params=[KEY_ID, *WINDOW_PARAMS]),
            },
            "/analytics/summary": {
                "get": op(
                    "Requests, spend, baseline, savings, hit rate, by model and tier",
                    ref("Summary"),
                    params=WINDOW_PARAMS,
                ),
            },
            "/analytics/cache": {
                "get": op(
                    "Cache results and what the hits saved", ref("CacheStats"), params=WINDOW_PARAMS
                ),
            },
            "/analytics/savings": {
                "get": op(
                    "Savings, split by cache and routing, by day",
                    ref("Savings"),
                    params=WINDOW_PARAMS,
                ),
            },
            "/analytics/keys": {
                "get": op("Usage per key", listing("KeyUsage"), params=WINDOW_PARAMS),
            },
            "/ledger": {
                "get": op(
                    "The latest ledger rows, newest first",
                    listing("LedgerRow"),
                    params=[
                        {"name": "limit", "in": "query", "schema": {**INT, "maximum": 1000}},
                        {"name": "key_id", "in": "query", "schema": STR},
                    ],
                ),
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
