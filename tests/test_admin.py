"""The admin API: master key, key lifecycle, analytics equal to the ledger, the schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.serve import ServerThread

from optiroute_mw.ledger.store import LedgerRow, read_rows
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings

MASTER = "sk-master-test-0123456789"
ADMIN = "/optiroute/admin"


@pytest.fixture
def server(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(
        master_key=MASTER,
        keys_db=str(tmp_path / "keys.db"),
        ledger_path=str(tmp_path / "ledger.db"),
    )
    with ServerThread(create_app(settings)) as running:
        yield running


def admin(server: ServerThread, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {MASTER}", **kwargs.pop("headers", {})}
    return httpx.request(method, server.url + ADMIN + path, headers=headers, timeout=10, **kwargs)


def chat(server: ServerThread, content: str, key: str, model: str = "large") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return httpx.post(
        server.url + "/v1/chat/completions", json=body, headers={"x-api-key": key}, timeout=10
    )


def test_master_key_guards_everything_but_the_schema(
    server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    assert httpx.get(server.url + ADMIN + "/keys").status_code == 401
    wrong = admin(server, "GET", "/keys", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_master_key"
    assert admin(server, "GET", "/keys", headers={"x-api-key": MASTER}).status_code == 200
    schema = httpx.get(server.url + ADMIN + "/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    for path in ("/keys", "/keys/{key_id}", "/analytics/summary", "/analytics/cache",
                 "/analytics/savings", "/analytics/keys", "/ledger"):  # fmt: skip
        assert path in schema["paths"]
        for operation in schema["paths"][path].values():
            assert operation["responses"] and operation["summary"]
    with ServerThread(create_app(make_settings())) as closed:
        off = httpx.get(closed.url + ADMIN + "/keys", headers={"x-api-key": MASTER})
        assert off.status_code == 403 and off.json()["error"]["code"] == "admin_off"


def test_key_lifecycle_through_the_api(server: ServerThread, tmp_path: Path) -> None:
    created = admin(server, "POST", "/keys", json={"name": "team-a", "rpm": 100})
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["id"]
    assert chat(server, "what is 2+2", key).status_code == 200
    listed = admin(server, "GET", "/keys").json()["data"]
    assert [k["id"] for k in listed] == [key_id] and key not in str(listed)
    assert "hash" not in listed[0]
    assert key.encode() not in (tmp_path / "keys.db").read_bytes()
    bad = admin(server, "POST", "/keys", json={"name": "x", "default_mode": "fastest"})
    assert bad.status_code == 400
    assert admin(server, "POST", "/keys", json={"nom": "x"}).status_code == 400
    revoked = admin(server, "DELETE", f"/keys/{key_id}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert chat(server, "what is 2+2", key).status_code == 401
    assert admin(server, "GET", "/keys/nosuchkey000").status_code == 404


def sums(rows: list[LedgerRow]) -> dict[str, Any]:
    hits = sum(r.cache.startswith("hit-") for r in rows)
    lookups = hits + sum(r.cache == "miss" for r in rows)
    return {
        "requests": len(rows),
        "errors": sum(r.status >= 400 for r in rows),
        "spend_usd": sum(r.cost_usd for r in rows),
        "baseline_usd": sum(r.baseline_cost_usd for r in rows),
        "prompt_tokens": sum(r.prompt_tokens for r in rows),
        "completion_tokens": sum(r.completion_tokens for r in rows),
        "cache_hits": hits,
        "cache_lookups": lookups,
    }


def test_analytics_equal_the_ledger(server: ServerThread, tmp_path: Path) -> None:
    one = admin(server, "POST", "/keys", json={"name": "one"}).json()
    two = admin(server, "POST", "/keys", json={"name": "two", "budget_usd": 0.000001}).json()
    for content in ("what is 2+2", "what is 2+2", "what is 3+3"):
        assert chat(server, content, one["key"]).status_code == 200
    hard = (
        "Design a distributed rate limiter for a microservices architecture; explain the "
        "trade-offs, then write Python code for it."
    )
    assert chat(server, hard, two["key"]).status_code == 200
    assert chat(server, "what is 2+2", two["key"]).status_code == 402

    summary = admin(server, "GET", "/analytics/summary").json()
    rows = read_rows(str(tmp_path / "ledger.db"))  # the API flushed before it answered
    assert len(rows) == 5
    expected = sums(rows)
    for name, value in expected.items():
        assert summary[name] == pytest.approx(value), name
    assert summary["savings_usd"] == pytest.approx(expected["baseline_usd"] - expected["spend_usd"])
    assert summary["cache_hit_rate"] == pytest.approx(1 / 4)
    by_model = {m["model"]: m for m in summary["by_model"]}
    for model in {r.model for r in rows}:
        picked = [r for r in rows if r.model == model]
        assert by_model[model]["requests"] == len(picked)
        assert by_model[model]["spend_usd"] == pytest.approx(sum(r.cost_usd for r in picked))
    assert sum(t["requests"] for t in summary["by_tier"]) == 5

    cache = admin(server, "GET", "/analytics/cache").json()
    assert cache["results"] == {"hit-exact": 1, "miss": 3, "off": 1}  # off: refused first
    assert "entries" in cache  # the live store's size, where the store can tell
    hit_rows = [r for r in rows if r.cache.startswith("hit-")]
    assert cache["saved_usd"] == pytest.approx(sum(r.baseline_cost_usd for r in hit_rows))

    savings = admin(server, "GET", "/analytics/savings").json()
    assert savings["savings_usd"] == pytest.approx(summary["savings_usd"])
    assert savings["from_cache_usd"] + savings["from_routing_usd"] == pytest.approx(
        savings["savings_usd"]
    )
    assert sum(d["requests"] for d in savings["by_day"]) == 5

    usage = {u["key_id"]: u for u in admin(server, "GET", "/analytics/keys").json()["data"]}
    for record in (one, two):
        mine = [r for r in rows if r.key_id == record["id"]]
        assert usage[record["id"]]["requests"] == len(mine)
        assert usage[record["id"]]["spend_usd"] == pytest.approx(sum(r.cost_usd for r in mine))
        assert usage[record["id"]]["name"] == record["name"]
    assert usage[two["id"]]["budget_refused"] == 1
    assert usage[two["id"]]["month_spend_usd"] == pytest.approx(
        sum(r.cost_usd for r in rows if r.key_id == two["id"])
    )
    single = admin(server, "GET", f"/keys/{one['id']}/usage").json()
    assert single["requests"] == 3
    latest = admin(server, "GET", "/ledger", params={"limit": 2}).json()["data"]
    assert [r["request_id"] for r in latest] == [rows[4].request_id, rows[3].request_id]
    past = admin(server, "GET", "/analytics/summary", params={"until": "2000-01-01"}).json()
    assert past["requests"] == 0
    assert admin(server, "GET", "/analytics/summary", params={"since": "soon"}).status_code == 400
