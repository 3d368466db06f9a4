"""The live dashboard in a real browser (Debian's headless Chromium, driven by Playwright):
no console errors, the figures shown are the stats endpoint's, it updates itself, and it
says so when the endpoint cannot be reached.  Screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.browser import browser_context, chromium_path
from support.serve import ServerThread

from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PROMPTS = ["what is 2+2", "what is 2+2", "name a colour", "explain tcp congestion control"]


@pytest.fixture(scope="module")
def chromium() -> str:
    pytest.importorskip("playwright.sync_api")
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium is not installed and cannot be installed here")
    return path


def fixed(value: float, places: int) -> str:
    """JavaScript's Number.prototype.toFixed: the exact binary value, halves rounded up."""
    quantum = Decimal(1).scaleb(-places)
    return str(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))


def shown(value: Any, kind: str) -> str:
    """What app.js writes for a value of each format."""
    if value is None:
        return "\u2013"  # an en dash
    return {
        "usd": lambda v: "$" + fixed(v, 6),
        "pct": lambda v: fixed(v * 100, 1) + "%",
        "pct100": lambda v: fixed(v, 1) + "%",
        "ms": lambda v: fixed(v, 3 if v < 10 else 1) + " ms",
        "int": lambda v: str(int(Decimal(v).quantize(Decimal(1), rounding=ROUND_HALF_UP))),
        "text": str,
    }[kind](value)


def dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        data = None if data is None else data.get(key)
    return data


def drive(url: str, prompts: list[str]) -> None:
    for text in prompts:
        body = {"model": "large", "messages": [{"role": "user", "content": text}]}
        assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 200
    body = {"model": "large", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body) as answer:
        answer.read()


def test_dashboard_in_chromium(chromium: str, make_settings: Callable[..., Settings]) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    with (
        ServerThread(create_app(make_settings())) as server,
        browser_context(chromium, viewport={"width": 1280, "height": 1000}) as browser,
    ):
        drive(server.url, PROMPTS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/optiroute/dashboard?interval=0.3")
        page.wait_for_selector("body[data-updated]")
        page.evaluate("window.__sameDocument = true")
        stats = httpx.get(server.url + "/optiroute/stats?minutes=60").json()
        expected_requests = len(PROMPTS) + 1
        assert stats["totals"]["requests"] == expected_requests
        requests_shown = page.locator('[data-stat="totals.requests"]')
        expect(requests_shown).to_have_text(str(expected_requests))

        # every figure on the page is the endpoint's, formatted
        figures = page.eval_on_selector_all(
            "[data-stat]", "els => els.map(e => [e.dataset.stat, e.dataset.fmt, e.textContent])"
        )
        assert len(figures) >= 20
        for path, kind, text in figures:
            assert text == shown(dig(stats, path), kind), path
        assert page.text_content('[data-stat="totals.cache_hit_rate"]') == "20.0%"  # 1 of 5
        shares = page.eval_on_selector_all(
            "#by_model .row", "rows => rows.map(r => [r.dataset.name, r.lastChild.textContent])"
        )
        assert shares == [
            [m["model"], f"{shown(m['share'], 'pct')} · {m['requests']}"] for m in stats["by_model"]
        ]
        circuits = page.eval_on_selector_all(
            "#circuits tr", "rows => rows.map(r => [r.dataset.deployment, r.innerText])"
        )
        assert [c[0] for c in circuits] == [c["deployment"] for c in stats["circuits"]]
        assert all("closed" in c[1] for c in circuits)
        recent = page.eval_on_selector_all("#recent tr", "trs => trs.map(r => r.dataset.requestId)")
        assert recent == [r["request_id"] for r in stats["recent"]]
        assert page.get_attribute("#money path.spend", "d")  # the chart is drawn
        assert page.locator("#traffic rect.bar.hit").count() >= 1
        assert page.is_hidden("#offline")
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        assert errors == []

        # it updates itself: one more call shows up without a reload
        drive(server.url, ["one more question"])
        expect(requests_shown).to_have_text(str(expected_requests + 2))
        assert page.evaluate("window.__sameDocument") is True
        assert errors == []

        # the endpoint fails: a clear message, the last figures kept
        page.route("**/optiroute/stats*", lambda route: route.abort())
        page.wait_for_selector("#offline:not([hidden])")
        message = page.text_content("#offline") or ""
        assert "Stats endpoint unreachable (network error)" in message
        assert "showing the figures from" in message
        assert page.text_content("#status") == "offline"
        assert page.text_content('[data-stat="totals.requests"]') == str(expected_requests + 2)
        page.screenshot(path=str(ARTIFACTS / "dashboard-offline.png"))
        page.unroute("**/optiroute/stats*")
        page.route("**/optiroute/stats*", lambda route: route.fulfill(status=500, body="boom"))
        expect(page.locator("#offline")).to_contain_text("Stats endpoint unreachable (HTTP 500)")
        page.unroute("**/optiroute/stats*")
        page.wait_for_selector("#offline", state="hidden")  # back when the endpoint is
        assert (page.text_content("#status") or "").startswith("live")


def test_dashboard_asks_for_the_master_key(
    chromium: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(master_key="master-key-for-tests-123")
    with ServerThread(create_app(settings)) as server, browser_context(chromium) as browser:
        page = browser.new_page()
        page.goto(server.url + "/optiroute/dashboard?interval=0.3")
        page.wait_for_selector("#keyform:not([hidden])")
        assert page.text_content("#status") == "key needed"
        page.fill("#key", "master-key-for-tests-123")
        page.click("#keyform button")
        page.wait_for_selector("body[data-updated]")
        assert page.is_hidden("#keyform")
        assert page.text_content('[data-stat="totals.requests"]') == "0"
