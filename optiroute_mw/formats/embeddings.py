"""``POST /v1/embeddings``: forwarded to the named model's backend, exact-cached.

Embeddings take a short path of their own rather than the chat pipeline: vectors
from two models are not interchangeable, so there is nothing to classify or to
route by price.  The model is the one the caller names (or its alias), tried on
each of its deployments in turn when one fails (connect errors, timeouts, 429, 5xx).
The answer is cached under SHA-256 of the canonical request in the gateway's cache
store.  Backends are always asked for floats, and the cache keeps floats:
``encoding_format: base64`` (the openai SDK's default) is encoded here, so both
formats share one entry and backends without base64 support (Ollama) still serve it.
"""

from __future__ import annotations

import base64
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import msgspec
import structlog
from starlette.types import Receive, Scope, Send

from adapters import Adapter, UnsupportedRequest, get_adapter

from ..cache.keys import exact_key
from ..cache.store import CacheStore
from ..client import OutboundClient, Timeouts, UpstreamError
from ..errors import send_error, send_json
from ..exchange import ClientDisconnected, header, new_request_id, read_body
from ..ingress.controls import clean_request_id
from ..registry import ModelSpec, Registry
from ..settings import Settings
from ..wire import RequestError, encode

logger = structlog.get_logger("optiroute_mw.request")
# worth the next deployment: the backend, not the request, was the problem
RETRYABLE = frozenset({401, 403, 404, 408, 429, 500, 502, 503, 504, 529})


class EmbeddingRequest(msgspec.Struct):
    model: str
    # text, texts, token ids or lists of token ids: the backend judges the details
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"


class Vector(msgspec.Struct):
    embedding: list[float]


class EmbeddingAnswer(msgspec.Struct):
    data: list[Vector]
    usage: dict[str, int] = {}


# who is calling: the ingress stage's identification (an API key, the host app's resolver);
# it answers something with an ``id`` (the tenant) or raises a RequestError (401)
Identify = Callable[[Scope], Awaitable[Any]]

_request_decoder = msgspec.json.Decoder(EmbeddingRequest)
_answer_decoder = msgspec.json.Decoder(EmbeddingAnswer)


