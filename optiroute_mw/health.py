"""What the selector knows about each deployment: calls in flight, latency, circuit.

One :class:`Health` per process, shared through ``stack.py`` by the select stage (which
balances load and scores speed with it) and by :class:`Tracked`, a thin wrapper around
the forwarder that counts every backend call in and out and times it.  The breaker owns
the circuits; a :class:`Health` only reads them, through the small :class:`Circuits`
protocol, so no stage imports another.

Latency is an exponentially weighted moving average of the time from sending the call
to the first byte of the answer's body (for a stream: its first event; for JSON: the
answer), learned online from successful calls and from timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .exchange import get_exchange

SLOW_OUTCOMES = frozenset({"timeout", "ttft_timeout"})  # their elapsed time is informative


class CircuitView(Protocol):
    def ready_at(self) -> float: ...

    def clock(self) -> float: ...


class Circuits(Protocol):
    """Read-only view of the breaker's circuits by deployment key (a ``CircuitBoard``)."""

    @property
    def circuits(self) -> Mapping[str, CircuitView]: ...


@dataclass(slots=True)
class DeploymentStats:
    in_flight: int = 0
    latency_s: float | None = None  # EWMA
    calls: int = 0


class Health:
    """In-flight counts and latency EWMAs per deployment key (``name@backend``)."""

    def __init__(self, *, alpha: float = 0.2, circuits: Circuits | None = None) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must lie in (0, 1]")
        self.alpha = alpha
        self.circuits = circuits
        self.stats: dict[str, DeploymentStats] = {}

    def _get(self, key: str) -> DeploymentStats:
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = DeploymentStats()
        return stats

    def begin(self, key: str) -> None:
        self._get(key).in_flight += 1

    def end(self, key: str, latency_s: float | None = None) -> None:
        stats = self._get(key)
        stats.in_flight = max(0, stats.in_flight - 1)
        if latency_s is not None:
            self.observe(key, latency_s)

    def observe(self, key: str, latency_s: float) -> None:
        stats = self._get(key)
        stats.calls += 1
        if stats.latency_s is None:
            stats.latency_s = latency_s
        else:
            stats.latency_s += self.alpha * (latency_s - stats.latency_s)

    def in_flight(self, key: str) -> int:
        stats = self.stats.get(key)
        return stats.in_flight if stats else 0

    def latency(self, key: str) -> float | None:
        stats = self.stats.get(key)
        return stats.latency_s if stats else None

    def available(self, key: str) -> bool:
        """False while the deployment's circuit is open or it is cooling down (a 429)."""
        if self.circuits is None:
            return True
        circuit = self.circuits.circuits.get(key)
        return circuit is None or circuit.ready_at() <= circuit.clock()

    def track(self, app: ASGIApp) -> Tracked:
        return Tracked(app, self)


class Tracked:
    """Wraps the forwarder: one in-flight count and one latency sample per backend call."""

    def __init__(self, app: ASGIApp, health: Health) -> None:
        self.app = app
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = get_exchange(scope) if scope["type"] == "http" else None
        model = exchange.model if exchange is not None else None
        if exchange is None or model is None:
            await self.app(scope, receive, send)
            return
        health, key = self.health, model.key
        failures_before = len(exchange.attempts)
        started = time.perf_counter()
        first_byte: float | None = None

        async def timed_send(message: Message) -> None:
            nonlocal first_byte
            if first_byte is None and message["type"] == "http.response.body":
                first_byte = time.perf_counter()
            await send(message)

        latency: float | None = None
        health.begin(key)
        raised = True
        try:
            await self.app(scope, receive, timed_send)
            raised = False
        finally:
            now = time.perf_counter()
            if raised:
                latency = None
            elif len(exchange.attempts) == failures_before:
                latency = (first_byte or now) - started
            elif exchange.attempts[-1].outcome in SLOW_OUTCOMES:
                latency = now - started
            health.end(key, latency)
