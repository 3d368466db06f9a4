"""Rate limits: token buckets in memory and in a real redis-server, shared and failing open."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from support.fake_openai import FakeOpenAI, Fault
from support.redis_server import RedisServer, redis_or_skip
from support.serve import ServerThread

from optiroute_mw.ingress import Tenant
from optiroute_mw.ingress.keys import KeyStore
from optiroute_mw.ingress.limits import Bucket, MemoryLimits, RateLimiter, duration
from optiroute_mw.ingress.redis_limits import RedisLimits
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chat(url: str, content: str, model: str = "small", **headers: str) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with redis_or_skip() as server:
        yield server


async def test_bucket_refills_and_is_all_or_nothing() -> None:
    clock = Clock()
    limits = MemoryLimits(clock)
    rpm = Bucket("k:rpm", 2, 1)
    assert (await limits.take([rpm])).allowed
    assert (await limits.take([rpm])).allowed
    refused = await limits.take([rpm])
    assert not refused.allowed and refused.retry_after_s == pytest.approx(30.0)
    clock.now += 30
    assert (await limits.take([rpm])).allowed
    # a token bucket that cannot pay refuses the call and the request bucket keeps its unit
    tpm = Bucket("k:tpm", 100, 150, "tokens")
    fresh = Bucket("k2:rpm", 5, 1)
    assert not (await limits.take([fresh, tpm])).allowed
    assert (await limits.take([fresh])).levels == [4.0]


async def test_headers_and_too_large() -> None:
    limiter = RateLimiter(clock=Clock())
    tenant = Tenant(id="t", key_id="abc", rpm=10, tpm=1000)
    admission = await limiter.admit(tenant, 100)
    assert admission.allowed
    assert admission.headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "6s",
    }
    assert (await limiter.admit(tenant, 5000)).too_large
    assert [duration(s) for s in (0, 0.02, 1, 59.2, 360)] == ["0s", "20ms", "1s", "1m0s", "6m0s"]


def test_per_key_limit_429_with_retry_after(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    store = KeyStore(str(tmp_path / "keys.db"))
    limited, _ = store.create("limited", rpm=2)
    other, _ = store.create("other")
    with ServerThread(create_app(make_settings(keys_db=store.path))) as server:
        first = chat(server.url, "q1", **{"x-api-key": limited})
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert chat(server.url, "q2", **{"x-api-key": limited}).status_code == 200
        refused = chat(server.url, "q3", **{"x-api-key": limited})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
        assert "requests" in error["message"]
        # limits are per key
        assert chat(server.url, "q4", **{"x-api-key": other}).status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
        assert 'optiroute_refusals_total{reason="rate_limit"} 1.0' in metrics


def test_global_limit_applies_to_everyone(make_settings: Callable[..., Settings]) -> None:
    with ServerThread(create_app(make_settings(global_rpm=2))) as server:
        assert [chat(server.url, f"g{i}").status_code for i in range(3)] == [200, 200, 429]


def test_tokens_are_corrected_with_real_usage(
    make_settings: Callable[..., Settings], tmp_path: Path, fake: FakeOpenAI
) -> None:
    store = KeyStore(str(tmp_path / "keys.db"))
    key, _ = store.create("tokens", tpm=150)
    headers = {"x-api-key": key}
    with ServerThread(create_app(make_settings(keys_db=store.path))) as server:
        # 400 characters in one word: estimated at 100 tokens, really 1 (+2 in the answer)
        long_word = "x" * 400
        first = chat(server.url, long_word, **headers)
        assert first.headers["x-ratelimit-remaining-tokens"] == "50"
        # the refund makes room: without it, 50 left could not pay another 100
        second = chat(server.url, long_word + "y", **headers)
        assert second.status_code == 200
        # a short prompt whose answer is long: taken at 1 token, really 151
        fake.script(Fault(content="word " * 150))
        assert chat(server.url, "hi", **headers).status_code == 200
        refused = chat(server.url, "hello", **headers)
        assert refused.status_code == 429 and "tokens" in refused.json()["error"]["message"]


def two_sidecars(settings: Settings) -> tuple[ServerThread, ServerThread]:
    return ServerThread(create_app(settings)), ServerThread(create_app(settings))


def test_two_instances_share_one_budget_through_redis(
    make_settings: Callable[..., Settings], tmp_path: Path, redis_server: RedisServer
) -> None:
    store = KeyStore(str(tmp_path / "keys.db"))
    key, record = store.create("shared", rpm=3)
    settings = make_settings(keys_db=store.path, redis_url=redis_server.url)
    one, two = two_sidecars(settings)
    with one, two:
        statuses = [
            chat(server.url, f"s{i}", **{"x-api-key": key}).status_code
            for i, server in enumerate((one, two, one, two, one))
        ]
    assert statuses == [200, 200, 200, 429, 429]  # 3 per minute in all, not 3 per replica
    bucket = redis.Redis.from_url(redis_server.url).hgetall(f"optiroute:rl:key:{record.id}:rpm")
    assert float(bucket[b"level"]) < 1


def test_redis_killed_mid_test_fails_open_and_rejoins(
    make_settings: Callable[..., Settings], tmp_path: Path, redis_server: RedisServer
) -> None:
    store = KeyStore(str(tmp_path / "keys.db"))
    key, record = store.create("resilient", rpm=1000)
    settings = make_settings(keys_db=store.path, redis_url=redis_server.url)
    bucket = f"optiroute:rl:key:{record.id}:rpm"
    with ServerThread(create_app(settings)) as server:
        assert chat(server.url, "r0", **{"x-api-key": key}).status_code == 200
        assert redis.Redis.from_url(redis_server.url).exists(bucket)
        redis_server.stop()
        statuses = [chat(server.url, f"r{i}", **{"x-api-key": key}).status_code for i in (1, 2)]
        assert statuses == [200, 200]
        metrics = httpx.get(server.url + "/metrics").text
        assert 'optiroute_side_system_errors_total{system="ratelimit"}' in metrics
        redis_server.start()  # same port, empty: the replica goes back to it by itself
        deadline = time.monotonic() + 10
        i = 3
        while not redis.Redis.from_url(redis_server.url).exists(bucket):
            assert time.monotonic() < deadline, "the limiter never went back to Redis"
            assert chat(server.url, f"r{i}", **{"x-api-key": key}).status_code == 200
            i += 1
            time.sleep(0.2)


async def test_redis_script_matches_the_memory_buckets(redis_server: RedisServer) -> None:
    limits = RedisLimits(redis_server.url)
    try:
        tpm = Bucket("unit:tpm", 100, 60, "tokens")
        assert (await limits.take([tpm])).levels == [pytest.approx(40, abs=0.5)]
        refused = await limits.take([tpm])
        assert not refused.allowed and refused.retry_after_s == pytest.approx(12, abs=0.5)
        await limits.adjust([Bucket("unit:tpm", 100, -50, "tokens")])  # a refund
        assert (await limits.take([tpm])).allowed
    finally:
        await limits.aclose()
