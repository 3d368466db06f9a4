"""Relaying one backend SSE stream to the client, event by event.

Nothing reaches the client until the backend's first event has arrived, so a
backend that is slow to start (time to first token) or fails before its first
event can still be replaced.  After that, each gap between events is bounded, and
the content sent so far is tracked: if the stream breaks, the breaker can ask
another deployment to continue it (see :class:`~optiroute_mw.exchange.Continuation`),
and the continuation's chunks are stitched in under the original id.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from starlette.types import Send

from adapters.base import StreamTranslator

from .client import Upstream, UpstreamError
from .errors import BackendFailure
from .exchange import Continuation, Exchange
from .sse import DONE, EventSplitter, data_event, event_data
from .wire import ChatCompletionChunk

_chunk_decoder = msgspec.json.Decoder(ChatCompletionChunk)
_encoder = msgspec.json.Encoder()


class StreamBroken(Exception):
    """The stream failed after content reached the client."""


class StreamRelay:
    def __init__(
        self,
        exchange: Exchange,
        response: Upstream,
        translator: StreamTranslator | None,
        *,
        strip_usage: bool,
        idle_s: float,
        read_s: float,
    ) -> None:
        self.exchange = exchange
        self.response = response
        self.translator = translator
        self.strip_usage = strip_usage
        self.idle_s = idle_s
        # the engine bounds every read by read_s itself: a timer of our own per event
        # (~4 µs each) is needed only for a shorter idle limit
        self.idle_timer = idle_s < read_s
        self.splitter = EventSplitter()
        self.done = False
        self.text: list[str] = []
        self.head: ChatCompletionChunk | None = None
        self.before = exchange.continuation  # set when this stream continues another
        self.prompt_tokens = self.before.prompt_tokens if self.before else 0
        self.completion_tokens = self.before.completion_tokens if self.before else 0
        self.usage_seen = False

    async def _read(self) -> list[bytes]:
        """The next complete events ([] at the end of the body)."""
        while True:
            data = await self.response.next_chunk()
            if not data:
                if self.translator is None:
                    return []
                # a translator may hold a last event until it knows the body has ended
                data, self.translator = self.translator.close(), None
                return self.splitter.feed(data)
            if self.translator is not None:
                data = self.translator.feed(data)
            events = self.splitter.feed(data)
            if events:
                return events

    async def start(self, ttft_s: float) -> list[bytes]:
        """The first events worth sending, within the time-to-first-token limit.

        Reads on until something the client should see has arrived (a continuation's
        role chunk alone is not), so any failure until then is a BackendFailure that
        another candidate can make good.
        """
        backend = self.exchange.model.backend if self.exchange.model else "backend"
        kept: list[bytes] = []
        try:
            async with asyncio.timeout(ttft_s):
                while not kept and not self.done:
                    events = await self._read()
                    if not events:
                        raise BackendFailure(
                            "read", 502, f"Backend '{backend}' ended its stream at once."
                        )
                    kept = self._filter(events)
        except TimeoutError:
            raise BackendFailure(
                "ttft_timeout", 504, f"Backend '{backend}' sent nothing in {ttft_s:g} s."
            ) from None
        except UpstreamError:
            raise BackendFailure(
                "read", 502, f"Backend '{backend}' broke off its stream."
            ) from None
        except StreamBroken:
            # content and an error came before anything reached the client: another
            # candidate may still answer
            raise BackendFailure(
                "stream_error", 502, f"Backend '{backend}' reported an error."
            ) from None
        if self.head is None:
            raise BackendFailure("malformed", 502, f"Backend '{backend}' sent a malformed stream.")
        return kept

    async def pump(self, send: Send, first: list[bytes]) -> None:
        """Send ``first`` and the rest; raise StreamBroken if the stream fails midway.

        Each read's events go out as they arrive; those of the read that brings
        ``[DONE]`` go out with it in one message (a whole short answer is often one read).
        """
        pending = first
        try:
            while not self.done:
                if pending:
                    body = b"".join(pending)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    pending = []
                if self.idle_timer:
                    async with asyncio.timeout(self.idle_s):
                        events = await self._read()
                else:
                    events = await self._read()
                if not events:
                    break
                pending = self._filter(events)
        except (UpstreamError, TimeoutError):
            raise StreamBroken from None
        if not self.done:
            raise StreamBroken  # ended without [DONE]: never let it look complete
        pending.append(DONE)
        await send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})

    def _filter(self, events: list[bytes]) -> list[bytes]:
        """Track content and usage; drop what the caller must not see."""
        out: list[bytes] = []
        for event in events:
            if event == DONE:
                self.done = True
                continue  # sent by pump() once the stream is known to be whole
            payload = event_data(event)
            if payload is None:
                continue
            try:
                chunk = _chunk_decoder.decode(payload)
            except msgspec.MsgspecError:
                if self.head is None:  # nothing sent yet: another backend can still answer
                    raise BackendFailure(
                        "malformed", 502, "Backend sent a malformed stream."
                    ) from None
                raise StreamBroken from None
            if b'"error"' in payload and "error" in msgspec.json.decode(payload):
                if self.head is None:
                    raise BackendFailure("stream_error", 502, "Backend reported an error.")
                raise StreamBroken
            self.head = self.head or chunk
            if chunk.usage is not None:
                self.usage_seen = True
                self.exchange.account(
                    self.prompt_tokens + chunk.usage.prompt_tokens,
                    self.completion_tokens + chunk.usage.completion_tokens,
                )
                if self.strip_usage and not chunk.choices:
                    continue
            for choice in chunk.choices:
                if choice.delta.content:
                    self.text.append(choice.delta.content)
            if self.before is not None:
                event = self._stitch(chunk)
                if not event:
                    continue
            out.append(event)
        return out

    def _stitch(self, chunk: ChatCompletionChunk) -> bytes:
        """A continuation chunk under the original stream's id; its role chunk dropped."""
        before = self.before
        assert before is not None
        if chunk.choices and all(
            c.delta.role and not c.delta.content and not c.finish_reason for c in chunk.choices
        ):
            return b""
        chunk.id, chunk.created, chunk.model = before.id, before.created, before.model
        return data_event(_encoder.encode(chunk))

    def continuation(self) -> Continuation:
        """What the client has received so far, for the next deployment to carry on."""
        head = self.head
        before = self.before
        text = (before.text if before else "") + "".join(self.text)
        return Continuation(
            id=before.id if before else (head.id if head else ""),
            created=before.created if before else (head.created if head else int(time.time())),
            model=before.model if before else (head.model if head else ""),
            text=text,
            prompt_tokens=self.exchange.prompt_tokens,
            completion_tokens=self.exchange.completion_tokens,
        )

    def finish_estimate(self) -> None:
        if not self.usage_seen:
            self.exchange.account_estimate(sum(len(t) for t in self.text))
