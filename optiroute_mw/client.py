"""The one pooled outbound HTTP client of a process.

httpx's API over the engine the benchmark chose: ``aiohttp`` (through the
httpx-aiohttp transport) by default, since httpx's own pool falls off as
concurrency rises (encode/httpx#3215); ``httpx`` keeps the pure httpcore engine.
The client is made on first use inside the running loop and closed on shutdown.
"""

from __future__ import annotations

import httpx

from .settings import Settings


def _transport(engine: str, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    if engine == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits, trust_env=False)
        return transport
    return httpx.AsyncHTTPTransport(limits=limits, trust_env=False)


class OutboundClient:
    def __init__(self, settings: Settings) -> None:
        self.engine = settings.http_engine
        self.limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
            keepalive_expiry=30.0,
        )
        self.timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.connect_timeout_s,
        )
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=_transport(self.engine, self.limits),
                timeout=self.timeout,
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
