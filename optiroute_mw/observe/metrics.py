"""Prometheus metrics, on a registry of their own (no process-wide globals).

Label values are bounded: routes, model and backend names from the registry,
tiers, cache results and status classes; never a prompt, a key or a request id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..exchange import Exchange

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "optiroute_requests",
            "LLM requests handled by the stack",
            ["route", "model", "tier", "cache", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "optiroute_request_duration_seconds",
            "Time from request to last byte",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "optiroute_gateway_overhead_seconds",
            "Time spent in the stack up to the first byte, backend time excluded",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "optiroute_time_to_first_byte_seconds",
            "Time from request to the first response byte",
            ["route", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "optiroute_tokens", "Tokens by direction", ["model", "direction"], registry=r
        )
        self.cost = Counter("optiroute_cost_usd", "Spend in USD", ["model"], registry=r)
        self.baseline = Counter(
            "optiroute_baseline_cost_usd",
            "What the requested model would have cost, USD",
            registry=r,
        )
        self.savings = Counter(
            "optiroute_savings_usd", "Baseline cost minus actual cost, USD", registry=r
        )
        self.cache_events = Counter(
            "optiroute_cache_events", "Cache lookups and stores", ["layer", "result"], registry=r
        )
        self.attempts = Counter(
            "optiroute_backend_attempts",
            "Calls to backends by outcome",
            ["backend", "outcome"],
            registry=r,
        )
        self.fallbacks = Counter(
            "optiroute_fallbacks", "Requests answered by a fallback deployment", registry=r
        )
        self.circuit = Gauge(
            "optiroute_circuit_state",
            "Circuit per deployment: 0 closed, 1 half-open, 2 open",
            ["deployment"],
            registry=r,
        )
        self.in_flight = Gauge(
            "optiroute_in_flight_requests", "Requests inside the stack", registry=r
        )
        self.side_errors = Counter(
            "optiroute_side_system_errors",
            "Failures of side systems that did not fail a call",
            ["system"],
            registry=r,
        )
        self.refusals = Counter(
            "optiroute_refusals",
            "Calls refused at ingress by reason: auth, model, budget, rate_limit",
            ["reason"],
            registry=r,
        )

    def observe(self, exchange: Exchange, duration: float) -> None:
        """Record a finished request; called once per request by the ingress stage."""
        route = exchange.kind
        model = exchange.model.name if exchange.model else "none"
        tier = exchange.classification.tier if exchange.classification else "none"
        status = f"{exchange.status // 100}xx" if exchange.status else "none"
        self.requests.labels(route, model, tier, exchange.cache_status, status).inc()
        self.duration.labels(route).observe(duration)
        self.overhead.labels(route).observe(exchange.overhead_seconds())
        if exchange.first_byte_at is not None:
            self.ttft.labels(route, "true" if exchange.stream else "false").observe(
                exchange.first_byte_at - exchange.started
            )
        if exchange.prompt_tokens or exchange.completion_tokens:
            self.tokens.labels(model, "input").inc(exchange.prompt_tokens)
            self.tokens.labels(model, "output").inc(exchange.completion_tokens)
        if exchange.cost_usd:
            self.cost.labels(model).inc(exchange.cost_usd)
        if exchange.baseline_cost_usd:
            self.baseline.inc(exchange.baseline_cost_usd)
            self.savings.inc(max(0.0, exchange.baseline_cost_usd - exchange.cost_usd))
        for attempt in exchange.attempts:
            self.attempts.labels(attempt.backend, attempt.outcome).inc()
        if (
            exchange.selection
            and exchange.model
            and exchange.model is not exchange.selection.primary
        ):
            self.fallbacks.inc()

    def set_circuit(self, deployment: str, state: str) -> None:
        self.circuit.labels(deployment).set(CIRCUIT_STATES[state])

    def render(self) -> bytes:
        return generate_latest(self.registry)
