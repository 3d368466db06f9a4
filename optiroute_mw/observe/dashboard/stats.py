"""The dashboard's numbers: ``GET /optiroute/stats``.

Money, traffic, cache, shares and latency over a window come from the ledger
(flushed first, so they include every call finished so far, from every worker);
gateway overhead, time to first token and in-flight counts from the Prometheus
metrics (since start; with several workers, summed over them); circuit states
from this process's breaker.  With the ledger off, totals and shares fall back to
the metrics counters.  Percentiles from the ledger are exact (nearest rank);
from a histogram they are interpolated within buckets, as PromQL's
``histogram_quantile`` does.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from ...ledger.analytics import HIT, LOOKUP, WINDOW, summary

if TYPE_CHECKING:
    from ...stack import Gateway

Json = dict[str, Any]
BUCKETS_S = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
RECENT = 15
MAX_SAMPLES = 50_000
QUANTILES = (0.5, 0.95, 0.99)
RECENT_COLUMNS = (
    "ts, request_id, tenant, route, requested_model, model, backend, tier, cache, stream, "
    "status, prompt_tokens, completion_tokens, cost_usd, baseline_cost_usd, latency_ms"
)


def bucket_for(window_s: float) -> int:
    """The smallest round bucket that draws the window in at most 60 points."""
    return next((b for b in BUCKETS_S if window_s / b <= 60), BUCKETS_S[-1])


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return 0.0
    return float(ordered[max(0, math.ceil(q * len(ordered)) - 1)])


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """PromQL's interpolation over cumulative ``(le, count)`` pairs, sorted by ``le``."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_le  # beyond the last finite bucket: its bound, as PromQL
            if count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return lower_le


def _ledger_figures(conn: sqlite3.Connection, since: float, until: float, bucket: int) -> Json:
    figures = summary(conn, since, until)
    rows = conn.execute(
        f"SELECT CAST(ts / ? AS INTEGER) * ?, COUNT(*), COALESCE(SUM(cost_usd), 0), "
        f"COALESCE(SUM(baseline_cost_usd), 0), COALESCE(SUM({HIT}), 0), "
        f"COALESCE(SUM({LOOKUP}), 0), COALESCE(SUM(status >= 400 OR status = 0), 0) "
        f"FROM calls WHERE {WINDOW} GROUP BY 1 ORDER BY 1",
        (bucket, bucket, since, until),
    ).fetchall()
    latencies = [
        row[0]
        for row in conn.execute(
            f"SELECT latency_ms FROM calls WHERE {WINDOW} ORDER BY id DESC LIMIT ?",
            (since, until, MAX_SAMPLES),
        )
    ]
    cursor = conn.execute(f"SELECT {RECENT_COLUMNS} FROM calls ORDER BY id DESC LIMIT ?", (RECENT,))
    names = [d[0] for d in cursor.description]
    recent = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in recent:
        row["stream"] = bool(row["stream"])
    figures["rows"] = rows
    figures["latencies"] = latencies
    figures["recent"] = recent
    return figures


