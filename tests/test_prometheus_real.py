"""A real Prometheus (Debian's package) scrapes a running sidecar: the example config and
rules pass promtool, the series are right, and every Grafana panel's PromQL evaluates."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support.debian import ensure_binary
from support.prometheus import PrometheusServer
from support.serve import ServerThread

from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "observability"
# what Grafana puts in place of its variables, for evaluating the panels' queries
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "10m", "$__interval": "5s"}


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    binary = ensure_binary("prometheus", "prometheus")
    if binary is None or shutil.which("promtool") is None:
        pytest.skip("Debian's prometheus package is not installed and cannot be installed here")
    return binary


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=EXAMPLES, capture_output=True, text=True, timeout=60
    )


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            out.append((panel["title"], expr))
    return out


def test_promtool_accepts_the_config_and_rules(prometheus_binary: str) -> None:
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "promtool-tests.yml"),  # each alert fires when it should
    ):
        done = promtool(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)


def chat(url: str, text: str, stream: bool = False) -> None:
    body: dict[str, Any] = {"model": "large", "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=10) as answer:
        answer.read()
        assert answer.status_code == 200


def test_real_prometheus_scrapes_the_sidecar(
    prometheus_binary: str, make_settings: Callable[..., Settings]
) -> None:
    config = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    rules = [str(EXAMPLES / "alerts.yml")]
    with ServerThread(create_app(make_settings())) as sidecar:
        target = f"127.0.0.1:{sidecar.port}"
        with PrometheusServer(prometheus_binary, config, [target], rule_files=rules) as prom:
            assert prom.wait_for('up{job="optiroute-mw"}', 1) == 1
            for text in ("what is 2+2", "what is 2+2", "name a colour"):
                chat(sidecar.url, text)
            # a first scrape holds these series, so the next traffic shows up in rate()
            assert prom.wait_for("sum(optiroute_requests_total)", 3) == 3
            chat(sidecar.url, "what is 2+2")
            chat(sidecar.url, "explain tcp")
            chat(sidecar.url, "count to three", stream=True)
            assert prom.wait_for("sum(optiroute_requests_total)", 6) == 6
            time.sleep(2.5)  # two more scrapes for the rate windows
            stats = httpx.get(sidecar.url + "/optiroute/stats").json()
            totals = stats["totals"]

            # money: what Prometheus holds equals the ledger's figures
            spend = prom.value("sum(optiroute_cost_usd_total)")
            assert spend == pytest.approx(totals["spend_usd"], rel=1e-9) and spend > 0
            saved = prom.value("sum(optiroute_savings_usd_total)")
            assert saved == pytest.approx(totals["savings_usd"], rel=1e-9)
            # cache: 2 hits of 6 lookups
            hit_rate = prom.value(
                'sum(optiroute_requests_total{cache=~"hit-.*"})'
                ' / sum(optiroute_requests_total{cache=~"hit-.*|miss"})'
            )
            assert hit_rate == pytest.approx(2 / 6)
            assert totals["cache_hit_rate"] == pytest.approx(hit_rate, abs=1e-6)  # rounded
            # overhead: one observation per request, and the same p95 as the dashboard's
            assert prom.value("sum(optiroute_gateway_overhead_seconds_count)") == 6
            p95 = prom.value(
                "histogram_quantile(0.95, sum by (le) (optiroute_gateway_overhead_seconds_bucket))"
            )
            assert p95 is not None and p95 > 0
            assert p95 * 1000 == pytest.approx(stats["overhead_ms"]["p95"], abs=0.001)
            assert prom.value("sum(optiroute_time_to_first_token_seconds_count)") == 1

            # every query of every Grafana panel evaluates, and the main ones have data
            empty = []
            for title, expr in dashboard_queries():
                answer = prom.query(expr)
                assert answer["status"] == "success", (title, expr, answer)
                if not answer["data"]["result"]:
                    empty.append(title)
            for title in ("Total cost", "Cost by provider and model", "Throughput",
                          "Cache events", "p95 latency", "Gateway overhead", "Circuit state",
                          "Cache hit rate over time", "Tokens", "In flight"):  # fmt: skip
                assert title not in empty, title

            # the alert rules are loaded and evaluate without error
            rules_seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                groups = httpx.get(prom.url + "/api/v1/rules").json()["data"]["groups"]
                rules_seen = [rule for group in groups for rule in group["rules"]]
                evaluated = [r.get("lastEvaluation", "0001")[:4] != "0001" for r in rules_seen]
                if rules_seen and all(evaluated):
                    break
                time.sleep(0.25)
            assert {rule["name"] for rule in rules_seen} == {
                "OptirouteCircuitOpen", "OptirouteHighErrorRate", "OptirouteBudgetBurn",
                "OptirouteBudgetExhausted", "OptirouteOverheadHigh",
            }  # fmt: skip
            assert {rule["health"] for rule in rules_seen} == {"ok"}
            states = {rule["name"]: rule["state"] for rule in rules_seen}
            states.pop("OptirouteOverheadHigh")  # six calls, one of them cold: may be pending
            assert set(states.values()) == {"inactive"}  # a healthy gateway
