"""The Exchange: the one per-request object the stages share.

It lives at ``scope["state"]["optiroute"]``.  A stage reads what earlier stages
wrote and adds its own; nothing else travels between stages.  Whichever stage
runs first parses the request (see :func:`ensure_exchange`), so each stage also
works on its own.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Receive, Scope

from .registry import ModelSpec
from .wire import LLMRequest, RequestError, decode_object, encode, parse_request

if TYPE_CHECKING:  # numpy is an optional dependency (the semantic extra)
    from .embedding import Vector

STATE_KEY = "optiroute"
ROUTE_KINDS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


@dataclass(slots=True)
class Classification:
    tier: str
    score: float
    features: dict[str, float] = field(default_factory=dict)
    source: str = "rules"


@dataclass(slots=True)
class Selection:
    primary: ModelSpec
    fallbacks: list[ModelSpec]
    reason: str

    @property
    def candidates(self) -> list[ModelSpec]:
        return [self.primary, *self.fallbacks]


@dataclass(slots=True)
class Attempt:
    model: str
    backend: str
    outcome: str  # "ok", "http_503", "timeout", "connect", "open_circuit", ...
    status: int
    retry_after_s: float | None = None


@dataclass(slots=True)
class Continuation:
    """A stream that broke after content reached the client, to be carried on."""

    id: str
    created: int
    model: str
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Exchange:
    request_id: str
    kind: str  # "chat" or "completions"
    path: str
    body: bytes
    request: LLMRequest
    started: float = field(default_factory=time.perf_counter)
    # caller identity and preferences (ingress)
    tenant: str = "default"
    mode: str = "balanced"
    cache_control: str = "use"  # use | bypass | refresh
    pinned_model: str | None = None
    max_cost_usd: float | None = None
    max_latency_s: float | None = None  # x-optiroute-max-latency-ms, read by select
    # decisions
    classification: Classification | None = None
    selection: Selection | None = None
    model: ModelSpec | None = None  # the deployment being tried or that answered
    attempts: list[Attempt] = field(default_factory=list)
    cache_status: str = "off"
    # outcome
    status: int = 0
    response_model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    baseline_price: tuple[float, float] | None = None  # USD / 1M tokens, in and out
    backend_seconds: float = 0.0  # time spent waiting on backends: excluded from overhead
    first_byte_at: float | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    # resilience: the request's deadline, a broken stream to continue, and whether the
    # forward stage may leave a broken stream open for the breaker to continue
    deadline: float | None = None
    continuation: Continuation | None = None
    keep_stream_open: bool = False
    # the last user message's embedding, computed once and shared (the semantic cache's
    # lookup and store): reuse it only for the text in embedding_text
    embedding: Vector | None = None
    embedding_text: str | None = None
    _raw: dict[str, Any] | None = None

    @property
    def requested_model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return self.request.stream

    def raw(self) -> dict[str, Any]:
        """The body as a plain dict, unknown fields included (decoded on first use)."""
        if self._raw is None:
            self._raw = decode_object(self.body)
        return self._raw

    def body_for(self, upstream_model: str, extra: dict[str, Any] | None = None) -> bytes:
        """The body to send on: unchanged bytes when nothing differs."""
        if upstream_model == self.request.model and not extra:
            return self.body
        raw = dict(self.raw())
        raw["model"] = upstream_model
        if extra:
            raw.update(extra)
        return encode(raw)

    def account(self, prompt_tokens: int, completion_tokens: int, estimated: bool = False) -> None:
        """Record usage and price it: the chosen model's cost and the baseline's."""
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.usage_estimated = estimated
        self.cost_usd = self.model.cost(prompt_tokens, completion_tokens) if self.model else 0.0
        self.baseline_cost_usd = self.baseline_cost(prompt_tokens, completion_tokens)

    def account_estimate(self, completion_chars: int) -> None:
        """No usage from the backend: about four characters a token, marked estimated."""
        self.account(estimate_tokens(self.request.prompt_text()), completion_chars // 4, True)

    def baseline_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        if self.baseline_price is None:
            return 0.0
        price_in, price_out = self.baseline_price
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6

    def overhead_seconds(self, now: float | None = None) -> float:
        end = (
            self.first_byte_at
            if now is None and self.first_byte_at
            else (now or time.perf_counter())
        )
        return max(0.0, end - self.started - self.backend_seconds)

    def receive_replay(self, receive: Receive, body: bytes | None = None) -> Receive:
        """A receive that yields the (possibly rewritten) body once, then defers."""
        return BodyReplay(body if body is not None else self.body, receive)


class BodyReplay:
    """Replays a request body already read, then hands over to the server's receive."""

    __slots__ = ("body", "inner")

    def __init__(self, body: bytes, receive: Receive) -> None:
        self.body: bytes | None = body
        # replaying a replay would hand out the body twice: wrap the original
        self.inner: Receive = receive.inner if isinstance(receive, BodyReplay) else receive

    async def __call__(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self.inner()


def new_request_id() -> str:
    """32 random hex digits, as ``uuid4().hex`` but without a system call per request.

    An id needs to be unique, not secret: the module's generator (seeded from the OS,
    and reseeded in a forked child) does, at a fraction of ``os.urandom``'s cost.
    """
    return f"{random.getrandbits(128):032x}"


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def get_exchange(scope: Scope) -> Exchange | None:
    state = scope.get("state")
    return state.get(STATE_KEY) if state else None


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(
                f"Request body exceeds the limit of {limit} bytes.",
                status=413,
                code="request_too_large",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ClientDisconnected(Exception):
    """The client went away before sending its whole request."""


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def ensure_exchange(
    scope: Scope,
    receive: Receive,
    max_body_bytes: int = 4 * 1024 * 1024,
    request_id: str | None = None,
) -> tuple[Exchange, Receive]:
    """The request's Exchange and the receive to pass on.

    ``request_id`` is the caller's (ingress cleans and keeps it); without one the
    ``x-request-id`` header or a new id is used.

    When no stage has parsed the request yet, it is parsed here and the receive
    returned replays the body; otherwise both come back as they were.
    """
    exchange = get_exchange(scope)
    if exchange is not None:
        return exchange, receive
    path: str = scope["path"]
    kind = ROUTE_KINDS.get(path.rstrip("/"), "chat")
    length = header(scope, b"content-length")
    if length and length.isdigit() and int(length) > max_body_bytes:
        raise RequestError(
            f"Request body exceeds the limit of {max_body_bytes} bytes.",
            status=413,
            code="request_too_large",
        )
    body = await read_body(receive, max_body_bytes)
    request = parse_request(kind, body)
    exchange = Exchange(
        request_id=request_id or header(scope, b"x-request-id") or new_request_id(),
        kind=kind,
        path=path,
        body=body,
        request=request,
    )
    scope.setdefault("state", {})[STATE_KEY] = exchange
    return exchange, exchange.receive_replay(receive)
