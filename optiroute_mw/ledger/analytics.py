"""Analytics over the ledger: every figure is a query on the rows, nothing kept aside.

Savings are baseline minus cost; a cache hit costs nothing, so it saves its whole
baseline.  The cache hit rate counts lookups only (hits and misses): bypassed and
refreshed calls never looked.  Each function takes a connection and a window
``[since, until)`` in unix seconds and returns plain JSON-ready data.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .store import COLUMNS, typed_row

HIT = "cache LIKE 'hit-%'"
LOOKUP = f"({HIT} OR cache = 'miss')"
WINDOW = "ts >= ? AND ts < ?"
TOTALS = f"""
    COUNT(*),
    COALESCE(SUM(status >= 400 OR status = 0), 0),
    COALESCE(SUM(cost_usd), 0),
    COALESCE(SUM(baseline_cost_usd), 0),
    COALESCE(SUM(prompt_tokens), 0),
    COALESCE(SUM(completion_tokens), 0),
    COALESCE(SUM({HIT}), 0),
    COALESCE(SUM({LOOKUP}), 0)
"""

Json = dict[str, Any]


def _totals(row: tuple[Any, ...]) -> Json:
    requests, errors, spend, baseline, tokens_in, tokens_out, hits, lookups = row
    savings = baseline - spend
    return {
        "requests": requests,
        "errors": errors,
        "spend_usd": spend,
        "baseline_usd": baseline,
        "savings_usd": savings,
        "savings_pct": round(100 * savings / baseline, 4) if baseline else 0.0,
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "cache_hits": hits,
        "cache_lookups": lookups,
        "cache_hit_rate": round(hits / lookups, 6) if lookups else 0.0,
    }


def _grouped(conn: sqlite3.Connection, column: str, since: float, until: float) -> list[Json]:
    rows = conn.execute(
        f"SELECT {column}, {TOTALS} FROM calls WHERE {WINDOW} GROUP BY 1 ORDER BY 1",
        (since, until),
    ).fetchall()
    return [{column: row[0], **_totals(row[1:])} for row in rows]


def summary(conn: sqlite3.Connection, since: float, until: float) -> Json:
    row = conn.execute(f"SELECT {TOTALS} FROM calls WHERE {WINDOW}", (since, until)).fetchone()
    return {
        "window": {"since": since, "until": until},
        **_totals(row),
        "by_model": _grouped(conn, "model", since, until),
        "by_tier": _grouped(conn, "tier", since, until),
    }


def cache_stats(conn: sqlite3.Connection, since: float, until: float) -> Json:
    rows = conn.execute(
        f"SELECT cache, COUNT(*), COALESCE(SUM(baseline_cost_usd - cost_usd), 0) "
        f"FROM calls WHERE {WINDOW} GROUP BY 1 ORDER BY 1",
        (since, until),
    ).fetchall()
    results = {cache: count for cache, count, _ in rows}
    hits = sum(count for cache, count, _ in rows if cache.startswith("hit-"))
    lookups = hits + results.get("miss", 0)
    return {
        "window": {"since": since, "until": until},
        "results": results,
        "hits": hits,
        "lookups": lookups,
        "hit_rate": round(hits / lookups, 6) if lookups else 0.0,
        "saved_usd": sum(saved for cache, _, saved in rows if cache.startswith("hit-")),
    }


def savings(conn: sqlite3.Connection, since: float, until: float) -> Json:
    row = conn.execute(f"SELECT {TOTALS} FROM calls WHERE {WINDOW}", (since, until)).fetchone()
    total = _totals(row)
    split = dict(
        conn.execute(
            f"SELECT {HIT}, COALESCE(SUM(baseline_cost_usd - cost_usd), 0) "
            f"FROM calls WHERE {WINDOW} GROUP BY 1",
            (since, until),
        ).fetchall()
    )
    days = conn.execute(
        f"SELECT date(ts, 'unixepoch') AS day, {TOTALS} FROM calls WHERE {WINDOW} "
        "GROUP BY 1 ORDER BY 1",
        (since, until),
    ).fetchall()
    return {
        "window": {"since": since, "until": until},
        "baseline_usd": total["baseline_usd"],
        "spend_usd": total["spend_usd"],
        "savings_usd": total["savings_usd"],
        "savings_pct": total["savings_pct"],
        "from_cache_usd": split.get(1, 0.0),
        "from_routing_usd": split.get(0, 0.0),
        "by_day": [{"day": row[0], **_totals(row[1:])} for row in days],
    }


def key_usage(
    conn: sqlite3.Connection, since: float, until: float, key_id: str | None = None
) -> list[Json]:
    """Per key (and per host-supplied tenant, with ``key_id`` null)."""
    where = WINDOW
    params: list[object] = [since, until]
    if key_id is not None:
        where += " AND key_id = ?"
        params.append(key_id)
    rows = conn.execute(
        f"SELECT key_id, tenant, {TOTALS}, COALESCE(SUM(status = 429), 0), "
        f"COALESCE(SUM(status = 402), 0) FROM calls WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2",
        params,
    ).fetchall()
    return [
        {
            "key_id": row[0],
            "tenant": row[1],
            **_totals(row[2:10]),
            "rate_limited": row[10],
            "budget_refused": row[11],
        }
        for row in rows
    ]


def recent(conn: sqlite3.Connection, limit: int, key_id: str | None = None) -> list[Json]:
    """The latest rows, newest first."""
    where, params = ("key_id = ?", [key_id]) if key_id else ("1", [])
    rows = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM calls WHERE {where} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [typed_row(row)._asdict() for row in rows]
