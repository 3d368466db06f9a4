"""The one log line per request, on a fast path when the output is JSON.

Through structlog's bound logger and processor chain the line cost about 27 µs of
CPU per call, the largest single item of the gateway's own overhead.  When
:func:`~optiroute_mw.observe.logging.configure` set up JSON output, the line is a
msgspec Struct encoded straight to the same stream instead: the same keys in the
same order, the same timestamp format, the caller-supplied fields (request id,
requested model, prompt excerpt) masked by the same secret patterns.  Anything
else (console rendering, a test's ``capture_logs``, context variables bound by a
host app) goes through structlog as every other event does.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import msgspec
import structlog

from ..exchange import Exchange
from ..settings import Settings

PROMPT_LOG_CHARS = 500


class RequestLine(msgspec.Struct, kw_only=True):
    """The line's fields, in the order they are written."""

    request_id: str
    tenant: str
    route: str
    requested_model: str
    model: str | None
    backend: str | None
    tier: str | None
    mode: str
    cache: str
    stream: bool
    status: int
    attempts: int
    latency_ms: float
    overhead_ms: float
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool
    cost_usd: float
    baseline_cost_usd: float
    prompt: str | msgspec.UnsetType = msgspec.UNSET
    prompt_chars: int | msgspec.UnsetType = msgspec.UNSET
    event: str
    level: str
    timestamp: str


def request_line(exchange: Exchange, settings: Settings, duration_s: float) -> RequestLine:
    model = exchange.model
    classification = exchange.classification
    line = RequestLine(
        request_id=exchange.request_id,
        tenant=exchange.tenant,
        route=exchange.kind,
        requested_model=exchange.requested_model,
        model=model.name if model else None,
        backend=model.backend if model else None,
        tier=classification.tier if classification else None,
        mode=exchange.mode,
        cache=exchange.cache_status,
        stream=exchange.stream,
        status=exchange.status,
        attempts=len(exchange.attempts),
        latency_ms=round(duration_s * 1000, 3),
        overhead_ms=round(exchange.overhead_seconds() * 1000, 3),
        prompt_tokens=exchange.prompt_tokens,
        completion_tokens=exchange.completion_tokens,
        usage_estimated=exchange.usage_estimated,
        cost_usd=round(exchange.cost_usd, 8),
        baseline_cost_usd=round(exchange.baseline_cost_usd, 8),
        event="request",
        level="info",
        timestamp="",  # set as it is written
    )
    if settings.log_prompts:  # OPTIROUTE_LOG_PROMPTS: an excerpt of the last user turn
        limit = getattr(settings, "log_prompts_chars", PROMPT_LOG_CHARS)
        text = exchange.request.last_user_text()
        if len(text) <= limit:
            line.prompt = text
        else:
            line.prompt, line.prompt_chars = text[:limit] + "…", len(text)
    return line


class JsonLines:
    """structlog's last processor for JSON output, and the request line's writer."""

    def __init__(
        self,
        stream: TextIO,
        level: int,
        encoder: msgspec.json.Encoder,
        mask: Callable[[str], str],
    ) -> None:
        self.stream = stream
        self.request_lines = level <= logging.INFO
        self.encoder = encoder
        self.mask = mask  # the redaction patterns every other log line goes through
        self._lock = threading.Lock()  # the batch: another thread's loop may log too
        self._second = -1
        self._prefix = ""
        self._pending: list[str] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None  # loop a flush waits on

    def __call__(self, _: Any, __: str, event: Mapping[str, Any]) -> str:
        return self.encoder.encode(event).decode()

    def timestamp(self) -> str:
        """As structlog's ``TimeStamper(fmt="iso", utc=True)``, the date part kept a second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self._prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"

    def write(self, line: RequestLine) -> None:
        mask = self.mask
        line.request_id = mask(line.request_id)
        line.requested_model = mask(line.requested_model)
        if isinstance(line.prompt, str):
            line.prompt = mask(line.prompt)
        line.timestamp = self.timestamp()
        text = self.encoder.encode(line).decode()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._pending.append(text)
            # one write for every line finished in this turn of the event loop: a system
            # call per line cost ~13 µs on a loaded sidecar; a line waits a turn at most
            schedule = loop is not None and self._flush_on is not loop
            if schedule:
                self._flush_on = loop
        if loop is None:
            self.flush()
        elif schedule:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self._lock:
            lines, self._pending, self._flush_on = self._pending, [], None
            if lines:
                lines.append("")
                self.stream.write("\n".join(lines))
                self.stream.flush()


def _json_lines() -> JsonLines | None:
    processors = structlog.get_config()["processors"]
    sink = processors[-1] if processors else None
    return sink if isinstance(sink, JsonLines) else None


def flush_request_lines() -> None:
    """Write request lines still waiting for their turn of the loop (at shutdown)."""
    sink = _json_lines()
    if sink is not None:
        sink.flush()


def log_request(line: RequestLine, logger: Any) -> None:
    """Write the line: the fast path when JSON output is configured, else structlog."""
    sink = _json_lines()
    if sink is not None and not structlog.contextvars.get_contextvars():
        if sink.request_lines:
            sink.write(line)
        return
    fields = msgspec.structs.asdict(line)
    for name in ("event", "level", "timestamp"):
        del fields[name]
    for name in ("prompt", "prompt_chars"):
        if fields[name] is msgspec.UNSET:
            del fields[name]
    logger.info("request", **fields)
