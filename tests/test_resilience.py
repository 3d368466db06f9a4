"""Faults at the backend: every request ends in an answer or a clear error, fast."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from support.fake_openai import FakeOpenAI, Fault
from support.serve import ServerThread

from optiroute_mw.breaker.circuit import CircuitBoard
from optiroute_mw.forward import CONTINUE_PROMPT
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings
from optiroute_mw.stack import Gateway

HARD = (
    "Design a distributed rate limiter for a microservices architecture; explain the "
    "trade-offs between token bucket and sliding window, then write Python code for it."
)
NO_CACHE = {"x-optiroute-cache": "bypass"}


def post(server: ServerThread, body: dict[str, object], **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=20)


def sdk(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=20)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=500),
        Fault(status=502),
        Fault(status=503),
        Fault(status=504),
        Fault(status=529),
        Fault(reset_before=True),
        Fault(malformed_json=True),
        Fault(delay_s=3.0),
    ],
    ids=["500", "502", "503", "504", "529", "reset", "malformed", "read-timeout"],
)
def test_fault_fails_over_to_the_healthy_deployment(
    sidecar: ServerThread, fake: FakeOpenAI, fake2: FakeOpenAI, fault: Fault
) -> None:
    fake.script(fault)
    response = post(
        sidecar, {"model": "large", "messages": [{"role": "user", "content": HARD}]}, **NO_CACHE
    )
    assert response.status_code == 200
    assert response.headers["x-optiroute-backend"] == "secondary"
    assert response.json()["choices"][0]["message"]["content"].startswith("echo: Design")
    assert (fake.hits, fake2.hits) == (1, 1)


def test_retry_after_is_honoured(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    fake.script(Fault(status=429, headers={"Retry-After": "1"}))
    started = time.monotonic()
    response = post(
        sidecar,
        {"model": "small", "messages": [{"role": "user", "content": "hi"}]},
        **NO_CACHE,
        **{"x-optiroute-model": "small"},
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and fake.hits == 2
    # the second call waited for the backend's Retry-After, not less
    assert elapsed >= 0.9


def test_rate_limited_without_alternative_gives_429_with_retry_after(
    make_settings: Callable[..., Settings], fake: FakeOpenAI
) -> None:
    settings = make_settings(with_secondary=False, retry_after_max_s=0.2, retry_rounds=1)
    with ServerThread(create_app(settings)) as server:
        fake.always(Fault(status=429, headers={"Retry-After": "30"}))
        response = post(
            server,
            {"model": "small", "messages": [{"role": "user", "content": "x"}]},
            **NO_CACHE,
            **{"x-optiroute-model": "small"},
        )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"]["type"] == "rate_limit_error"


def wait_for(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_cycle_through_the_stack(
    make_settings: Callable[..., Settings], fake: FakeOpenAI
) -> None:
    clock = Clock()
    settings = make_settings(
        with_secondary=False, breaker_failures=2, retry_rounds=0, breaker_cooldown_s=30.0
    )
    gateway = Gateway(settings)
    gateway.board = CircuitBoard(2, 30.0, clock)
    body = {"model": "small", "messages": [{"role": "user", "content": "hi"}]}
    pin = {**NO_CACHE, "x-optiroute-model": "small"}
    with ServerThread(create_app(gateway=gateway)) as server:
        fake.always(Fault(status=500))
        assert post(server, body, **pin).status_code == 502
        assert post(server, body, **pin).status_code == 502
        wait_for(lambda: gateway.board.states()["small@primary"] == "open")
        # open: fails fast, with no network call
        response = post(server, body, **pin)
        assert response.status_code == 503 and fake.hits == 2
        assert response.json()["error"]["code"] == "backends_unavailable"
        ready = httpx.get(server.url + "/readyz").json()
        assert ready["circuits"]["small@primary"] == "open"
        # after the cooldown one probe goes through; its failure reopens the circuit
        clock.now += 31
        assert post(server, body, **pin).status_code == 502 and fake.hits == 3
        wait_for(lambda: gateway.board.states()["small@primary"] == "open")
        assert post(server, body, **pin).status_code == 503 and fake.hits == 3
        # the next probe succeeds and closes it
        clock.now += 31
        fake.always(None)
        assert post(server, body, **pin).status_code == 200
        # the outcome is recorded just after the last byte left: give it a moment
        wait_for(lambda: gateway.board.states()["small@primary"] == "closed")
        metrics = httpx.get(server.url + "/metrics").text
        assert 'optiroute_circuit_state{deployment="small@primary"} 0.0' in metrics


def test_ttft_timeout_fails_over_before_the_first_byte(
    make_settings: Callable[..., Settings], fake: FakeOpenAI, fake2: FakeOpenAI
) -> None:
    with ServerThread(create_app(make_settings(ttft_timeout_s=0.3))) as server:
        fake.script(Fault(delay_s=1.5))
        raw = sdk(server).chat.completions.with_raw_response.create(
            model="large", messages=[{"role": "user", "content": HARD}], stream=True
        )
        assert raw.headers["x-optiroute-backend"] == "secondary"
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        assert text.startswith("echo: Design")


def test_mid_stream_failover_gives_one_coherent_stream(
    sidecar: ServerThread, fake: FakeOpenAI, fake2: FakeOpenAI
) -> None:
    fake.script(Fault(reset_after_chunks=4))  # role chunk + "echo:" "Design" "a"
    chunks = list(
        sdk(sidecar).chat.completions.create(
            model="large", messages=[{"role": "user", "content": HARD}], stream=True
        )
    )
    assert len({c.id for c in chunks}) == 1 and len({c.model for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo: Design a ")
    assert text.endswith(CONTINUE_PROMPT)  # the fake echoes the request to carry on
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1
    continued = fake2.requests[-1].json["messages"]
    assert continued[-2] == {"role": "assistant", "content": "echo: Design a "}
    assert continued[-1]["content"] == CONTINUE_PROMPT


def test_mid_stream_failure_with_no_fallback_ends_cleanly(
    make_settings: Callable[..., Settings], fake: FakeOpenAI
) -> None:
    with ServerThread(create_app(make_settings(with_secondary=False))) as server:
        fake.always(Fault(reset_after_chunks=3))
        with httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            timeout=20,
            json={
                "model": "small",
                "stream": True,
                "messages": [{"role": "user", "content": "a b c d"}],
            },
        ) as response:
            body = response.read().decode()
    assert response.status_code == 200
    events = [e for e in body.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][len("data: ") :])["error"]["code"] == "stream_interrupted"
    with pytest.raises(openai.APIError):
        list(
            sdk(server).chat.completions.create(
                model="small", messages=[{"role": "user", "content": "a b c d"}], stream=True
            )
        )


def test_context_length_error_moves_to_a_larger_window(
    sidecar: ServerThread, fake: FakeOpenAI
) -> None:
    fake.script(Fault(status=400, message="This model's maximum context length is 8192 tokens."))
    response = post(
        sidecar, {"model": "large", "messages": [{"role": "user", "content": "hi"}]}, **NO_CACHE
    )
    assert response.status_code == 200
    assert response.headers["x-optiroute-model"] == "large"
    assert [r.json["model"] for r in fake.requests] == ["small-up", "large-up"]


async def test_single_flight_collapses_identical_calls(
    sidecar: ServerThread, fake: FakeOpenAI
) -> None:
    fake.script(Fault(delay_s=0.5))
    messages = [{"role": "user", "content": "one shared answer"}]
    client = openai.AsyncOpenAI(base_url=sidecar.url + "/v1", api_key="x", max_retries=0)

    async def json_call() -> str:
        answer = await client.chat.completions.create(model="large", messages=messages)  # type: ignore[arg-type]
        return answer.choices[0].message.content or ""

    async def stream_call() -> str:
        await asyncio.sleep(0.05)
        stream = await client.chat.completions.create(
            model="large",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    results = await asyncio.gather(
        json_call(), *(json_call() for _ in range(3)), stream_call(), stream_call()
    )
    await client.close()
    assert set(results) == {"echo: one shared answer"}
    assert fake.hits == 1


async def test_single_flight_shares_the_error(sidecar: ServerThread, fake: FakeOpenAI) -> None:
    fake.script(Fault(status=400, delay_s=0.3))
    body = {"model": "small", "messages": [{"role": "user", "content": "shared failure"}]}
    async with httpx.AsyncClient(timeout=20) as client:
        responses = await asyncio.gather(
            *(client.post(sidecar.url + "/v1/chat/completions", json=body) for _ in range(4))
        )
    assert {r.status_code for r in responses} == {400}
    assert fake.hits == 1


def test_shutdown_drains_a_live_stream(
    tmp_path: Path, fake: FakeOpenAI, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(with_secondary=False)
    port = ServerThread(lambda *a: None).port  # a free port  # type: ignore[arg-type]
    env = {
        **os.environ,
        "OPTIROUTE_CONFIG": str(settings.config),
        "OPTIROUTE_PORT": str(port),
        "OPTIROUTE_LOCAL_MODEL": "off",
        "OPTIROUTE_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "optiroute_mw.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/healthz")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        fake.script(Fault(chunk_delay_s=0.25))
        words = "one two three four five six"
        with httpx.stream(
            "POST",
            url + "/v1/chat/completions",
            timeout=20,
            json={
                "model": "small",
                "stream": True,
                "messages": [{"role": "user", "content": words}],
            },
        ) as response:
            parts = response.iter_text()
            first = next(parts)
            process.send_signal(signal.SIGTERM)
            body = first + "".join(parts)
        assert body.endswith("data: [DONE]\n\n")
        assert (
            "".join(
                json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                for e in body.split("\n\n")
                if e.startswith("data: {") and json.loads(e[6:])["choices"]
            )
            == "echo: " + words
        )
        # uvicorn re-raises the signal once it has drained, as process managers expect
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_fault_inside_the_stack_mid_stream_still_ends_the_stream(
    make_settings: Callable[..., Settings], fake: FakeOpenAI
) -> None:
    from starlette.types import Receive, Scope, Send

    from optiroute_mw.ingress.middleware import IngressMiddleware

    async def breaks_midway(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send(
            {"type": "http.response.body", "body": b'data: {"choices": []}\n\n', "more_body": True}
        )
        raise RuntimeError("a bug of ours")

    app = IngressMiddleware(breaks_midway, settings=make_settings())
    with (
        ServerThread(app, lifespan="off") as server,
        httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            timeout=10,
            json={"model": "small", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        ) as response,
    ):
        body = response.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert '"error"' in events[-2]


def in_flight_streams(server: ServerThread) -> float:
    for line in httpx.get(server.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("optiroute_in_flight_streams "):
            return float(line.split()[1])
    raise AssertionError("optiroute_in_flight_streams is not exported")


def test_a_client_leaving_mid_stream_stops_the_relay(
    sidecar: ServerThread, fake: FakeOpenAI
) -> None:
    fake.script(Fault(chunk_delay_s=0.2))  # ~30 events: six seconds of stream
    body = {"model": "large", "messages": [{"role": "user", "content": HARD}], "stream": True}
    url = sidecar.url + "/v1/chat/completions"
    with (
        httpx.Client(timeout=20) as client,
        client.stream("POST", url, json=body, headers=NO_CACHE) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()  # held: a dropped iterator would close the stream now
        assert next(chunks).startswith(b"data: ")
        time.sleep(0.3)
        assert in_flight_streams(sidecar) == 1  # still relaying
    left = time.monotonic()
    # the connection is gone: the relay ends now, not when the backend's stream does
    wait_for(lambda: in_flight_streams(sidecar) == 0, seconds=3.0)
    assert time.monotonic() - left < 3.0


@pytest.mark.parametrize(
    "limits",
    [{"idle_timeout_s": 0.3}, {"read_timeout_s": 0.3}],
    ids=["idle-limit", "engine-read-timeout"],
)
def test_a_stream_that_goes_quiet_midway_is_continued_elsewhere(
    make_settings: Callable[..., Settings],
    fake: FakeOpenAI,
    fake2: FakeOpenAI,
    limits: dict[str, float],
) -> None:
    # a gap of 1 s between events: over the idle limit, or over the engine's own read
    # timeout when no idle limit is set (the relay then keeps no timer of its own)
    fake.script(Fault(chunk_delay_s=1.0))
    with ServerThread(create_app(make_settings(**limits))) as server:
        started = time.monotonic()
        chunks = list(
            sdk(server).chat.completions.create(
                model="large", messages=[{"role": "user", "content": HARD}], stream=True
            )
        )
    assert time.monotonic() - started < 5  # not the 30 s the backend would take
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1
    assert fake2.requests[-1].json["messages"][-1]["content"] == CONTINUE_PROMPT


async def test_disconnect_watch_is_freed_without_the_cyclic_collector() -> None:
    import gc
    import weakref

    from optiroute_mw.forward import DisconnectWatch

    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()  # the client never leaves
        return {"type": "http.disconnect"}

    async def relay(started: bool) -> weakref.ref[DisconnectWatch]:
        watch = DisconnectWatch(receive)
        if started:
            await asyncio.sleep(0)  # the watch waits on receive when it is closed
        watch.close()  # else closed before its first step: a relay that never waited
        return weakref.ref(watch)

    gc.disable()
    try:
        for started in (False, True):
            watched = await asyncio.create_task(relay(started))
            for _ in range(3):  # the cancelled watcher's last steps
                await asyncio.sleep(0)
            # reference counting alone freed it: no cycle through the cancelled task
            assert watched() is None, f"started={started}"
    finally:
        gc.enable()