def _series(rows: Iterable[Sequence[Any]], since: float, until: float, bucket: int) -> list[Json]:
    """One point per bucket (empty buckets too), running totals for the money."""
    by_start = {int(row[0]): row for row in rows}
    points: list[Json] = []
    spend = baseline = 0.0
    start = int(since // bucket) * bucket
    while start < until:
        row = by_start.get(start, (start, 0, 0.0, 0.0, 0, 0, 0))
        spend += row[2]
        baseline += row[3]
        points.append(
            {
                "t": start,
                "requests": row[1],
                "errors": row[6],
                "cache_hits": row[4],
                "cache_lookups": row[5],
                "spend_usd": spend,
                "baseline_usd": baseline,
                "savings_usd": baseline - spend,
            }
        )
        start += bucket
    return points


def _shares(groups: list[Json], column: str) -> list[Json]:
    total = sum(g["requests"] for g in groups) or 1
    return [
        {
            column: g[column] if g[column] is not None else "none",
            "requests": g["requests"],
            "spend_usd": g["spend_usd"],
            "share": round(g["requests"] / total, 6),
        }
        for g in sorted(groups, key=lambda g: -g["requests"])
    ]


class MetricReadings:
    """What the stats need from one scrape of the metrics registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.buckets: dict[str, dict[float, float]] = {}
        self.values: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    per_le = self.buckets.setdefault(sample.name[:-7], {})
                    per_le[le] = per_le.get(le, 0.0) + sample.value
                else:
                    self.values.setdefault(sample.name, []).append((sample.labels, sample.value))

    def total(self, name: str) -> float:
        return sum(value for _, value in self.values.get(name, ()))

    def by(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, value in self.values.get(name, ()):
            out[labels.get(label, "")] = out.get(labels.get(label, ""), 0.0) + value
        return out

    def percentiles_ms(self, name: str) -> Json:
        pairs = sorted(self.buckets.get(name, {}).items())
        out: Json = {"count": int(pairs[-1][1]) if pairs else 0}
        for q in QUANTILES:
            value = histogram_quantile(q, pairs)
            out[f"p{round(q * 100)}"] = None if value is None else round(value * 1000, 3)
        return out


def _from_metrics(readings: MetricReadings) -> Json:
    requests = readings.by("optiroute_requests_total", "cache")
    hits = sum(v for k, v in requests.items() if k.startswith("hit-"))
    lookups = hits + requests.get("miss", 0.0)
    spend = readings.total("optiroute_cost_usd_total")
    baseline = readings.total("optiroute_baseline_cost_usd_total")
    statuses = readings.by("optiroute_requests_total", "status")
    total = sum(requests.values())
    spend_by_model = readings.by("optiroute_cost_usd_total", "model")
    groups: dict[str, list[Json]] = {
        column: [
            {
                column: name,
                "requests": int(count),
                "spend_usd": spend_by_model.get(name, 0.0) if column == "model" else 0.0,
            }
            for name, count in readings.by("optiroute_requests_total", column).items()
        ]
        for column in ("model", "tier")
    }
    return {
        "requests": int(total),
        "errors": int(statuses.get("4xx", 0) + statuses.get("5xx", 0) + statuses.get("none", 0)),
        "spend_usd": spend,
        "baseline_usd": baseline,
        "savings_usd": baseline - spend,
        "savings_pct": round(100 * (baseline - spend) / baseline, 4) if baseline else 0.0,
        "cache_hits": int(hits),
        "cache_lookups": int(lookups),
        "cache_hit_rate": round(hits / lookups, 6) if lookups else 0.0,
        "by_model": groups["model"],
        "by_tier": groups["tier"],
    }


def _circuits(gateway: Gateway) -> list[Json]:
    states = gateway.board.states()
    keys: list[str] = []
    if gateway.started:
        keys = [model.key for model in gateway.registry.models]
    keys += [key for key in states if key not in keys]
    return [{"deployment": key, "state": states.get(key, "closed")} for key in dict.fromkeys(keys)]


async def compute(gateway: Gateway, minutes: float) -> Json:
    until = time.time() + 1.0
    window_s = minutes * 60
    since = until - 1.0 - window_s
    bucket = bucket_for(window_s)
    readings = MetricReadings(gateway.metrics.collecting_registry())
    ledger = gateway.access.ledger
    result: Json = {
        "generated_at": time.time(),
        "window": {"since": since, "until": until, "minutes": minutes, "bucket_s": bucket},
    }
    if ledger is not None:
        figures = await ledger.query(lambda conn: _ledger_figures(conn, since, until, bucket))
        latencies = sorted(figures.pop("latencies"))
        result["source"] = "ledger"
        result["series"] = _series(figures.pop("rows"), since, until, bucket)
        result["recent"] = figures.pop("recent")
        result["latency_ms"] = {
            "count": len(latencies),
            **{f"p{round(q * 100)}": round(nearest_rank(latencies, q), 3) for q in QUANTILES},
        }
    else:
        figures = _from_metrics(readings)
        result["source"] = "metrics"
        result["series"] = []
        result["recent"] = []
        result["latency_ms"] = readings.percentiles_ms("optiroute_request_duration_seconds")
    by_model, by_tier = figures.pop("by_model"), figures.pop("by_tier")
    figures.pop("window", None)
    requests = figures["requests"]
    figures["error_rate"] = round(figures["errors"] / requests, 6) if requests else 0.0
    result["totals"] = figures
    result["by_model"] = _shares(by_model, "model")
    result["by_tier"] = _shares(by_tier, "tier")
    result["overhead_ms"] = readings.percentiles_ms("optiroute_gateway_overhead_seconds")
    result["ttft_ms"] = readings.percentiles_ms("optiroute_time_to_first_token_seconds")
    result["in_flight"] = {
        "requests": int(readings.total("optiroute_in_flight_requests")),
        "streams": int(readings.total("optiroute_in_flight_streams")),
    }
    result["circuits"] = _circuits(gateway)
    return result
