"""Locust users for the sidecar: where do everyday calls go?

The scenario: 50 users, each asking ``model: "auto"`` (the router picks freely).
Three calls in four are short, simple prompts (expected on the simple tier: the
local / cheap model); one in four is complex (multi-step reasoning, code, system
design: expected on the complex tier, the cloud model).  Every answer's
``x-optiroute-tier`` / ``x-optiroute-model`` / ``x-optiroute-cache`` headers name
the request in Locust's statistics: ``<kind> -> <tier> / <model>`` (the cache status,
e.g. ``hit-exact``, in place of the tier for a cache hit), so the table shows the
split with the latencies of each route; at the end a short routing table with shares
is printed as well.

Locust is not a project dependency; install it where you run it::

    pip install locust
    locust -f bench/locustfile.py --headless -u 50 -r 50 -t 60s --host http://127.0.0.1:8080

Options added to Locust's own: ``--unique-prompts`` (default on: a tag per request so
the exact cache misses and every call is routed; ``--no-unique-prompts`` lets repeats
hit the cache), ``--api-key KEY`` (sent as a bearer token when the sidecar has keys).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from typing import Any

try:
    from locust import FastHttpUser, between, events, task
except ImportError as exc:  # a clear message instead of a bare traceback
    raise SystemExit("bench/locustfile.py needs Locust: pip install locust") from exc

SIMPLE_PROMPTS = [
    "What is the capital of France?",
    "Translate 'good morning' into Spanish.",
    "Who wrote Hamlet?",
    "Give me a synonym for happy.",
    "How many days are in a leap year?",
    "What colour do you get by mixing blue and yellow?",
    "Say hello in Japanese.",
    "What is the boiling point of water in Celsius?",
]

COMPLEX_PROMPTS = [
    "Design a distributed rate limiter for an API gateway running in three regions. "
    "Compare token bucket and sliding window, explain step by step how the counters stay "
    "consistent across regions, analyse the failure modes, and justify the trade-offs.",
    "Write a Python function that parses arithmetic expressions with operator precedence "
    "and parentheses, then explain its time complexity, prove it terminates, and add "
    "unit tests for the edge cases.",
    "Our asyncio service leaks memory only under load. Walk through, step by step, how "
    "you would find the cause: which metrics, profilers and heap snapshots, what "
    "hypotheses to test first and why. Then write a Python function that uses "
    "tracemalloc to report the top allocations, and explain how to verify the fix.",
    "Design the database schema and REST API for a multi-tenant billing system with "
    "usage-based pricing, proration and invoices. Explain the indexes, the consistency "
    "model for usage events, and how to migrate existing customers without downtime.",
    "Prove that the sum of the first n odd numbers is n squared, first by induction and "
    "then geometrically, and explain why both arguments are valid.",
]

ROUTES: Counter[tuple[str, str, str]] = Counter()  # (kind, tier, model) -> calls
ROUTES_LOCK = threading.Lock()
SEQUENCE = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--unique-prompts",
        action="store_true",
        default=True,
        help="tag every prompt so the exact cache misses (default)",
    )
    parser.add_argument("--no-unique-prompts", dest="unique_prompts", action="store_false")
    parser.add_argument("--api-key", default="", help="bearer token for the sidecar")


class GatewayUser(FastHttpUser):
    """One person calling the gateway, with a short think time between calls."""

    host = "http://127.0.0.1:8080"
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.unique = bool(getattr(options, "unique_prompts", True))
        key = getattr(options, "api_key", "")
        self.headers = {"content-type": "application/json"}
        if key:
            self.headers["authorization"] = f"Bearer {key}"

    @task(3)
    def simple(self) -> None:
        self.ask("simple", random.choice(SIMPLE_PROMPTS))

    @task(1)
    def complex(self) -> None:
        self.ask("complex", random.choice(COMPLEX_PROMPTS))

    def ask(self, kind: str, prompt: str) -> None:
        if self.unique:
            prompt = f"{prompt} (request {next(SEQUENCE)})"
        body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
        with self.client.post(
            "/v1/chat/completions", json=body, headers=self.headers, name=kind, catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            tier, model = route(resp.headers)
            with ROUTES_LOCK:
                ROUTES[(kind, tier, model)] += 1
            # renamed before the context reports it: one statistics row per route
            resp.request_meta["name"] = f"{kind} -> {tier} / {model}"


def route(headers: Any) -> tuple[str, str]:
    """The tier and model that answered, from the sidecar's headers."""
    cache = headers.get("x-optiroute-cache", "")
    # a cache hit is not classified: its cache status (hit-exact, hit-semantic, ...) instead
    tier = headers.get("x-optiroute-tier") or (cache if cache.startswith("hit") else "?")
    return tier, headers.get("x-optiroute-model", "?")


@events.quitting.add_listener
def _print_routes(environment: Any, **_kwargs: Any) -> None:
    """Where the calls went, per kind of prompt (this process's users only)."""
    if not ROUTES:
        return
    totals: Counter[str] = Counter()
    for (kind, _tier, _model), calls in ROUTES.items():
        totals[kind] += calls
    print("\nrouting (from the x-optiroute-* headers):")
    print(f"  {'prompt':<8} {'tier':<12} {'model':<24} {'calls':>6} {'share':>6}")
    for (kind, tier, model), calls in sorted(ROUTES.items()):
        share = 100 * calls / totals[kind]
        print(f"  {kind:<8} {tier:<12} {model:<24} {calls:>6} {share:>5.1f}%")
