"""The stats endpoint behind the dashboard: its figures against the ledger and the traffic."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.serve import ServerThread

from optiroute_mw.ledger.store import read_rows
from optiroute_mw.observe.dashboard.stats import bucket_for, histogram_quantile, nearest_rank
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings

PROMPTS = ["what is 2+2", "what is 2+2", "name a colour", "what is 2+2", "explain tcp"]


def drive(url: str) -> list[httpx.Response]:
    out = []
    for i, text in enumerate(PROMPTS):
        body = {"model": "large", "messages": [{"role": "user", "content": text}]}
        headers = {"x-request-id": f"dash-{i}"}
        out.append(httpx.post(url + "/v1/chat/completions", json=body, headers=headers))
    return out


def test_stats_match_the_ledger_and_the_traffic(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = str(tmp_path / "ledger.db")
    with ServerThread(create_app(make_settings(ledger_path=path))) as server:
        answers = drive(server.url)
        stats: dict[str, Any] = httpx.get(server.url + "/optiroute/stats?minutes=15").json()
        rows = read_rows(path)
    assert {a.status_code for a in answers} == {200}
    totals = stats["totals"]
    assert stats["source"] == "ledger"
    assert totals["requests"] == len(PROMPTS) == len(rows)
    assert (totals["cache_hits"], totals["cache_lookups"]) == (2, 5)
    assert totals["cache_hit_rate"] == 0.4
    spend = sum(float(a.headers["x-optiroute-cost"]) for a in answers)
    assert totals["spend_usd"] == pytest.approx(spend)
    assert totals["baseline_usd"] == pytest.approx(sum(r.baseline_cost_usd for r in rows))
    assert totals["savings_usd"] == pytest.approx(totals["baseline_usd"] - spend)
    assert totals["error_rate"] == 0
    assert sum(m["requests"] for m in stats["by_model"]) == len(PROMPTS)
    assert sum(t["share"] for t in stats["by_tier"]) == pytest.approx(1)
    assert [r["request_id"] for r in stats["recent"]] == [f"dash-{i}" for i in (4, 3, 2, 1, 0)]
    assert "key_id" not in stats["recent"][0]
    last = stats["series"][-1]
    assert sum(p["requests"] for p in stats["series"]) == len(PROMPTS)
    assert last["spend_usd"] == pytest.approx(spend)
    assert stats["window"]["bucket_s"] == 30 and len(stats["series"]) in (30, 31)
    latencies = sorted(r.latency_ms for r in rows)
    assert stats["latency_ms"]["p50"] == round(nearest_rank(latencies, 0.5), 3)
    assert stats["latency_ms"]["p99"] == round(max(latencies), 3)
    assert stats["overhead_ms"]["count"] == len(PROMPTS)
    assert 0 < stats["overhead_ms"]["p50"] <= stats["overhead_ms"]["p99"]
    assert {c["deployment"] for c in stats["circuits"]} == {
        "small@primary",
        "large@primary",
        "large@secondary",
    }
    assert stats["in_flight"] == {"requests": 0, "streams": 0}


def test_stats_need_the_master_key_when_one_is_set(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(master_key="master-key-for-tests-123")
    with ServerThread(create_app(settings)) as server:
        denied = httpx.get(server.url + "/optiroute/stats")
        allowed = httpx.get(
            server.url + "/optiroute/stats",
            headers={"authorization": "Bearer master-key-for-tests-123"},
        )
        page = httpx.get(server.url + "/optiroute/dashboard")  # holds no data: always served
        bad = httpx.get(
            server.url + "/optiroute/stats?minutes=abc", headers={"x-api-key": settings.master_key}
        )
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_master_key"
    assert allowed.status_code == 200 and allowed.json()["totals"]["requests"] == 0
    assert page.status_code == 200
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "minutes"


def test_without_a_ledger_the_figures_come_from_the_metrics(
    make_settings: Callable[..., Settings],
) -> None:
    with ServerThread(create_app(make_settings(ledger=False))) as server:
        answers = drive(server.url)
        stats = httpx.get(server.url + "/optiroute/stats").json()
    totals = stats["totals"]
    assert stats["source"] == "metrics" and stats["recent"] == []
    assert totals["requests"] == len(PROMPTS)
    assert totals["cache_hit_rate"] == 0.4
    assert totals["spend_usd"] == pytest.approx(
        sum(float(a.headers["x-optiroute-cost"]) for a in answers)
    )
    assert stats["latency_ms"]["count"] == len(PROMPTS)


def test_page_and_assets_are_local_and_locked_down(
    make_settings: Callable[..., Settings],
) -> None:
    with ServerThread(create_app(make_settings())) as server:
        page = httpx.get(server.url + "/optiroute/dashboard")
        script = httpx.get(server.url + "/optiroute/dashboard/app.js")
        style = httpx.get(server.url + "/optiroute/dashboard/app.css")
        missing = httpx.get(server.url + "/optiroute/dashboard/secrets.txt")
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.status_code == 200 and missing.status_code == 404
    for text in (page.text, script.text, style.text):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_quantiles_and_buckets() -> None:
    # PromQL: rank 0.5*10=5 falls in (0.1, 0.5] holding counts 4..8 → 0.1 + 0.4*(1/4)
    buckets = [(0.1, 4.0), (0.5, 8.0), (1.0, 10.0), (math.inf, 10.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * (9.9 - 8) / 2)
    assert histogram_quantile(0.99, [(0.1, 1.0), (math.inf, 3.0)]) == 0.1
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
    assert (bucket_for(15 * 60), bucket_for(3600), bucket_for(7 * 86400)) == (30, 60, 21600)
