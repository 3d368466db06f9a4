"""Monthly budgets: the soft limit downgrades, the hard limit refuses, spend survives restarts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from support.serve import ServerThread

from optiroute_mw.ingress import Tenant
from optiroute_mw.ingress.budgets import HARD, OK, SOFT, BudgetBook, month_start
from optiroute_mw.ingress.keys import KeyStore
from optiroute_mw.ledger.store import read_rows
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings


def chat(url: str, content: str, key: str, **headers: str) -> Any:
    body = {"model": "large", "messages": [{"role": "user", "content": content}]}
    headers["x-api-key"] = key
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def test_book_states_and_month_roll() -> None:
    now = [datetime(2026, 3, 31, 23, 0, tzinfo=UTC).timestamp()]
    book = BudgetBook(clock=lambda: now[0])
    tenant = Tenant(id="t", key_id="k", budget_usd=1.0, soft_budget_usd=0.5)
    book.load({"key:k": 0.25}, "2026-03")
    book.load({"key:k": 99.0}, "2026-02")  # another month's figures do not count
    assert book.spent("key:k") == 0.25 and book.state(tenant) == OK
    book.add("key:k", 0.3)
    assert book.state(tenant) == SOFT
    book.add("key:k", 0.5)
    assert book.state(tenant) == HARD
    now[0] += 2 * 3600  # April, UTC
    assert book.month == "2026-03"
    assert book.state(tenant) == OK  # a new month starts from nothing
    assert book.month == "2026-04"
    assert month_start(now[0]) == datetime(2026, 4, 1, tzinfo=UTC).timestamp()
    assert book.state(Tenant(id="free")) == OK


def test_soft_limit_downgrades_the_mode_and_says_so(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    store = KeyStore(str(tmp_path / "keys.db"))
    key, _ = store.create("soft", soft_budget_usd=0.000001)
    ledger = str(tmp_path / "ledger.db")
    quality = {"x-optiroute-mode": "quality"}
    with ServerThread(create_app(make_settings(keys_db=store.path, ledger_path=ledger))) as server:
        first = chat(server.url, "what is 2+2", key, **quality)
        assert first.headers["x-optiroute-model"] == "large"
        assert "x-optiroute-budget" not in first.headers
        second = chat(server.url, "what is 3+3", key, **quality)
        assert second.status_code == 200
        assert second.headers["x-optiroute-budget"] == "soft-limit"
        assert second.headers["x-optiroute-model"] == "small"  # cost mode, whatever was asked
    assert [r.mode for r in read_rows(ledger)] == ["quality", "cost"]


def test_hard_limit_refuses_and_spend_survives_a_restart(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    store = KeyStore(str(tmp_path / "keys.db"))
    key, record = store.create("hard", budget_usd=0.000001)
    other, _ = store.create("other", budget_usd=1.0)
    settings = make_settings(keys_db=store.path, ledger_path=str(tmp_path / "ledger.db"))
    with ServerThread(create_app(settings)) as server:
        assert chat(server.url, "what is 2+2", key).status_code == 200
        refused = chat(server.url, "what is 3+3", key)
        assert refused.status_code == 402
        error = refused.json()["error"]
        assert error["type"] == "insufficient_quota" and error["code"] == "budget_exceeded"
        assert "Monthly budget exhausted" in error["message"]
        assert chat(server.url, "what is 3+3", other).status_code == 200  # per key
    # a new process reads this month's spend back from the ledger
    with ServerThread(create_app(settings)) as server:
        assert chat(server.url, "what is 4+4", key).status_code == 402
        assert chat(server.url, "what is 4+4", other).status_code == 200
    rows = read_rows(str(tmp_path / "ledger.db"), "key_id = ?", (record.id,))
    assert [r.status for r in rows] == [200, 402, 402]
    assert rows[0].cost_usd > 0 and rows[1].cost_usd == rows[2].cost_usd == 0
