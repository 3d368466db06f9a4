"""The semantic cache with the real embedding model: partitions, guard, replay, controls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from support.fake_openai import FakeOpenAI
from support.serve import ServerThread

from optiroute_mw.cache.keys import semantic_probe
from optiroute_mw.cache.semantic import MAX_CHARS, SemanticCache
from optiroute_mw.cache.semantic_index import DEFAULT_SIMILARITY_THRESHOLD
from optiroute_mw.cache.semantic_model import shared_embedder
from optiroute_mw.cache.store import MemoryStore
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings
from optiroute_mw.stack import Gateway

CAPITAL = "What is the capital of France?"
CAPITAL_PARAPHRASE = "What's the capital city of France?"


def user(content: object, model: str = "m") -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def chat(url: str, content: str, model: str = "small", **headers: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def wait_semantic(gateway: Gateway, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while gateway.semantic is None or gateway.semantic.state == "loading":
        assert time.monotonic() < deadline, "the semantic layer never finished loading"
        time.sleep(0.05)


@pytest.fixture
def served(make_settings: Callable[..., Settings]) -> Iterator[tuple[ServerThread, Gateway]]:
    gateway = Gateway(make_settings())
    with ServerThread(create_app(gateway=gateway)) as server:
        wait_semantic(gateway)
        assert gateway.semantic is not None and gateway.semantic.active
        yield server, gateway


def test_settings_default_is_the_researched_threshold() -> None:
    assert Settings.from_env({}).semantic_threshold == DEFAULT_SIMILARITY_THRESHOLD


# --- partitions -------------------------------------------------------------------------


def test_partition_covers_everything_but_the_last_user_turn() -> None:
    base = {
        "model": "m",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    }
    turns = base["messages"]
    assert isinstance(turns, list)
    partition, text = semantic_probe("t", "chat", base) or ("", "")
    assert text == "What is the capital of France?"
    other_question = {**base, "messages": [*turns[:3], {"role": "user", "content": "x"}]}
    assert semantic_probe("t", "chat", other_question) == (partition, "x")
    assert semantic_probe("t", "chat", {**base, "stream": True})[0] == partition  # type: ignore[index]
    changes = [
        ("t2", base),
        ("t", {**base, "model": "m2"}),
        ("t", {**base, "temperature": 0.3}),
        ("t", {**base, "seed": 1}),
        ("t", {**base, "messages": [{"role": "system", "content": "be long"}, *turns[1:]]}),
        ("t", {**base, "messages": [*turns[:2], {"role": "assistant", "content": "yo"}, turns[3]]}),
    ]
    for tenant, raw in changes:
        probe = semantic_probe(tenant, "chat", raw)
        assert probe is not None and probe[0] != partition, raw


def test_only_plain_text_is_compared_by_meaning() -> None:
    image = [{"type": "image_url", "image_url": {"url": "data:x"}}, {"type": "text", "text": "?"}]
    assert semantic_probe("t", "chat", user(image)) is None
    parts = [{"type": "text", "text": "What is"}, {"type": "text", "text": "Paris?"}]
    found = semantic_probe("t", "chat", user(parts))
    assert found is not None and found[1] == "What is\nParis?"
    system_only = {"model": "m", "messages": [{"role": "system", "content": "x"}]}
    assert semantic_probe("t", "chat", system_only) is None
    assert semantic_probe("t", "completions", {"model": "m", "prompt": "x"}) is None


# --- the layer itself, with the real model -------------------------------------------------


async def layer(tmp_path: Path, fingerprint: str = "f") -> SemanticCache:
    cache = SemanticCache(
        MemoryStore(), shared_embedder(), path=str(tmp_path / "sem"), fingerprint=fingerprint
    )
    cache.start()
    assert await cache.wait_ready()
    return cache


async def remember(cache: SemanticCache, text: str, key: str, ttl_s: float = 60) -> None:
    probe = cache.probe("t", "chat", user(text))
    assert probe is not None
    await cache.store.set(key, b"answer:" + key.encode(), ttl_s)
    await cache.remember(probe, key, ttl_s)


async def look(cache: SemanticCache, text: str, tenant: str = "t") -> str | None:
    probe = cache.probe(tenant, "chat", user(text))
    hit = await cache.lookup(probe) if probe is not None else None
    return hit.entry.decode() if hit is not None else None


# (stored, asked, served?): every look-alike here is above the threshold by embedding alone,
# so only the guard makes it miss
LOOKALIKES = [
    ("How to install Docker on Ubuntu 22.04?", "How to install Docker on Ubuntu 24.04?"),
    ("Is it safe to take aspirin in pregnancy?", "Is it not safe to take aspirin in pregnancy?"),
    ("How do I convert kg to lb?", "How do I convert lb to kg?"),
    ("Which is better, Python or Java?", "Which is worse, Python or Java?"),
    ("Is Python faster than Java?", "Is Java faster than Python?"),
    ("How many calories are in 100g of rice?", "How many calories are in 200g of rice?"),
]  # fmt: skip
PARAPHRASES = [
    (CAPITAL, CAPITAL_PARAPHRASE),
    ("How do I reset my banking password?", "How can I reset my banking password?"),
]


@pytest.mark.parametrize(
    ("stored", "asked", "hits"),
    [(a, b, True) for a, b in PARAPHRASES]
    + [(a, b, False) for a, b in LOOKALIKES]
    + [(CAPITAL, "What is the capital of Germany?", False)],
)
async def test_paraphrases_hit_and_lookalikes_miss(
    tmp_path: Path, stored: str, asked: str, hits: bool
) -> None:
    cache = await layer(tmp_path)
    try:
        if (stored, asked) in LOOKALIKES:
            a, b = shared_embedder().embed([stored, asked])
            assert float(a @ b) >= DEFAULT_SIMILARITY_THRESHOLD  # near enough to be a danger
        await remember(cache, stored, "k1")
        assert (await look(cache, asked) == "answer:k1") is hits
        assert await look(cache, asked, tenant="other") is None  # other partition: never
    finally:
        await cache.stop()


async def test_expired_or_evicted_answers_are_misses(tmp_path: Path) -> None:
    cache = await layer(tmp_path)
    try:
        await remember(cache, CAPITAL, "k1", ttl_s=0.05)
        await asyncio.sleep(0.1)
        assert await look(cache, CAPITAL_PARAPHRASE) is None
        assert len(cache.index) == 0  # forgotten, not kept
        await remember(cache, CAPITAL, "k2")
        await cache.store.delete("k2")  # the answer left the store (LRU)
        assert await look(cache, CAPITAL_PARAPHRASE) is None
        long_text = "word " * (MAX_CHARS // 5 + 1)
        assert cache.probe("t", "chat", user(long_text)) is None
    finally:
        await cache.stop()


async def test_index_and_answers_survive_a_restart(tmp_path: Path) -> None:
    cache = await layer(tmp_path)
    await remember(cache, CAPITAL, "k1")
    await cache.stop()  # saves
    again = await layer(tmp_path)
    try:
        assert len(again.index) == 1
        assert await look(again, CAPITAL_PARAPHRASE) == "answer:k1"
    finally:
        await again.stop()
    other = await layer(tmp_path, fingerprint="another model or registry")
    try:
        assert len(other.index) == 0 and await look(other, CAPITAL_PARAPHRASE) is None
    finally:
        await other.stop()


# --- through the sidecar ------------------------------------------------------------------


def test_semantic_hit_end_to_end(served: tuple[ServerThread, Gateway], fake: FakeOpenAI) -> None:
    server, _ = served
    first = chat(server.url, CAPITAL)
    assert first.headers["x-optiroute-cache"] == "miss"
    hit = chat(server.url, CAPITAL_PARAPHRASE)
    assert hit.headers["x-optiroute-cache"] == "hit-semantic"
    assert DEFAULT_SIMILARITY_THRESHOLD <= float(hit.headers["x-optiroute-cache-similarity"]) < 1
    assert hit.json()["choices"][0]["message"]["content"] == "echo: " + CAPITAL
    assert hit.headers["x-optiroute-backend"] == "cache"
    assert fake.hits == 1
    lookalike = chat(server.url, "What is the capital of Spain?")
    assert lookalike.headers["x-optiroute-cache"] == "miss"
    assert "x-optiroute-cache-similarity" not in lookalike.headers
    other_model = chat(server.url, CAPITAL_PARAPHRASE, model="large")  # another partition
    assert other_model.headers["x-optiroute-cache"] == "miss"
    assert fake.hits == 3
    metrics = httpx.get(server.url + "/metrics").text
    assert 'optiroute_cache_events_total{layer="semantic",result="hit"} 1.0' in metrics
    assert 'optiroute_cache_events_total{layer="semantic",result="miss"}' in metrics
    assert 'optiroute_cache_events_total{layer="semantic",result="stored"}' in metrics
    assert "optiroute_cache_similarity_count 1.0" in metrics
    assert 'optiroute_cache_saved_usd_total{layer="semantic"}' in metrics


def test_semantic_hit_replayed_both_ways_through_the_openai_sdk(
    served: tuple[ServerThread, Gateway], fake: FakeOpenAI
) -> None:
    server, _ = served
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0, timeout=10)
    # stored from a stream, served as JSON
    stream = sdk.chat.completions.create(
        model="small", messages=[{"role": "user", "content": CAPITAL}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    raw = sdk.chat.completions.with_raw_response.create(
        model="small", messages=[{"role": "user", "content": CAPITAL_PARAPHRASE}]
    )
    assert raw.headers["x-optiroute-cache"] == "hit-semantic"
    assert raw.parse().choices[0].message.content == "echo: " + CAPITAL
    # stored as JSON, replayed as a stream with usage
    question = "How do I reset my online banking password?"
    sdk.chat.completions.create(model="small", messages=[{"role": "user", "content": question}])
    replay = sdk.chat.completions.with_raw_response.create(
        model="small",
        messages=[{"role": "user", "content": "How can I reset my online banking password?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert replay.headers["x-optiroute-cache"] == "hit-semantic"
    chunks = list(replay.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: " + question
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage is not None
    assert fake.hits == 2


def test_cache_controls_apply_to_the_semantic_layer(
    served: tuple[ServerThread, Gateway], fake: FakeOpenAI
) -> None:
    server, _ = served
    chat(server.url, CAPITAL)
    bypass = chat(server.url, CAPITAL_PARAPHRASE, **{"x-optiroute-cache": "bypass"})
    assert bypass.headers["x-optiroute-cache"] == "bypass"
    no_store = chat(server.url, CAPITAL_PARAPHRASE, **{"cache-control": "no-store"})
    assert no_store.headers["x-optiroute-cache"] == "bypass"
    refresh = chat(server.url, CAPITAL_PARAPHRASE, **{"x-optiroute-cache": "refresh"})
    assert refresh.headers["x-optiroute-cache"] == "refresh"
    no_cache = chat(server.url, CAPITAL_PARAPHRASE, **{"cache-control": "no-cache"})
    assert no_cache.headers["x-optiroute-cache"] == "refresh"
    assert fake.hits == 5  # none of them was served from the cache
    assert chat(server.url, CAPITAL_PARAPHRASE).headers["x-optiroute-cache"] == "hit-exact"


def test_model_missing_turns_the_semantic_layer_off_and_exact_goes_on(
    make_settings: Callable[..., Settings], fake: FakeOpenAI, tmp_path: Path
) -> None:
    gateway = Gateway(make_settings(embed_model_path=str(tmp_path / "no-model")))
    with ServerThread(create_app(gateway=gateway)) as server:
        wait_semantic(gateway)
        assert gateway.semantic is not None and gateway.semantic.state == "off"
        assert chat(server.url, CAPITAL).headers["x-optiroute-cache"] == "miss"
        assert chat(server.url, CAPITAL_PARAPHRASE).headers["x-optiroute-cache"] == "miss"
        assert chat(server.url, CAPITAL).headers["x-optiroute-cache"] == "hit-exact"
        assert fake.hits == 2


def test_semantic_off_by_setting(make_settings: Callable[..., Settings], fake: FakeOpenAI) -> None:
    gateway = Gateway(make_settings(semantic=False))
    with ServerThread(create_app(gateway=gateway)) as server:
        assert gateway.semantic is None
        chat(server.url, CAPITAL)
        assert chat(server.url, CAPITAL_PARAPHRASE).headers["x-optiroute-cache"] == "miss"


def test_semantic_entries_survive_a_sidecar_restart(
    make_settings: Callable[..., Settings], fake: FakeOpenAI
) -> None:
    settings = make_settings()
    first = Gateway(settings)
    with ServerThread(create_app(gateway=first)) as server:
        wait_semantic(first)
        chat(server.url, CAPITAL)
    second = Gateway(settings)
    with ServerThread(create_app(gateway=second)) as server:
        wait_semantic(second)
        hit = chat(server.url, CAPITAL_PARAPHRASE)
        assert hit.headers["x-optiroute-cache"] == "hit-semantic"
    assert fake.hits == 1


def test_lookalikes_miss_and_paraphrases_hit_through_the_sidecar(
    served: tuple[ServerThread, Gateway], fake: FakeOpenAI
) -> None:
    server, _ = served
    for stored, asked in LOOKALIKES:  # all in one partition, as real traffic would be
        assert chat(server.url, stored).headers["x-optiroute-cache"] == "miss"
        served_as = chat(server.url, asked).headers["x-optiroute-cache"]
        assert served_as == "miss", (stored, asked)
    for stored, asked in PARAPHRASES:
        chat(server.url, stored)
        hit = chat(server.url, asked)
        assert hit.headers["x-optiroute-cache"] == "hit-semantic", (stored, asked)
        assert hit.json()["choices"][0]["message"]["content"] == "echo: " + stored
    assert fake.hits == 2 * len(LOOKALIKES) + len(PARAPHRASES)
