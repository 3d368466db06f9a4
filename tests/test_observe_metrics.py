"""Prometheus metrics: names and labels by convention, right numbers, one README table,
and counters summed across worker processes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from support.fake_openai import FakeOpenAI, Fault
from support.observe import COST_MODE, fixed_route_settings
from support.serve import ServerThread

from optiroute_mw.exchange import Attempt, Classification, Exchange
from optiroute_mw.observe.metrics import Metrics
from optiroute_mw.registry import ModelSpec
from optiroute_mw.server import create_app
from optiroute_mw.wire import parse_request

README = Path(__file__).resolve().parents[1] / "README.md"
LABELS = {
    "route", "model", "tier", "cache", "status", "stream", "direction", "backend", "source",
    "layer", "result", "outcome", "deployment", "system", "reason", "version", "le",
}  # fmt: skip


def scrape(url: str) -> dict[str, Any]:
    """Samples by name: {name: [(labels, value), ...]}, and each family's type and samples."""
    text = httpx.get(url + "/metrics").text
    out: dict[str, Any] = {"_types": {}}
    for family in text_string_to_metric_families(text):
        out["_types"][family.name] = (family.type, {s.name for s in family.samples})
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def total(samples: dict[str, Any], name: str, **match: str) -> float:
    return sum(
        value
        for labels, value in samples.get(name, [])
        if all(labels.get(k) == v for k, v in match.items())
    )


def chat(url: str, content: str, **extra: Any) -> httpx.Response:
    headers = {**COST_MODE, **extra.pop("headers", {})}
    body = {"model": "strong", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def test_metrics_follow_conventions_and_count_right(
    tmp_path: Path, fake: FakeOpenAI, fake2: FakeOpenAI
) -> None:
    settings = fixed_route_settings(tmp_path, fake, fake2)
    with ServerThread(create_app(settings)) as server:
        miss = chat(server.url, "what is 2+2", headers={"x-request-id": "req-secret-id"})
        hit = chat(server.url, "what is 2+2")
        fake.script(Fault(status=500))  # the cheap model fails once: the strong one answers
        failover = chat(server.url, "tell me a story")
        with httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            json={
                "model": "strong",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers=COST_MODE,
        ) as stream:
            stream.read()
        samples = scrape(server.url)
    assert (miss.status_code, hit.status_code, failover.status_code) == (200, 200, 200)
    types = samples.pop("_types")
    for name, (kind, names) in types.items():
        if not name.startswith("optiroute_"):
            continue
        assert re.fullmatch(r"optiroute_[a-z0-9_]+", name), name
        if kind == "counter":
            assert names <= {f"{name}_total", f"{name}_created"}, name
        if kind == "histogram" and "similarity" not in name:
            assert name.endswith("_seconds"), name
    for name, rows in samples.items():
        for labels, _ in rows:
            assert set(labels) <= LABELS, (name, labels)
            assert "req-secret-id" not in labels.values() and "what is 2+2" not in labels.values()

    assert total(samples, "optiroute_requests_total") == 4
    assert total(samples, "optiroute_requests_total", cache="hit-exact", model="cheap") == 1
    paid = [float(r.headers["x-optiroute-cost"]) for r in (miss, hit, failover)]
    streamed_cost = total(samples, "optiroute_cost_usd_total") - sum(paid)
    assert streamed_cost > 0  # the stream's cost is counted too (no header on streams)
    assert total(samples, "optiroute_cost_usd_total", backend="secondary") == paid[2]
    baseline = total(samples, "optiroute_baseline_cost_usd_total")
    saved = total(samples, "optiroute_savings_usd_total")
    assert abs(saved - (baseline - sum(paid) - streamed_cost)) < 1e-12
    assert total(samples, "optiroute_savings_usd_total", source="cache") > 0
    assert total(samples, "optiroute_retries_total") == 1
    assert total(samples, "optiroute_fallbacks_total") == 1
    assert total(samples, "optiroute_backend_attempts_total", outcome="http_500") == 1
    assert total(samples, "optiroute_gateway_overhead_seconds_count") == 4
    assert total(samples, "optiroute_time_to_first_token_seconds_count") == 1
    assert total(samples, "optiroute_in_flight_requests") == 0
    assert total(samples, "optiroute_in_flight_streams") == 0
    assert total(samples, "optiroute_tokens_total", direction="input") > 0
    assert total(samples, "optiroute_circuit_state", deployment="strong@secondary") == 0


def test_every_metric_is_in_the_one_readme_table() -> None:
    metrics = Metrics()
    exposed = {
        family.name for family in metrics.registry.collect() if family.name.startswith("optiroute_")
    }
    readme = README.read_text()
    table = [line for line in readme.splitlines() if line.startswith("| `optiroute_")]
    documented = {re.match(r"\| `(optiroute_[a-z0-9_]+)", line)[1] for line in table}  # type: ignore[index]
    # counters are exposed as <name>_total; the table names what Prometheus shows
    shown = {name + "_total" if name + "_total" in documented else name for name in exposed}
    assert shown == documented


def test_label_children_are_resolved_once_per_combination() -> None:
    metrics = Metrics()
    model = ModelSpec(name="small", backend="primary", tier="simple", input_per_mtok=1)
    body = b'{"model": "large", "messages": [{"role": "user", "content": "hi"}]}'
    for _ in range(3):
        exchange = Exchange("r", "chat", "/v1/chat/completions", body, parse_request("chat", body))
        exchange.model, exchange.status, exchange.cache_status = model, 200, "miss"
        exchange.classification = Classification("simple", 0.1)
        exchange.attempts.append(Attempt("small", "primary", "ok", 200))
        exchange.account(10, 5)
        metrics.observe(exchange, 0.01)
    assert len(metrics._series) == 1 and len(metrics._attempt_children) == 1
    value = metrics.registry.get_sample_value(
        "optiroute_requests_total",
        {"route": "chat", "model": "small", "tier": "simple", "cache": "miss", "status": "2xx"},
    )
    assert value == 3
