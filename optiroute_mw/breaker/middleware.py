"""Breaker: run the next stage against each candidate in turn while circuits allow.

The responder holds back an error answer until it knows whether another
candidate should be tried; a successful start goes to the client at once, and
from then on nothing is retried.  Which failures count against a circuit and
which are worth another candidate is decided from the Attempt the forward stage
recorded.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import send_error
from ..exchange import Attempt, Exchange, ensure_exchange
from ..observe.metrics import Metrics
from .circuit import CircuitBoard

# worth another candidate: the backend, not the request, was the problem
FAILOVER = frozenset(
    {
        "timeout",
        "connect",
        "read",
        "malformed",
        "http_401",
        "http_403",
        "http_404",
        "http_429",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "http_529",
    }
)
# counted against the circuit (429 is the backend's load, not its health)
CIRCUIT_FAILURES = FAILOVER - {"http_429", "http_404"}


class BreakerMiddleware:
    def __init__(
        self, app: ASGIApp, *, board: CircuitBoard | None = None, metrics: Metrics | None = None
    ) -> None:
        self.app = app
        self.board = board or CircuitBoard()
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange, receive = await ensure_exchange(scope, receive)
        candidates = exchange.selection.candidates if exchange.selection else []
        if not candidates:
            await self.app(scope, receive, send)
            return
        held: HeldResponse | None = None
        for model in candidates:
            circuit = self.board.get(model.key)
            if not circuit.allow():
                exchange.attempts.append(Attempt(model.name, model.backend, "open_circuit", 503))
                continue
            exchange.model = model
            attempt = HeldResponse(send)
            tried = len(exchange.attempts)
            await self.app(scope, receive, attempt.send)
            outcome = exchange.attempts[-1].outcome if len(exchange.attempts) > tried else "ok"
            if outcome in CIRCUIT_FAILURES:
                circuit.record_failure()
            elif outcome == "ok" or outcome.startswith("stream_"):
                circuit.record_success() if outcome == "ok" else circuit.record_failure()
            else:
                circuit.release()
            self._export(model.key)
            if attempt.passed or outcome not in FAILOVER:
                await attempt.flush()
                return
            held = attempt
        if held is not None:
            await held.flush()
            return
        await self._all_open(exchange, send)

    async def _all_open(self, exchange: Exchange, send: Send) -> None:
        exchange.status = 503
        await send_error(
            send,
            503,
            "No backend is available: every candidate's circuit is open.",
            "backends_unavailable",
            headers=[(b"retry-after", b"1")],
        )

    def _export(self, key: str) -> None:
        if self.metrics is not None:
            self.metrics.set_circuit(key, self.board.get(key).state)


class HeldResponse:
    """Sends a success straight on; keeps an error response until told to flush it."""

    def __init__(self, send: Send) -> None:
        self.wrapped_send = send
        self.passed = False
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        if self.passed:
            await self.wrapped_send(message)
        elif message["type"] == "http.response.start" and message["status"] < 400:
            self.passed = True
            await self.wrapped_send(message)
        else:
            self.messages.append(message)

    async def flush(self) -> None:
        for message in self.messages:
            await self.wrapped_send(message)
        self.messages.clear()