class EmbeddingsEndpoint:
    def __init__(
        self,
        registry: Registry,
        client: OutboundClient,
        settings: Settings,
        store: CacheStore | None = None,
        environ: Mapping[str, str] | None = None,
        identify: Identify | None = None,
    ) -> None:
        import os

        env = os.environ if environ is None else environ
        self.registry = registry
        self.client = client
        self.settings = settings
        self.store = store if settings.cache else None
        self.identify = identify
        self.adapters: dict[str, Adapter] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.timeouts: dict[str, Timeouts] = {}
        for name, backend in registry.backends.items():
            self.adapters[name] = get_adapter(backend.adapter)
            self.headers[name] = self.adapters[name].static_headers(backend, env)
            self.timeouts[name] = Timeouts.of(backend, settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = clean_request_id(header(scope, b"x-request-id")) or new_request_id()
        answer = Answer(request_id)
        try:
            tenant = await self.identify(scope) if self.identify is not None else None
            body = await read_body(receive, self.settings.max_body_bytes)
            await self._handle(scope, body, str(getattr(tenant, "id", "default")), answer)
        except ClientDisconnected:
            return
        except RequestError as exc:
            answer.error(exc.status, exc.message, exc.code, exc.param)
            answer.extra = list(getattr(exc, "headers", None) or [])
        await answer.send_to(send)
        logger.info(
            "request",
            request_id=request_id,
            route="embeddings",
            model=answer.headers.get("x-optiroute-model"),
            backend=answer.headers.get("x-optiroute-backend"),
            cache=answer.headers.get("x-optiroute-cache"),
            status=answer.status,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    async def _handle(self, scope: Scope, body: bytes, tenant: str, answer: Answer) -> None:
        try:
            request = _request_decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise RequestError(f"Invalid request: {exc}", code="invalid_type") from None
        except msgspec.DecodeError as exc:
            message = f"We could not parse the JSON body of your request: {exc}"
            raise RequestError(message, code="invalid_json") from None
        models = self.registry.find(request.model)
        if not models:
            raise RequestError(
                f"The model '{request.model}' does not exist.",
                status=404,
                code="model_not_found",
                param="model",
            )
        raw = msgspec.json.decode(body)
        raw.pop("encoding_format", None)  # floats from the backend, encoded here if asked
        control = _cache_control(scope)
        # keyed by the model itself, so its aliases share entries
        key = exact_key(tenant, "embeddings", {**raw, "model": models[0].name})
        cached = await self._lookup(key) if control == "use" else None
        if cached is not None:
            answer.ok(cached, request.encoding_format, "hit-exact", models[0].name, "cache")
            return
        floats = await self._forward(models, raw, answer)
        if floats is None:
            return
        if self.store is not None and control != "bypass":
            await self._store(key, floats)
        answer.ok(floats, request.encoding_format, "bypass" if control == "bypass" else "miss")

    async def _forward(
        self, models: list[ModelSpec], raw: dict[str, Any], answer: Answer
    ) -> bytes | None:
        failure: tuple[int, str, str | None] = (502, "No backend could serve it.", "backend_error")
        for model in models:
            backend = self.registry.backends[model.backend]
            adapter = self.adapters[backend.name]
            try:
                outbound = adapter.prepare(
                    backend,
                    self.headers[backend.name],
                    "/v1/embeddings",
                    encode({**raw, "model": model.upstream_name}),
                )
            except UnsupportedRequest as exc:
                failure = (400, f"Backend '{backend.name}': {exc}.", "unsupported")
                continue
            try:
                response = await self.client.send(
                    outbound.method,
                    outbound.url,
                    {**outbound.headers, "x-request-id": answer.request_id},
                    outbound.content,
                    self.timeouts[backend.name],
                )
                try:
                    content = await response.read()
                finally:
                    await response.aclose()
            except UpstreamError as exc:
                failure = (502, f"Backend '{backend.name}' failed ({exc}).", None)
                continue
            if response.status != 200:
                message = adapter.error_message(response.status, content)
                failure = (_shown(response.status), message, f"http_{response.status}")
                if response.status in RETRYABLE:
                    continue
                break
            floats = adapter.translate_response(content)
            try:
                decoded = _answer_decoder.decode(floats)
            except msgspec.MsgspecError:
                failure = (502, f"Backend '{backend.name}' sent a malformed answer.", "malformed")
                continue
            answer.headers["x-optiroute-model"] = model.name
            answer.headers["x-optiroute-backend"] = backend.name
            tokens = decoded.usage.get("prompt_tokens", 0)
            answer.headers["x-optiroute-cost"] = f"{model.cost(tokens, 0):.8f}"
            return floats
        answer.error(*failure)
        return None

    async def _lookup(self, key: str) -> bytes | None:
        if self.store is None:
            return None
        try:
            return await self.store.get(key)
        except Exception as exc:  # a side system: fail open
            logger.warning("cache_lookup_failed", error=type(exc).__name__)
            return None

    async def _store(self, key: str, value: bytes) -> None:
        if self.store is None or len(value) > self.settings.cache_max_entry_bytes:
            return
        try:
            await self.store.set(key, value, self.settings.cache_ttl_s)
        except Exception as exc:
            logger.warning("cache_store_failed", error=type(exc).__name__)


class Answer:
    """What goes back: status, body and the ``x-optiroute-*`` headers."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.status = 200
        self.body = b""
        self.headers: dict[str, str] = {}
        self.failure: tuple[int, str, str | None, str | None] | None = None
        self.extra: list[tuple[bytes, bytes]] = []  # a refusal's own headers (Retry-After)

    def ok(
        self,
        floats: bytes,
        encoding: str,
        cache: str,
        model: str | None = None,
        backend: str | None = None,
    ) -> None:
        self.body = floats if encoding == "float" else as_base64(floats)
        self.headers["x-optiroute-cache"] = cache
        if model is not None and backend is not None:
            self.headers["x-optiroute-model"] = model
            self.headers["x-optiroute-backend"] = backend
            self.headers["x-optiroute-cost"] = "0.00000000"

    def error(
        self, status: int, message: str, code: str | None = None, param: str | None = None
    ) -> None:
        self.status = status
        self.failure = (status, message, code, param)

    async def send_to(self, send: Send) -> None:
        headers = [(b"x-request-id", self.request_id.encode())]
        headers += [(k.encode(), v.encode()) for k, v in self.headers.items()]
        headers += self.extra
        if self.failure is not None:
            status, message, code, param = self.failure
            await send_error(send, status, message, code, param=param, headers=headers)
        else:
            await send_json(send, 200, self.body, headers)


def as_base64(floats: bytes) -> bytes:
    """OpenAI's ``encoding_format: base64``: each vector as little-endian float32 bytes."""
    answer = msgspec.json.decode(floats)
    for item in answer.get("data", []):
        values = array("f", item.get("embedding") or [])
        if sys.byteorder != "little":
            values.byteswap()
        item["embedding"] = base64.b64encode(values.tobytes()).decode()
    return encode(answer)


def _cache_control(scope: Scope) -> str:
    value = (header(scope, b"x-optiroute-cache") or "").lower()
    if value in ("use", "bypass", "refresh"):
        return value
    cache_control = (header(scope, b"cache-control") or "").lower()
    return (
        "bypass"
        if "no-store" in cache_control
        else "refresh"
        if "no-cache" in cache_control
        else "use"
    )


def _shown(status: int) -> int:
    """The backend's refusal of the request is the caller's; its own failure is a 502."""
    if status in (400, 404, 413, 422, 429):
        return status
    return status if status in (502, 503, 504) else 502
