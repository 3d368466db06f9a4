"""Prometheus metrics, on a registry of their own (no process-wide globals).

Label values are bounded: routes, model and backend names from the registry,
tiers, cache results and status classes; never a prompt, a key or a request id.
Every metric is listed, with its labels, in the README's metrics table.

The request path stays cheap: :meth:`Metrics.observe` resolves the label children
of a request's label combination once and keeps them (:class:`Series`), so a
request costs a dict lookup and a few increments, not a dozen ``labels()`` calls.

Several worker processes (``optiroute-mw serve --workers N``) share their numbers
through prometheus-client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR``
set before the first import, values live in files there and :meth:`Metrics.render`
sums every worker's (gauges as the issue asks: in-flight summed over live workers,
a circuit's state the worst any live worker sees).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from ..exchange import Exchange

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1, 2.5,
)  # fmt: skip
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
STATUS_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
# chosen once, at import, by prometheus-client itself (PROMETHEUS_MULTIPROC_DIR)
MULTIPROCESS = prometheus_values.ValueClass is not prometheus_values.MutexValue

SeriesKey = tuple[str, str, str, str, str, str, bool]


def _package_version() -> str:
    try:
        return version("optiroute-mw")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class Series:
    """The label children of one (route, model, backend, tier, cache, status, stream)."""

    __slots__ = (
        "cost",
        "duration",
        "hit",
        "overhead",
        "requests",
        "savings",
        "tokens_in",
        "tokens_out",
        "ttfb",
        "ttft",
    )

    def __init__(self, metrics: Metrics, key: SeriesKey) -> None:
        route, model, backend, tier, cache, status, stream = key
        self.requests = metrics.requests.labels(route, model, tier, cache, status)
        self.duration = metrics.duration.labels(route)
        self.overhead = metrics.overhead.labels(route)
        self.ttfb = metrics.ttfb.labels(route, "true" if stream else "false")
        self.ttft = metrics.ttft.labels(route) if stream else None
        self.tokens_in = metrics.tokens.labels(model, "input")
        self.tokens_out = metrics.tokens.labels(model, "output")
        self.cost = metrics.cost.labels(model, backend)
        self.hit = cache.startswith("hit")
        self.savings = metrics.savings.labels("cache" if self.hit else "routing")


class Metrics:
    content_type = CONTENT_TYPE_LATEST
    multiprocess = MULTIPROCESS

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
        self.ttfb = Histogram(
            "optiroute_time_to_first_byte_seconds",
            "Time from request to the first response byte",
            ["route", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "optiroute_time_to_first_token_seconds",
            "Streams: time from request to the first streamed event",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "optiroute_tokens", "Tokens by direction", ["model", "direction"], registry=r
        )
        self.cost = Counter("optiroute_cost_usd", "Spend in USD", ["model", "backend"], registry=r)
        self.baseline = Counter(
            "optiroute_baseline_cost_usd",
            "What the requested model would have cost, USD",
            registry=r,
        )
        self.savings = Counter(
            "optiroute_savings_usd",
            "Baseline cost minus actual cost, USD, by source: cache or routing",
            ["source"],
            registry=r,
        )
        self.cache_events = Counter(
            "optiroute_cache_events", "Cache lookups and stores", ["layer", "result"], registry=r
        )
        self.cache_similarity = Histogram(
            "optiroute_cache_similarity",
            "Cosine similarity of the prompts behind served semantic-cache hits",
            buckets=(0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0),
            registry=r,
        )
        self.cache_saved = Counter(
            "optiroute_cache_saved_usd",
            "What calls answered from the cache would have cost the requested model, USD",
            ["layer"],
            registry=r,
        )
        self.attempts = Counter(
            "optiroute_backend_attempts",
            "Calls to backends by outcome",
            ["backend", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "optiroute_retries",
            "Backend calls beyond the first one of a request",
            ["route"],
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
            multiprocess_mode="livemax",
        )
        self.in_flight = Gauge(
            "optiroute_in_flight_requests",
            "Requests inside the stack",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.in_flight_streams = Gauge(
            "optiroute_in_flight_streams",
            "Streamed answers being relayed",
            registry=r,
            multiprocess_mode="livesum",
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
        self.info = Gauge(
            "optiroute_build_info",
            "Always 1; the version in a label",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.info.labels(_package_version()).set(1)
        self._series: dict[SeriesKey, Series] = {}
        self._attempt_children: dict[tuple[str, str], Counter] = {}
        self._retry_children: dict[str, Counter] = {}
        self._cache_event_children: dict[tuple[str, str], Counter] = {}

    def observe(self, exchange: Exchange, duration: float) -> None:
        """Record a finished request; called once per request by the ingress stage."""
        route = exchange.kind
        spec = exchange.model
        status = exchange.status
        stream = exchange.request.stream
        classification = exchange.classification
        if spec is not None:
            model, backend = spec.name, spec.backend
        else:  # a cache hit: the cache says which model gave the answer (as in the ledger)
            headers = exchange.response_headers
            model = headers.get("x-optiroute-model", "none")
            backend = headers.get("x-optiroute-backend", "none")
        key = (
            route,
            model,
            backend,
            classification.tier if classification else "none",
            exchange.cache_status,
            STATUS_CLASSES[status // 100] if 0 < status < 600 else "none",
            stream,
        )
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = Series(self, key)
        series.requests.inc()
        series.duration.observe(duration)
        series.overhead.observe(exchange.overhead_seconds())
        first_byte_at = exchange.first_byte_at
        if first_byte_at is not None:
            series.ttfb.observe(first_byte_at - exchange.started)
            if stream:
                series.ttft.observe(first_byte_at - exchange.started)  # type: ignore[union-attr]
                self.in_flight_streams.dec()  # paired with response_started()
        hit = series.hit
        if not hit and (exchange.prompt_tokens or exchange.completion_tokens):
            series.tokens_in.inc(exchange.prompt_tokens)
            series.tokens_out.inc(exchange.completion_tokens)
        cost = exchange.cost_usd
        if cost:
            series.cost.inc(cost)
        baseline = exchange.baseline_cost_usd
        if baseline:
            self.baseline.inc(baseline)
            if baseline > cost:
                series.savings.inc(baseline - cost)
        attempts = exchange.attempts
        if attempts:
            self._count_attempts(exchange, route)

    def _count_attempts(self, exchange: Exchange, route: str) -> None:
        calls = 0
        children = self._attempt_children
        for attempt in exchange.attempts:
            pair = (attempt.backend, attempt.outcome)
            child = children.get(pair)
            if child is None:
                child = children[pair] = self.attempts.labels(*pair)
            child.inc()
            if attempt.outcome != "open_circuit":
                calls += 1
        if calls > 1:
            retries = self._retry_children.get(route)
            if retries is None:
                retries = self._retry_children[route] = self.retries.labels(route)
            retries.inc(calls - 1)
        selection = exchange.selection
        if selection and exchange.model and exchange.model is not selection.primary:
            self.fallbacks.inc()

    def cache_event(self, layer: str, outcome: str) -> None:
        """One cache lookup, store or share (the labelled child kept: a lookup per call)."""
        child = self._cache_event_children.get((layer, outcome))
        if child is None:
            child = self._cache_event_children[(layer, outcome)] = self.cache_events.labels(
                layer, outcome
            )
        child.inc()

    def response_started(self, exchange: Exchange) -> None:
        """The answer's first byte left (ingress); a stream counts as in flight till the end."""
        if exchange.request.stream:
            self.in_flight_streams.inc()

    def set_circuit(self, deployment: str, state: str) -> None:
        self.circuit.labels(deployment).set(CIRCUIT_STATES[state])

    def collecting_registry(self) -> CollectorRegistry:
        """What a scrape reads: this registry, or every worker's files in multiprocess mode."""
        if not self.multiprocess:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry

    def render(self) -> bytes:
        return generate_latest(self.collecting_registry())
