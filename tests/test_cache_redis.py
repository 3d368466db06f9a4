"""The exact cache in a real redis-server: TTL, LRU bound, failing open, shared by two apps."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from support.fake_openai import FakeOpenAI
from support.redis_server import RedisServer, redis_or_skip
from support.serve import ServerThread

from optiroute_mw.cache.redis_store import RedisStore
from optiroute_mw.cache.store import StoreUnavailable
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings
from optiroute_mw.stack import Gateway


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with redis_or_skip() as server:
        yield server


def chat(url: str, content: str, model: str = "small", **headers: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def metric(url: str, prefix: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_get_set_delete_and_ttl(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, prefix="t1:")
    try:
        assert await store.get("missing") is None
        await store.set("short", b"s", ttl_s=0.2)
        await store.set("long", b"\x00binary\xff", ttl_s=30)
        assert await store.get("short") == b"s"
        assert await store.get("long") == b"\x00binary\xff"
        await asyncio.sleep(0.35)
        assert await store.get("short") is None  # each entry has its own TTL
        assert await store.get("long") == b"\x00binary\xff"
        await store.set("long", b"new", ttl_s=30)  # set again replaces
        assert await store.get("long") == b"new"
        await store.delete("long")
        assert await store.get("long") is None
        assert await store.client.zcard("t1:lru") == 0  # nothing left in the recency index
    finally:
        await store.aclose()


async def test_lru_bound_evicts_the_least_recently_used(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, max_entries=3, prefix="t2:")
    try:
        for key in ("a", "b", "c"):
            await store.set(key, key.encode(), ttl_s=60)
            await asyncio.sleep(0.002)
        assert await store.get("a") == b"a"  # a hit makes "a" the most recent
        await store.set("d", b"d", ttl_s=60)
        assert await store.get("b") is None  # the least recently used went
        assert [await store.get(k) for k in ("a", "c", "d")] == [b"a", b"c", b"d"]
        assert await store.client.zcard("t2:lru") == 3
        assert await store.client.exists("t2:e:b") == 0  # the entry itself is gone too
    finally:
        await store.aclose()


async def test_down_fails_fast_then_comes_back(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, prefix="t3:", pause_s=0.2)
    try:
        await store.set("k", b"v", ttl_s=60)
        redis_server.stop()
        with pytest.raises(StoreUnavailable):
            await store.get("k")
        assert store.down
        started = time.perf_counter()
        with pytest.raises(StoreUnavailable):  # paused: no network, no wait
            await store.get("k")
        assert time.perf_counter() - started < 0.01
        redis_server.start()  # same port, empty
        await asyncio.sleep(0.25)
        assert await store.get("k") is None  # reconnected by itself: a plain miss
        assert not store.down
        await store.set("k", b"again", ttl_s=60)
        assert await store.get("k") == b"again"
    finally:
        await store.aclose()


async def test_slow_redis_is_a_quick_miss(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, prefix="t4:", timeout_s=0.2)
    try:
        await store.set("k", b"v", ttl_s=60)
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)  # up but not answering
        try:
            started = time.perf_counter()
            with pytest.raises(StoreUnavailable):
                await store.get("k")
            assert time.perf_counter() - started < 1.0  # the socket timeout, not a hang
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
    finally:
        await store.aclose()


def test_redis_killed_mid_test_fails_open(
    make_settings: Callable[..., Settings], fake: FakeOpenAI, redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=redis_server.url, semantic=False)
    with ServerThread(create_app(settings)) as server:
        assert chat(server.url, "kept in redis").headers["x-optiroute-cache"] == "miss"
        assert chat(server.url, "kept in redis").headers["x-optiroute-cache"] == "hit-exact"
        redis_server.stop()
        for _ in range(3):  # every call still answered, as a miss
            response = chat(server.url, "kept in redis")
            assert response.status_code == 200
            assert response.headers["x-optiroute-cache"] == "miss"
        assert metric(server.url, 'optiroute_side_system_errors_total{system="cache"}') >= 3
        redis_server.start()  # comes back empty: the store goes back to it by itself
        deadline = time.monotonic() + 10
        while chat(server.url, "after the restart").headers["x-optiroute-cache"] != "hit-exact":
            assert time.monotonic() < deadline, "the cache never went back to Redis"
            time.sleep(0.2)


def test_two_instances_share_exact_and_semantic_entries(
    make_settings: Callable[..., Settings], fake: FakeOpenAI, redis_server: RedisServer
) -> None:
    settings = make_settings(redis_url=redis_server.url, semantic_sync_s=0.2)
    one, two = Gateway(settings), Gateway(settings)
    with ServerThread(create_app(gateway=one)) as a, ServerThread(create_app(gateway=two)) as b:
        for gateway in (one, two):
            wait_semantic(gateway)
        first = chat(a.url, "What is the capital of France?")
        assert first.headers["x-optiroute-cache"] == "miss"
        exact = chat(b.url, "What is the capital of France?")
        assert exact.headers["x-optiroute-cache"] == "hit-exact"
        assert exact.json()["choices"] == first.json()["choices"]
        assert fake.hits == 1
        # the paraphrase through the other instance: a semantic hit once it has synced
        time.sleep(0.6)  # three sync intervals
        paraphrase = chat(b.url, "What's the capital city of France?")
        assert paraphrase.headers["x-optiroute-cache"] == "hit-semantic", paraphrase.headers
        assert float(paraphrase.headers["x-optiroute-cache-similarity"]) >= 0.89
        assert paraphrase.json()["choices"] == first.json()["choices"]
        assert fake.hits == 1


def wait_semantic(gateway: Gateway, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while gateway.semantic is None or not gateway.semantic.active:
        assert time.monotonic() < deadline, "the semantic layer never came on"
        time.sleep(0.05)
