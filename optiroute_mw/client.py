"""The one pooled outbound HTTP client of a process.

Two engines behind one small interface, chosen by ``OPTIROUTE_HTTP_ENGINE``:

* ``aiohttp`` (default): aiohttp's own ``ClientSession``.  ``bench/overhead.py``
  measured httpx's request/response models on top of aiohttp (httpx-aiohttp) at
  about 250 µs of CPU per call, more than the whole rest of the stack, so the hot
  path talks to aiohttp directly;
* ``httpx``: httpx's ``AsyncClient`` with its own pool, for hosts that want it.

Either way the caller sees an :class:`Upstream` (status, headers, body or chunks)
and one exception, :class:`UpstreamError`, whose ``kind`` says what went wrong.
The session is made on first use inside the running loop and closed on shutdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from .settings import Settings

if TYPE_CHECKING:
    import aiohttp
    import httpx
    import yarl

    from .registry import BackendSpec

FailureKind = Literal["timeout", "connect", "read"]


class UpstreamError(Exception):
    """The backend could not be reached in time, or broke off its answer."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    read: float  # the longest wait for any one read, not for the whole body

    @classmethod
    def of(cls, backend: BackendSpec, settings: Settings) -> Timeouts:
        """A backend's own limits where it sets them, else the gateway's."""
        return cls(
            connect=backend.connect_timeout_s or settings.connect_timeout_s,
            read=backend.read_timeout_s or settings.read_timeout_s,
        )


class Upstream(Protocol):
    """An answer being received: the status and headers are in, the body is not."""

    status: int

    def header(self, name: str) -> str | None: ...

    async def read(self) -> bytes:
        """The whole body (raises UpstreamError("read") if it breaks off)."""
        ...

    async def next_chunk(self) -> bytes:
        """The next piece of the body as it arrives; b"" at its end."""
        ...

    async def aclose(self) -> None: ...


class Engine(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        timeouts: Timeouts,
    ) -> Upstream: ...

    async def aclose(self) -> None: ...


class OutboundClient:
    def __init__(self, settings: Settings) -> None:
        self.engine_name = settings.http_engine
        self.max_connections = settings.max_connections
        self.default_timeouts = Timeouts(settings.connect_timeout_s, settings.read_timeout_s)
        self._engine: Engine | None = None

    def get(self) -> Engine:
        """The engine, made on first use (inside the running event loop)."""
        if self._engine is None:
            self._engine = (
                AiohttpEngine(self.max_connections)
                if self.engine_name == "aiohttp"
                else HttpxEngine(self.max_connections)
            )
        return self._engine

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        timeouts: Timeouts | None = None,
    ) -> Upstream:
        engine = self._engine or self.get()
        return await engine.send(method, url, headers, content, timeouts or self.default_timeouts)

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.aclose()


# --- aiohttp --------------------------------------------------------------------------


class AiohttpUpstream:
    __slots__ = ("_response", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def read(self) -> bytes:
        import aiohttp

        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError("read", type(exc).__name__) from exc

    async def next_chunk(self) -> bytes:
        import aiohttp

        try:
            return await self._response.content.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError("read", type(exc).__name__) from exc

    async def aclose(self) -> None:
        # a body read to its end gives the connection back to the pool; anything
        # else closes it, since its remaining bytes are unknown
        self._response.release()


class AiohttpEngine:
    def __init__(self, max_connections: int) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max_connections, limit_per_host=0, keepalive_timeout=30.0
            ),
            cookie_jar=aiohttp.DummyCookieJar(),  # a gateway keeps no cookies
            trust_env=False,
            skip_auto_headers=("User-Agent",),
        )
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}
        # parsing a URL is a visible cost per call: once per backend URL
        self._urls: dict[str, yarl.URL] = {}

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(timeouts)
        if found is None:
            # connect bounds the wait for a pooled connection as well as a new one
            found = self._timeouts[timeouts] = self._aiohttp.ClientTimeout(
                total=None,
                connect=timeouts.connect,
                sock_connect=timeouts.connect,
                sock_read=timeouts.read,
            )
        return found

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        timeouts: Timeouts,
    ) -> Upstream:
        aiohttp = self._aiohttp
        parsed = self._urls.get(url)
        if parsed is None:
            import yarl

            parsed = self._urls[url] = yarl.URL(url)
        try:
            response = await self._session.request(
                method,
                parsed,
                data=content,
                headers=headers,
                timeout=self._timeout(timeouts),
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamError("timeout", type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("connect", type(exc).__name__) from exc
        return AiohttpUpstream(response)

    async def aclose(self) -> None:
        await self._session.close()


# --- httpx ----------------------------------------------------------------------------


class HttpxUpstream:
    __slots__ = ("_chunks", "_response", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.aiter_raw()
        self.status = response.status_code

    def header(self, name: str) -> str | None:
        value: str | None = self._response.headers.get(name)
        return value

    async def read(self) -> bytes:
        import httpx

        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise UpstreamError("read", type(exc).__name__) from exc

    async def next_chunk(self) -> bytes:
        import httpx

        try:
            return await anext(self._chunks, b"")
        except httpx.HTTPError as exc:
            raise UpstreamError("read", type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxEngine:
    def __init__(self, max_connections: int) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,
            ),
            follow_redirects=False,
            trust_env=False,
        )
        self._timeouts: dict[Timeouts, httpx.Timeout] = {}

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        timeouts: Timeouts,
    ) -> Upstream:
        httpx = self._httpx
        timeout = self._timeouts.get(timeouts)
        if timeout is None:  # one per backend, built once
            timeout = self._timeouts[timeouts] = httpx.Timeout(
                connect=timeouts.connect,
                read=timeouts.read,
                write=timeouts.read,
                pool=timeouts.connect,
            )
        request = self._client.build_request(
            method, url, headers=headers, content=content, timeout=timeout
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamError("timeout", type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError("connect", type(exc).__name__) from exc
        return HttpxUpstream(response)

    async def aclose(self) -> None:
        await self._client.aclose()
