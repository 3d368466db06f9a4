"""The terminal ASGI app: send the request to the chosen deployment and stream back.

It reads the deployment from the Exchange (the breaker or the selector put it
there), lets the backend's adapter shape the request, sends it with the one pooled
client and relays the answer: JSON whole, SSE event by event as it arrives.  A
failure is recorded on the Exchange as an :class:`Attempt` and answered with an
OpenAI-style error, so the breaker around it can decide to try another backend.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping

from starlette.types import Receive, Scope, Send

from adapters import Adapter, UnsupportedRequest, get_adapter

from .client import OutboundClient, Timeouts, Upstream, UpstreamError
from .errors import BackendFailure, send_error, send_json
from .exchange import Attempt, Exchange, ensure_exchange
from .observe import tracing
from .registry import BackendSpec, ModelSpec, Registry
from .relay import StreamBroken, StreamRelay
from .settings import Settings
from .sse import error_event
from .wire import read_usage

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
MAX_ERROR_BODY = 64 * 1024
_CONTEXT_LENGTH = re.compile(
    r"context[ _]length|context window|maximum context|too many tokens|prompt is too long", re.I
)


class Forwarder:
    """Terminal app of the stack: one instance per process, shared by all requests."""

    def __init__(
        self,
        registry: Registry,
        client: OutboundClient,
        settings: Settings,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        import os

        env = os.environ if environ is None else environ
        self.registry = registry
        self.client = client
        self.settings = settings
        self.adapters: dict[str, Adapter] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.timeouts: dict[str, Timeouts] = {}
        for name, backend in registry.backends.items():
            adapter = get_adapter(backend.adapter)
            self.adapters[name] = adapter
            self.headers[name] = adapter.static_headers(backend, env)
            self.timeouts[name] = Timeouts.of(backend, settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange, receive = await ensure_exchange(scope, receive, self.settings.max_body_bytes)
        model = exchange.model or self._default_model(exchange)
        if model is None:
            await send_error(
                send,
                404,
                f"The model '{exchange.requested_model}' does not exist.",
                "model_not_found",
            )
            return
        exchange.model = model
        backend = self.registry.backends[model.backend]
        exchange.response_headers["x-optiroute-model"] = model.name
        exchange.response_headers["x-optiroute-backend"] = backend.name
        try:
            try:
                if exchange.stream:
                    await self._stream(exchange, model, backend, receive, send)
                else:
                    await self._json(exchange, model, backend, send)
            except TimeoutError:  # the total deadline
                raise BackendFailure(
                    "timeout", 504, f"Backend '{backend.name}' timed out."
                ) from None
        except BackendFailure as failure:
            exchange.attempts.append(
                Attempt(
                    model.name, backend.name, failure.outcome, failure.status, failure.retry_after
                )
            )
            headers = []
            if failure.retry_after is not None:
                headers.append((b"retry-after", str(math.ceil(failure.retry_after)).encode()))
            await send_error(
                send, failure.status, failure.message, failure.outcome, headers=headers
            )

    def _default_model(self, exchange: Exchange) -> ModelSpec | None:
        found = self.registry.find(exchange.requested_model)
        return found[0] if found else (self.registry.models[0] if self.registry.models else None)

    async def _open(
        self, exchange: Exchange, model: ModelSpec, backend: BackendSpec, extra: dict[str, object]
    ) -> Upstream:
        adapter = self.adapters[backend.name]
        body = exchange.body_for(model.upstream_name, extra or None)
        try:
            outbound = adapter.prepare(backend, self.headers[backend.name], exchange.path, body)
        except UnsupportedRequest as exc:
            # this backend family cannot serve it (e.g. embeddings on Anthropic): the
            # breaker moves on to another candidate, and the caller sees a 400 if none can
            raise BackendFailure("http_404", 400, f"Backend '{backend.name}': {exc}.") from None
        headers = {**outbound.headers, "x-request-id": exchange.request_id}
        if tracing.ACTIVE:  # OPTIROUTE_OTEL=on: traceparent for the backend's span
            tracing.inject(headers)
        started = time.perf_counter()
        try:
            timeouts = self.timeouts[backend.name]
            response = await self.client.send(
                outbound.method, outbound.url, headers, outbound.content, timeouts
            )
            if response.status >= 400:
                await self._fail_from_status(response, backend, adapter)
        except UpstreamError as exc:
            if exc.kind == "timeout":
                raise BackendFailure(
                    "timeout", 504, f"Backend '{backend.name}' timed out."
                ) from None
            raise BackendFailure(
                "connect", 502, f"Backend '{backend.name}' is unreachable ({exc})."
            ) from None
        finally:
            # time waiting on the backend is not the gateway's overhead
            exchange.backend_seconds += time.perf_counter() - started
        return response

    async def _fail_from_status(
        self, response: Upstream, backend: BackendSpec, adapter: Adapter
    ) -> None:
        status = response.status
        body = b""
        try:
            while len(body) <= MAX_ERROR_BODY and (chunk := await response.next_chunk()):
                body += chunk
        except UpstreamError:
            pass  # the status alone says enough
        finally:
            await response.aclose()
        detail = adapter.error_message(status, body)
        retry_after = _retry_after(response.header("retry-after"))
        if status in (400, 413, 422) and _CONTEXT_LENGTH.search(detail):
            raise BackendFailure("context_length", status, detail)
        if status in (400, 404, 413, 422):
            raise BackendFailure(f"http_{status}", status, detail)
        if status in (401, 403):
            # the gateway's own credentials were refused: not the caller's fault
            raise BackendFailure(
                f"http_{status}",
                502,
                f"Backend '{backend.name}' refused the gateway's credentials.",
            )
        if status == 429:
            raise BackendFailure(
                "http_429", 429, f"Backend '{backend.name}' is rate limited: {detail}", retry_after
            )
        shown = status if status in (502, 503, 504) else 502
        raise BackendFailure(
            f"http_{status}",
            shown,
            f"Backend '{backend.name}' failed with HTTP {status}: {detail}",
            retry_after,
        )

    async def _json(
        self, exchange: Exchange, model: ModelSpec, backend: BackendSpec, send: Send
    ) -> None:
        async with asyncio.timeout(
            min(backend.total_timeout_s or math.inf, self._time_left(exchange))
        ):
            response = await self._open(exchange, model, backend, {})
            started = time.perf_counter()
            try:
                body = await response.read()
            except UpstreamError:
                raise BackendFailure(
                    "read", 502, f"Backend '{backend.name}' broke off its answer."
                ) from None
            finally:
                await response.aclose()
        exchange.backend_seconds += time.perf_counter() - started
        body = self.adapters[backend.name].translate_response(body)
        answer = read_usage(body)
        if answer is None:
            raise BackendFailure("malformed", 502, f"Backend '{backend.name}' sent malformed JSON.")
        if answer.usage is not None:
            exchange.account(answer.usage.prompt_tokens, answer.usage.completion_tokens)
        else:
            exchange.account_estimate(completion_chars=len(body) // 2)
        exchange.response_model = answer.model
        exchange.attempts.append(Attempt(model.name, backend.name, "ok", 200))
        await send_json(send, 200, body)

    async def _stream(
        self,
        exchange: Exchange,
        model: ModelSpec,
        backend: BackendSpec,
        receive: Receive,
        send: Send,
    ) -> None:
        # Ask for usage even when the caller did not, to know the cost; the extra
        # usage chunk is then kept from the caller.
        strip_usage = not exchange.request.include_usage
        extra: dict[str, object] = (
            {"stream_options": {"include_usage": True}} if strip_usage else {}
        )
        if exchange.continuation is not None:
            extra["messages"] = continued_messages(exchange)
        read_s = backend.read_timeout_s or self.settings.read_timeout_s
        ttft_s = self.settings.ttft_timeout_s or read_s
        idle_s = self.settings.idle_timeout_s or read_s
        started = time.perf_counter()
        try:
            async with asyncio.timeout(min(ttft_s, self._time_left(exchange))):
                response = await self._open(exchange, model, backend, extra)
        except TimeoutError:
            raise BackendFailure(
                "ttft_timeout", 504, f"Backend '{backend.name}' sent nothing in {ttft_s:g} s."
            ) from None
        ttft_s -= time.perf_counter() - started
        try:
            relay = StreamRelay(
                exchange,
                response,
                self.adapters[backend.name].stream_translator(),
                strip_usage=strip_usage,
                idle_s=idle_s,
                read_s=read_s,
            )
            first = await relay.start(max(0.001, min(ttft_s, self._time_left(exchange))))
            exchange.attempts.append(Attempt(model.name, backend.name, "ok", 200))
            if exchange.continuation is None:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": list(SSE_HEADERS)}
                )
            broken = False
            watch = DisconnectWatch(receive)
            try:
                async with asyncio.timeout(self._time_left(exchange)):
                    await relay.pump(send, first)
            except (StreamBroken, TimeoutError):
                broken = True
            except asyncio.CancelledError:
                if not watch.ended_relay():
                    raise
            finally:
                watch.close()
            relay.finish_estimate()
            if broken:
                exchange.attempts[-1].outcome = "stream_broken"
                exchange.attempts[-1].status = 502
                exchange.continuation = relay.continuation()
                if not exchange.keep_stream_open:
                    await self.end_broken_stream(exchange, send)
        finally:
            await response.aclose()

    def _time_left(self, exchange: Exchange) -> float:
        total = self.settings.total_timeout_s
        if exchange.deadline is None:
            return total
        return max(0.001, min(total, exchange.deadline - time.perf_counter()))

    @staticmethod
    async def end_broken_stream(exchange: Exchange, send: Send) -> None:
        """Never a truncated stream that looks complete: say what happened, then end."""
        exchange.status = 502
        message = "The backend's stream broke off before it was complete."
        await send({"type": "http.response.body", "body": error_event(message), "more_body": False})


def continued_messages(exchange: Exchange) -> list[object]:
    """The conversation with the partial answer, and a request to carry on from it."""
    assert exchange.continuation is not None
    messages = list(exchange.raw().get("messages", []))
    messages.append({"role": "assistant", "content": exchange.continuation.text})
    messages.append({"role": "user", "content": CONTINUE_PROMPT})
    return messages


CONTINUE_PROMPT = (
    "Your previous answer was cut off. Continue it exactly where it stopped, without "
    "repeating anything and without any preamble."
)


class DisconnectWatch:
    """Stops the relay when the client goes away: a task that cancels the relaying one.

    (A task group did the same at about 70 µs a stream; this is one task.)
    """

    def __init__(self, receive: Receive) -> None:
        self.relaying = asyncio.current_task()
        self.gone = False
        self._watcher: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._watch(receive)
        )

    async def _watch(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:  # a broken receive is no reason to stop a stream
            return
        self.gone = True
        if self.relaying is not None:
            self.relaying.cancel()

    def ended_relay(self) -> bool:
        """True if a CancelledError is this watch's own doing (and now taken back)."""
        if not self.gone or self.relaying is None:
            return False
        return self.relaying.uncancel() == 0  # else someone else cancelled too: let it go

    def close(self) -> None:
        # let go of the task: a cancelled task keeps its CancelledError, whose traceback
        # holds the watch's frame, hence this object and (through it) the task again, a
        # cycle that held each stream's call for the cyclic collector (~32 objects)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
