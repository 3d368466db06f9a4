"""The cost ledger: exact rows for a scripted sequence, durable across restarts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fake_openai import FakeOpenAI, Fault
from support.serve import ServerThread

from optiroute_mw.ledger import Ledger, LedgerRow
from optiroute_mw.ledger.store import read_rows
from optiroute_mw.observe.metrics import Metrics
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings

SMALL = (0.1, 0.4)  # USD per 1M tokens in and out, as in the test registry
LARGE = (2.5, 10.0)


def price(rates: tuple[float, float], prompt: int, completion: int) -> float:
    return (prompt * rates[0] + completion * rates[1]) / 1e6


def chat(url: str, content: str, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"model": "large", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def test_rows_are_exact_for_a_scripted_sequence(
    make_settings: Callable[..., Settings], tmp_path: Path, fake: FakeOpenAI, fake2: FakeOpenAI
) -> None:
    path = str(tmp_path / "ledger.db")
    settings = make_settings(ledger_path=path, retry_rounds=0)
    pin = {"x-optiroute-model": "large"}
    with ServerThread(create_app(settings)) as server:
        miss = chat(server.url, "what is 2+2")
        hit = chat(server.url, "what is 2+2")
        fake.script(Fault(status=500))  # the first deployment fails, the second answers
        fallback = chat(server.url, "tell me a story", headers=pin)
        fake.always(Fault(status=500))
        fake2.always(Fault(status=500))
        error = chat(server.url, "this one fails", headers=pin)
        fake.always(None)
        fake2.always(None)
        with httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            json={
                "model": "large",
                "stream": True,
                "messages": [{"role": "user", "content": "count to three"}],
            },
        ) as stream:
            stream.read()
    assert (miss.status_code, hit.status_code, fallback.status_code) == (200, 200, 200)
    assert error.status_code >= 500
    assert hit.headers["x-optiroute-cache"] == "hit-exact"

    rows = read_rows(path)  # written by the clean shutdown at the latest
    assert len(rows) == 5
    key = (
        "model", "backend", "tier", "cache", "stream", "status", "prompt_tokens",
        "completion_tokens", "tokens_estimated", "attempts", "fallback",
    )  # fmt: skip
    got = [tuple(getattr(r, k) for k in key) for r in rows]
    assert got[0] == ("small", "primary", "simple", "miss", False, 200, 3, 4, False, 1, False)
    assert got[1] == ("small", "cache", None, "hit-exact", False, 200, 3, 4, False, 0, False)
    assert got[2] == ("large", "secondary", "simple", "miss", False, 200, 4, 5, False, 2, True)
    assert got[3][5] == error.status_code and got[3][6:9] == (0, 0, False)
    assert got[4] == ("small", "primary", "simple", "miss", True, 200, 3, 4, False, 1, False)
    assert all(r.tenant == "default" and r.key_id is None and r.route == "chat" for r in rows)
    assert [r.requested_model for r in rows] == ["large"] * 5
    assert [r.request_id for r in rows] == [
        miss.headers["x-request-id"],
        hit.headers["x-request-id"],
        fallback.headers["x-request-id"],
        error.headers["x-request-id"],
        rows[4].request_id,
    ]

    costs = [r.cost_usd for r in rows]
    baselines = [r.baseline_cost_usd for r in rows]
    assert costs == pytest.approx(
        [price(SMALL, 3, 4), 0.0, price(LARGE, 4, 5), 0.0, price(SMALL, 3, 4)]
    )
    # the baseline is what the requested model would have cost; a hit saves all of it
    assert baselines == pytest.approx(
        [price(LARGE, 3, 4), price(LARGE, 3, 4), price(LARGE, 4, 5), 0.0, price(LARGE, 3, 4)]
    )
    savings = sum(b - c for b, c in zip(baselines, costs, strict=True))
    expected = (
        price(LARGE, 3, 4) - price(SMALL, 3, 4)
        + price(LARGE, 3, 4)
        + price(LARGE, 3, 4) - price(SMALL, 3, 4)
    )  # fmt: skip
    assert savings == pytest.approx(expected)
    assert float(miss.headers["x-optiroute-cost"]) == pytest.approx(costs[0], abs=1e-8)
    assert all(r.latency_ms > 0 and r.ts > 0 for r in rows)


def test_ledger_intact_after_a_restart(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = str(tmp_path / "ledger.db")
    settings = make_settings(ledger_path=path)
    with ServerThread(create_app(settings)) as server:
        for i in range(3):
            assert chat(server.url, f"first life {i}").status_code == 200
    before = read_rows(path)
    with ServerThread(create_app(settings)) as server:
        assert chat(server.url, "second life").status_code == 200
    after = read_rows(path)
    assert len(before) == 3 and after[:3] == before and len(after) == 4


def row(n: int) -> LedgerRow:
    return LedgerRow(
        ts=1.0 + n, request_id=f"r{n}", tenant="t", key_id=None, route="chat",
        requested_model="large", model="small", backend="primary", tier="simple",
        mode="balanced", cache="miss", stream=False, status=200, prompt_tokens=1,
        completion_tokens=2, tokens_estimated=False, cost_usd=0.5, baseline_cost_usd=1.0,
        latency_ms=3.0, attempts=1, fallback=False,
    )  # fmt: skip


async def test_failed_writes_keep_rows_and_stop_flushes(tmp_path: Path) -> None:
    metrics = Metrics()
    ledger = Ledger(str(tmp_path / "ledger.db"), flush_s=60, metrics=metrics)
    await ledger.start()
    assert ledger.db is not None
    real_insert = ledger.db.insert

    def broken(rows: Any) -> None:
        raise OSError("disk full")

    ledger.db.insert = broken  # type: ignore[method-assign]
    for n in range(3):
        ledger.record(row(n))
    await ledger.flush()
    assert len(ledger.pending) == 3  # kept for the next try, and counted
    assert metrics.side_errors.labels("ledger")._value.get() == 1
    ledger.db.insert = real_insert  # type: ignore[method-assign]
    ledger.record(row(3))
    await ledger.stop()  # no timer fired: stopping wrote everything
    assert read_rows(str(tmp_path / "ledger.db")) == [row(n) for n in range(4)]
