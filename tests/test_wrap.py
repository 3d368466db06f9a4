"""wrap(app): LLM routes through the stack, every other route untouched."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import openai
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from support.fake_openai import FakeOpenAI
from support.serve import ServerThread

from optiroute_mw import wrap
from optiroute_mw.settings import Settings


def host_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item}")
    async def item(item: str, q: str = "") -> dict[str, str]:
        return {"item": item, "q": q}

    @app.post("/echo")
    async def echo(request: Request) -> PlainTextResponse:
        body = await request.body()
        return PlainTextResponse(
            body, headers={"x-seen-auth": request.headers.get("authorization", "")}
        )

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def parts() -> Iterator[bytes]:  # type: ignore[misc]
            for i in range(3):
                yield f"part{i}\n".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    @app.post("/v1/chat/completions")
    async def own_handler(request: Request) -> dict[str, object]:
        # only reached in forward="app" mode
        decision = request.state.optiroute
        body = await request.json()
        return {
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": f"app answered with {decision.model.name}",
                    },
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    return app


def test_non_llm_routes_untouched(make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    with ServerThread(wrap(host_app(), make_settings())) as server:
        direct = ServerThread(host_app()).start()
        try:
            for method, path, kwargs in [
                ("GET", "/items/7?q=x", {}),
                (
                    "POST",
                    "/echo",
                    {
                        "content": b"\x00binary\xffbody",
                        "headers": {"authorization": "Bearer app-token"},
                    },
                ),
                ("GET", "/stream", {}),
                ("GET", "/missing", {}),
                ("GET", "/v1/chat/completions", {}),  # not a POST: the app's own 405
            ]:
                wrapped = httpx.request(method, server.url + path, **kwargs)  # type: ignore[arg-type]
                plain = httpx.request(method, direct.url + path, **kwargs)  # type: ignore[arg-type]
                assert wrapped.status_code == plain.status_code, path
                assert wrapped.content == plain.content, path
                strip = {"date", "server"}
                assert {k: v for k, v in wrapped.headers.items() if k not in strip} == {
                    k: v for k, v in plain.headers.items() if k not in strip
                }, path
        finally:
            direct.stop()
    assert fake.hits == 0


def test_llm_route_through_stack(make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    with ServerThread(wrap(host_app(), make_settings())) as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        answer = sdk.chat.completions.create(
            model="large", messages=[{"role": "user", "content": "hello wrapped"}]
        )
        assert answer.choices[0].message.content == "echo: hello wrapped"
        chunks = list(
            sdk.chat.completions.create(
                model="large", messages=[{"role": "user", "content": "stream wrapped"}], stream=True
            )
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            == "echo: stream wrapped"
        )
    assert fake.hits == 2


def test_forward_app_mode(make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    with ServerThread(wrap(host_app(), make_settings(), forward="app")) as server:
        response = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "large", "messages": [{"role": "user", "content": "what is 2+2"}]},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["model"] == "small-up"  # the body's model was rewritten
        assert body["choices"][0]["message"]["content"] == "app answered with small"
        assert response.headers["x-optiroute-model"] == "small"
    assert fake.hits == 0
