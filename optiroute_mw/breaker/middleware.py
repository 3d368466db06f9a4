"""Breaker: run the next stage against each candidate in turn while circuits allow.

Candidates come from the selector, best first.  A failure worth another try
(connect errors, timeouts, 429, 5xx, malformed answers) moves on to the next
candidate at once; when a whole round failed, the round is retried after an
exponential backoff with full jitter, within the request's one deadline.  A 429
cools its deployment down for its Retry-After (bounded) without counting against
its circuit; a context-length error moves on to a model with a larger window.

An error answer is held back until it is known that nothing better will come; a
successful start goes to the client at once, and from then on nothing is retried.
If a stream breaks after content was sent, the next candidate is asked to carry on
from the partial answer and its chunks are stitched into the same stream; when no
candidate can, the stream ends with an SSE error event and ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import send_error
from ..exchange import Attempt, Exchange, ensure_exchange
from ..observe.metrics import Metrics
from ..registry import ModelSpec, Registry
from ..settings import Settings
from ..sse import error_event
from .circuit import Circuit, CircuitBoard

# worth another candidate: the backend, not the request, was the problem
FAILOVER = frozenset(
    {
        "timeout",
        "ttft_timeout",
        "connect",
        "read",
        "malformed",
        "stream_error",
        "http_401",
        "http_403",
        "http_404",
        "http_429",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "http_529",
        "context_length",
        "internal",
    }
)

Sleep = Callable[[float], Awaitable[None]]
logger = structlog.get_logger(__name__)


class BreakerMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        board: CircuitBoard | None = None,
        metrics: Metrics | None = None,
        settings: Settings | None = None,
        registry: Registry | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.app = app
        self.settings = settings or Settings()
        self.board = board or CircuitBoard(
            self.settings.breaker_failures, self.settings.breaker_cooldown_s
        )
        self.metrics = metrics
        self.registry = registry
        self.sleep = sleep
        # counted against a circuit: configurable (a 429 is load, not ill health)
        self.counted = frozenset(self.settings.breaker_counted)
        self._exported: dict[str, str] = {}  # circuit state last put on the gauge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange, receive = await ensure_exchange(scope, receive)
        candidates = self._candidates(exchange)
        if not candidates:
            await self.app(scope, receive, send)
            return
        await BreakerResponder(self, scope, receive, send, exchange, candidates).run()

    def _candidates(self, exchange: Exchange) -> list[ModelSpec]:
        if exchange.selection is None:
            return []
        candidates = exchange.selection.candidates
        if not self.settings.degrade_to_local and self.registry is not None:
            backends = self.registry.backends
            primary_local = backends[candidates[0].backend].local
            candidates = [m for m in candidates if primary_local or not backends[m.backend].local]
        return candidates

    def circuit(self, model: ModelSpec) -> Circuit:
        return self.board.get(model.key)

    def export(self, model: ModelSpec) -> None:
        if self.metrics is None:
            return
        state = self.board.get(model.key).state
        if self._exported.get(model.key) != state:  # a gauge write only on a change
            self._exported[model.key] = state
            self.metrics.set_circuit(model.key, state)


class BreakerResponder:
    def __init__(
        self,
        middleware: BreakerMiddleware,
        scope: Scope,
        receive: Receive,
        send: Send,
        exchange: Exchange,
        candidates: list[ModelSpec],
    ) -> None:
        self.middleware = middleware
        self.settings = middleware.settings
        self.scope = scope
        self.receive = receive
        self.send = send
        self.exchange = exchange
        self.candidates = candidates
        self.held: HeldResponse | None = None
        self.min_context = 0
        exchange.deadline = exchange.started + self.settings.total_timeout_s
        exchange.keep_stream_open = exchange.stream and self.settings.stream_failover

    def time_left(self) -> float:
        assert self.exchange.deadline is not None
        return self.exchange.deadline - time.perf_counter()

    async def run(self) -> None:
        settings = self.settings
        for round_ in range(settings.retry_rounds + 1):
            tried = await self._round()
            if tried is None:
                return  # answered
            if round_ == settings.retry_rounds or self.time_left() <= 0:
                break
            if tried:
                cap = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2**round_)
                await self._sleep(min(random.uniform(0, cap), max(0.0, self.time_left())))
            elif not await self._wait_for_a_circuit():
                break
        if self.held is not None:
            await self.held.flush()
        else:
            self.exchange.status = 503
            await send_error(
                self.send,
                503,
                "No backend is available: every candidate is cooling down or its circuit is open.",
                "backends_unavailable",
                headers=[(b"retry-after", b"1")],
            )

    async def _round(self) -> bool | None:
        """Try each candidate once: None when answered, else whether any was tried."""
        tried = False
        for index, model in enumerate(self.candidates):
            if model.context_window <= self.min_context or self.time_left() <= 0:
                continue
            circuit = self.middleware.circuit(model)
            if not circuit.allow():
                self.exchange.attempts.append(
                    Attempt(model.name, model.backend, "open_circuit", 503)
                )
                continue
            tried = True
            attempt = HeldResponse(self.send)
            outcome, retry_after = await self._attempt(model, attempt.send)
            self._record(circuit, model, outcome, retry_after)
            if attempt.passed:
                if outcome == "stream_broken":
                    await self._carry_on(self.candidates[index + 1 :])
                elif outcome == "internal":
                    await self._end_stream("The gateway failed while relaying this answer.")
                else:
                    await attempt.flush()
                return None
            if outcome not in FAILOVER:
                await attempt.flush()
                return None
            if outcome == "context_length":
                self.min_context = max(self.min_context, model.context_window)
            self.held = attempt
        return tried

    async def _attempt(self, model: ModelSpec, send: Send) -> tuple[str, float | None]:
        exchange = self.exchange
        exchange.model = model
        before = len(exchange.attempts)
        try:
            await self.middleware.app(self.scope, self.receive, send)
        except Exception:
            # a fault of ours, not the backend's: logged, the probe slot given back,
            # and the request still ends in an answer or a clean error
            logger.exception("attempt_failed", model=model.name, backend=model.backend)
            exchange.attempts.append(Attempt(model.name, model.backend, "internal", 500))
            return "internal", None
        if len(exchange.attempts) == before:
            return "ok", None
        last = exchange.attempts[-1]
        return last.outcome, last.retry_after_s

    def _record(
        self, circuit: Circuit, model: ModelSpec, outcome: str, retry_after: float | None
    ) -> None:
        settings = self.settings
        if outcome == "http_429":
            wait = retry_after if retry_after is not None else settings.retry_backoff_s
            circuit.cool_down(min(wait, settings.retry_after_max_s))
        elif outcome in self.middleware.counted:
            circuit.record_failure()
        elif outcome == "ok":
            circuit.record_success()
        else:
            circuit.release()
        self.middleware.export(model)

    async def _wait_for_a_circuit(self) -> bool:
        """Nothing was tried: wait briefly for the first deployment to become usable."""
        cooling = any(self.middleware.circuit(m).cool_until > 0 for m in self.candidates)
        bound = self.settings.retry_after_max_s if cooling else self.settings.all_open_wait_s
        circuits = [self.middleware.circuit(m) for m in self.candidates]
        wait = min(c.ready_at() - c.clock() for c in circuits)
        if wait > bound or wait > self.time_left():
            return False
        await self._sleep(max(0.0, wait))
        return True

    async def _sleep(self, seconds: float) -> None:
        # waiting for a backend is not the gateway's overhead
        started = time.perf_counter()
        await self.middleware.sleep(seconds)
        self.exchange.backend_seconds += time.perf_counter() - started

    async def _carry_on(self, remaining: list[ModelSpec]) -> None:
        """A stream broke mid-way: let the next candidates continue it, else end it cleanly."""
        for model in remaining:
            if self.time_left() <= 0:
                break
            circuit = self.middleware.circuit(model)
            if model.context_window <= self.min_context or not circuit.allow():
                continue
            outcome, retry_after = await self._attempt(model, ContinuationSend(self.send).send)
            self._record(circuit, model, outcome, retry_after)
            if outcome == "ok":
                return
        await self._end_stream(
            "The backend's stream broke off and no other backend could continue it."
        )

    async def _end_stream(self, message: str) -> None:
        self.exchange.status = 502
        await self.send(
            {"type": "http.response.body", "body": error_event(message), "more_body": False}
        )


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


class ContinuationSend:
    """A continuation adds body to a stream already started: any start (an error) is dropped."""

    def __init__(self, send: Send) -> None:
        self.wrapped_send = send
        self.failed = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.failed = True
        elif not self.failed:
            await self.wrapped_send(message)
