"""The outbound transport: an app's own openai SDK calls run through the stack in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import httpx2
import openai
from support.fake_openai import FakeOpenAI

from optiroute_mw import Gateway, OptirouteTransport
from optiroute_mw.settings import Settings
from optiroute_mw.transport import OptirouteTransport2


async def test_openai_sdk_through_transport(
    make_settings: Callable[..., Settings], fake: FakeOpenAI
) -> None:
    gateway = Gateway(make_settings())
    # the SDK believes it talks to the public API; the stack sends it to the fake
    sdk = openai.AsyncOpenAI(
        api_key="app-key",
        base_url="https://api.openai.invalid/v1",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=OptirouteTransport2(gateway)),
    )
    try:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="large", messages=[{"role": "user", "content": "outbound hello"}]
        )
        assert raw.parse().choices[0].message.content == "echo: outbound hello"
        assert raw.headers["x-optiroute-backend"] == "primary"
        stream = await sdk.chat.completions.create(
            model="large", messages=[{"role": "user", "content": "outbound stream"}], stream=True
        )
        text = ""
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        assert text == "echo: outbound stream"
        assert fake.hits == 2
        assert "app-key" not in str(fake.requests[-1].headers)
    finally:
        await sdk.close()
        await gateway.stop()


async def test_httpx_transport_streams_incrementally(
    make_settings: Callable[..., Settings], fake: FakeOpenAI
) -> None:
    from support.fake_openai import Fault

    gateway = Gateway(make_settings())
    fake.script(Fault(chunk_delay_s=0.2))
    async with (
        httpx.AsyncClient(transport=OptirouteTransport(gateway)) as client,
        client.stream(
            "POST",
            "https://llm.invalid/v1/chat/completions",
            json={
                "model": "small",
                "stream": True,
                "messages": [{"role": "user", "content": "one two three four"}],
            },
        ) as response,
    ):
        assert response.status_code == 200
        loop = asyncio.get_running_loop()
        arrivals = []
        async for _ in response.aiter_bytes():
            arrivals.append(loop.time())
    await gateway.stop()
    # chunks arrive spread out as the backend sends them, not in one buffered piece
    assert len(arrivals) >= 3 and arrivals[-1] - arrivals[0] > 0.3
