"""Load balancing across the deployments of one model, and the health it reads."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send
from support.fake_openai import FakeOpenAI, Fault
from support.serve import ServerThread

from optiroute_mw.breaker.circuit import CircuitBoard
from optiroute_mw.exchange import STATE_KEY, Attempt, Exchange
from optiroute_mw.health import Health
from optiroute_mw.registry import ModelSpec
from optiroute_mw.select.balance import Balancer
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings
from optiroute_mw.wire import parse_request

HARD = (
    "Design a distributed rate limiter for a microservices architecture; explain the "
    "trade-offs between token bucket and sliding window, then write Python code for it."
)


def replica(backend: str, weight: float = 1.0) -> ModelSpec:
    return ModelSpec(name="m", backend=backend, tier="complex", weight=weight)


A, B, C = replica("a"), replica("b"), replica("c")


def balancer(health: Health, seed: int = 1) -> Balancer:
    return Balancer(health, random.Random(seed))


def test_latency_is_an_ewma() -> None:
    health = Health(alpha=0.2)
    assert health.latency("k") is None
    health.observe("k", 1.0)
    health.observe("k", 3.0)
    assert health.latency("k") == pytest.approx(1.4)
    health.begin("k")
    health.begin("k")
    health.end("k")
    assert health.in_flight("k") == 1
    health.end("k")
    health.end("k")  # never below zero
    assert health.in_flight("k") == 0
    with pytest.raises(ValueError):
        Health(alpha=0)


def test_least_in_flight_spreads_concurrent_calls_evenly() -> None:
    health = Health()
    lb = balancer(health)
    counts: Counter[str] = Counter()
    for _ in range(300):
        first = lb.order([A, B, C])[0]
        health.begin(first.key)  # held: every call is still in flight
        counts[first.backend] += 1
    assert max(counts.values()) - min(counts.values()) <= 3


def test_idle_deployments_keep_the_registry_order() -> None:
    # nothing tells them apart: the first listed is the primary, the others its backups
    health = Health()
    lb = balancer(health)
    assert all(lb.order([A, B])[0] is A for _ in range(100))
    assert all(lb.order([B, A]) == [B, A] for _ in range(100))


def test_weights_scale_the_in_flight_share() -> None:
    health = Health()
    lb = balancer(health)
    heavy, light = replica("heavy", 3.0), replica("light", 1.0)
    for _ in range(400):
        health.begin(lb.order([heavy, light])[0].key)
    ratio = health.in_flight(heavy.key) / health.in_flight(light.key)
    assert 2.5 < ratio < 3.5


def test_the_faster_deployment_wins_when_load_is_equal() -> None:
    health = Health()
    health.observe(A.key, 0.1)
    health.observe(B.key, 1.0)
    lb = balancer(health)
    counts = Counter(lb.order([A, B])[0].backend for _ in range(500))
    assert counts["a"] == 500
    # until it is loaded: ten calls in flight on a make b the better choice
    for _ in range(10):
        health.begin(A.key)
    assert lb.order([A, B])[0] is B


def test_unmeasured_deployments_get_the_group_average() -> None:
    health = Health()
    health.observe(B.key, 0.5)
    lb = balancer(health)
    # a is assumed as fast as b: a tie, so the registry's first goes first ...
    assert lb.order([A, B])[0] is A
    # ... until it carries more calls than b
    health.begin(A.key)
    assert lb.order([A, B])[0] is B


def open_board(*keys: str, clock: Callable[[], float] = lambda: 100.0) -> CircuitBoard:
    board = CircuitBoard(threshold=1, cooldown_s=30.0, clock=clock)
    for key in keys:
        board.get(key).record_failure()
    return board


def test_open_circuits_are_skipped() -> None:
    board = open_board(B.key)
    assert board.get(B.key).state == "open"
    health = Health(circuits=board)
    lb = balancer(health)
    for _ in range(200):
        order = lb.order([A, B, C])
        assert order[0] is not B
        assert order[-1] is B  # kept last: only when nothing else is left


def test_cooling_down_deployments_are_skipped_too() -> None:
    board = CircuitBoard(clock=lambda: 100.0)
    board.get(A.key).cool_down(10.0)  # a 429's Retry-After
    health = Health(circuits=board)
    assert not health.available(A.key) and health.available(B.key)
    assert all(balancer(health).order([A, B])[0] is B for _ in range(50))


def test_a_circuit_past_its_cooldown_is_usable_again() -> None:
    now = [100.0]
    board = open_board(A.key, clock=lambda: now[0])
    health = Health(circuits=board)
    assert not health.available(A.key)
    now[0] += 31.0
    assert health.available(A.key)  # half-open: the breaker lets a probe through


def test_when_every_circuit_is_open_the_order_is_kept() -> None:
    health = Health(circuits=open_board(A.key, B.key))
    assert balancer(health).order([A, B]) == [A, B]
    assert balancer(health).order([A]) == [A]


# --- the tracking wrapper -------------------------------------------------------------------


def make_exchange(model: ModelSpec) -> Exchange:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    ex = Exchange(
        request_id="t", kind="chat", path="/v1/chat/completions", body=body,
        request=parse_request("chat", body),
    )  # fmt: skip
    ex.model = model
    return ex


async def run_tracked(health: Health, ex: Exchange, outcome: str | None) -> list[int]:
    seen: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(health.in_flight(A.key))
        if outcome is not None:
            ex.attempts.append(Attempt("m", "a", outcome, 504))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(message: Message) -> None:
        pass

    scope: dict[str, Any] = {"type": "http", "state": {STATE_KEY: ex}}
    await health.track(app)(scope, None, send)  # type: ignore[arg-type]
    return seen


async def test_tracked_counts_in_flight_and_learns_latency() -> None:
    health = Health()
    assert await run_tracked(health, make_exchange(A), None) == [1]
    assert health.in_flight(A.key) == 0
    assert health.latency(A.key) is not None and health.stats[A.key].calls == 1
    # a failure teaches nothing about speed, a timeout does
    await run_tracked(health, make_exchange(A), "http_500")
    assert health.stats[A.key].calls == 1
    await run_tracked(health, make_exchange(A), "timeout")
    assert health.stats[A.key].calls == 2
    assert health.in_flight(A.key) == 0


# --- end to end through the sidecar ---------------------------------------------------------


def post(server: ServerThread) -> httpx.Response:
    body = {"model": "large", "messages": [{"role": "user", "content": HARD}]}
    headers = {"x-optiroute-cache": "bypass"}
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def test_sidecar_spreads_replicas_and_skips_an_open_circuit(
    make_settings: Callable[..., Settings], fake: FakeOpenAI, fake2: FakeOpenAI
) -> None:
    settings = make_settings(breaker_failures=1, breaker_cooldown_s=60.0)
    with ServerThread(create_app(settings)) as server:
        # one at a time, the registry's first deployment answers
        assert {post(server).headers["x-optiroute-backend"] for _ in range(3)} == {"primary"}
        # concurrent calls spread over both (the least loaded goes first)
        fake.always(Fault(delay_s=0.3))
        fake2.always(Fault(delay_s=0.3))
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post(server), range(8)))
        backends = Counter(r.headers["x-optiroute-backend"] for r in answers)
        assert backends["primary"] >= 2 and backends["secondary"] >= 2
        fake2.always(None)
        # the primary breaks: its circuit opens on the first failure ...
        fake.always(Fault(status=500))
        answers = [post(server) for _ in range(6)]
        assert all(r.status_code == 200 for r in answers)
        assert {r.headers["x-optiroute-backend"] for r in answers} == {"secondary"}
        # ... and from then on it is not even tried
        hits = fake.hits
        for _ in range(10):
            assert post(server).headers["x-optiroute-backend"] == "secondary"
        assert fake.hits == hits
        fake.always(None)
