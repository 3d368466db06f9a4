"""The classify stage's routers: learned (with its fallbacks), LLM-rated, rules."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send
from support.fake_openai import FakeOpenAI, Fault
from support.serve import ServerThread

from optiroute_mw.classify import setup as router_setup
from optiroute_mw.classify.learned import LearnedRouter
from optiroute_mw.classify.llm import LLMClassifier
from optiroute_mw.classify.middleware import ClassifyMiddleware
from optiroute_mw.classify.routers import LearnedClassifier, TierCuts, routing_order_score
from optiroute_mw.classify.setup import RouterSetup, resolve_kind
from optiroute_mw.client import OutboundClient
from optiroute_mw.exchange import STATE_KEY, Classification, Exchange
from optiroute_mw.forward import Forwarder
from optiroute_mw.observe.metrics import Metrics
from optiroute_mw.registry import BackendSpec, ModelSpec, Registry
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings
from optiroute_mw.wire import parse_request

MODEL_PATH = os.environ.get("OPTIROUTE_EMBED_MODEL_PATH")
needs_model = pytest.mark.skipif(not MODEL_PATH, reason="needs the local embedding model")

EASY = "What is the capital of France?"
HARD = (
    "Prove that for every integer n >= 1 the sum 1^3 + 2^3 + ... + n^3 equals "
    "(n(n+1)/2)^2. First state the base case, then carry out the induction step, "
    "expanding (n+1)^3 and simplifying the algebra at each stage, and finally use the "
    "result to compute the sum of the cubes of the first 50 odd numbers."
)
DESIGN = (
    "Design a distributed, horizontally scalable rate limiter for a microservices "
    "architecture. First describe the algorithm and its complexity, then explain the "
    "consensus protocol and analyze the latency and throughput trade-offs."
)


def exchange(text: str) -> Exchange:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": text}]})
    return Exchange(
        request_id="t",
        kind="chat",
        path="/v1/chat/completions",
        body=body.encode(),
        request=parse_request("chat", body.encode()),
    )


def side_errors(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "optiroute_side_system_errors_total", {"system": "router"}
    )
    return value or 0.0


# --- choosing the router -------------------------------------------------------------------


def test_auto_is_learned_when_its_dependencies_are_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_kind(Settings(router="auto")) == "learned"  # numpy, tokenizers: here
    assert resolve_kind(Settings(router="rules")) == "rules"
    assert resolve_kind(Settings(router="llm")) == "llm"
    real = router_setup.find_spec
    monkeypatch.setattr(
        router_setup, "find_spec", lambda name: None if name == "tokenizers" else real(name)
    )
    assert resolve_kind(Settings(router="auto")) == "rules"
    assert resolve_kind(Settings(router="learned")) == "learned"  # asked for: tried, logged


def test_router_settings_are_validated() -> None:
    from optiroute_mw.settings import SettingsError

    with pytest.raises(SettingsError, match="OPTIROUTE_ROUTER"):
        Settings.from_env({"OPTIROUTE_ROUTER": "magic"})
    with pytest.raises(SettingsError, match="OPTIROUTE_ROUTER_STRONG_SHARE"):
        Settings.from_env({"OPTIROUTE_ROUTER_STRONG_SHARE": "1.5"})
    with pytest.raises(SettingsError, match="OPTIROUTE_ROUTER_WEIGHTS"):
        Settings.from_env({"OPTIROUTE_ROUTER_WEIGHTS": "/no/such/weights.npz"})


async def test_learned_falls_back_to_rules_when_its_weights_are_unreadable(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    broken = tmp_path / "weights.npz"
    broken.write_bytes(b"not a weights file")
    settings = Settings(router="learned", router_weights=str(broken))
    setup = RouterSetup(settings, metrics=metrics)
    await setup.start()
    assert not await setup.ready()
    assert setup.active_kind == "rules"
    assert side_errors(metrics) == 1.0
    decision = await setup.decide(exchange(EASY))
    assert decision.source == "rules"
    assert decision.tier == "simple"


async def test_a_failing_learned_model_falls_back_per_request_and_is_counted() -> None:
    class Broken:
        def predict_weak_ok(self, text: str) -> float:
            raise RuntimeError("tokenizer exploded")

    metrics = Metrics()
    setup = RouterSetup(Settings(router="rules"), metrics=metrics)
    learned = LearnedClassifier(
        Broken(),  # type: ignore[arg-type]
        TierCuts.calibrated(LearnedRouter.load()),
        on_failure=setup.failed,
    )
    for _ in range(3):
        decision = await learned.decide(exchange(DESIGN))
        assert decision.source == "rules"
        assert decision.tier == "complex"
    assert side_errors(metrics) == 3.0  # counted each time, logged once


async def test_middleware_survives_a_router_that_raises() -> None:
    class Raises:
        async def decide(self, exchange: Exchange) -> Classification:
            raise ValueError("bug")

    seen: list[Classification | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["state"][STATE_KEY].classification)

    ex = exchange(EASY)
    scope: dict[str, Any] = {"type": "http", "path": "/v1/chat/completions", "state": {}}
    scope["state"][STATE_KEY] = ex
    await ClassifyMiddleware(app, router=Raises())(scope, None, None)  # type: ignore[arg-type]
    assert seen[0] is not None and seen[0].source == "rules"


# --- tier cuts ------------------------------------------------------------------------------


def test_tier_cuts_from_a_share_or_a_quality_target() -> None:
    model = LearnedRouter.load()
    by_share = TierCuts.calibrated(model, strong_share=0.3, medium_share=0.2)
    assert by_share.strong_share == 0.3
    assert by_share.complex_below == model.threshold_for_strong_share(0.3)
    assert by_share.medium_below == model.threshold_for_strong_share(0.5)
    assert by_share.tier(by_share.complex_below - 1e-6) == "complex"
    assert by_share.tier(by_share.complex_below) == "medium"
    assert by_share.tier(by_share.medium_below) == "simple"
    lenient = TierCuts.calibrated(model, quality_target=0.9)
    strict = TierCuts.calibrated(model, quality_target=0.99)
    assert lenient.strong_share < strict.strong_share
    assert lenient.complex_below <= strict.complex_below
    none = TierCuts.calibrated(model, strong_share=0.0, medium_share=0.0)
    assert none.tier(0.0) == "simple"


def test_routing_order_score_puts_the_rules_floor_first() -> None:
    floor = Classification("complex", 0.1, {"p_weak_ok": 0.9, "rules_complex": 1.0}, "learned")
    plain = Classification("simple", 0.2, {"p_weak_ok": 0.8, "rules_complex": 0.0}, "learned")
    assert routing_order_score(floor) < routing_order_score(plain)
    assert routing_order_score(Classification("medium", 2.5, {}, "rules")) == -2.5


# --- the learned router --------------------------------------------------------------------


async def test_learned_router_runs_without_the_embedding_model() -> None:
    # no OPTIROUTE_EMBED_MODEL_PATH, no download: the weights carry the vocabulary
    setup = RouterSetup(Settings(router="auto", embed_model_path=None))
    await setup.start()
    assert await setup.ready() and setup.active_kind == "learned"
    easy, hard = exchange(EASY), exchange(HARD)
    first = await setup.decide(easy)
    second = await setup.decide(hard)
    assert first.source == second.source == "learned"
    assert second.features["p_weak_ok"] < first.features["p_weak_ok"]
    assert easy.embedding is None  # nothing embedded: the semantic cache owns that


def test_routing_needs_no_numpy() -> None:
    # an idle sidecar stays small: the learned router runs on tokenizers and plain Python
    code = (
        "import sys\n"
        "from optiroute_mw.server import create_app\n"
        "from optiroute_mw.classify.learned import LearnedRouter\n"
        "assert 0 < LearnedRouter.load().predict_weak_ok('what is 2+2') < 1\n"
        "print('numpy' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


@needs_model
def test_the_router_tokenizes_as_the_embedding_model_does() -> None:
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(os.path.join(str(MODEL_PATH), "tokenizer.json"))
    reference.no_truncation()
    reference.no_padding()
    router = LearnedRouter.load()
    for text in (EASY, HARD, DESIGN, "naïve Café: 3.14159 ≠ π, 東京 🙂", "def f(x): return x**2"):
        assert router.token_ids(text) == reference.encode(text, add_special_tokens=False).ids


async def test_learned_tiers_on_hand_written_prompts() -> None:
    setup = RouterSetup(Settings(router="learned"))
    await setup.start()
    assert await setup.ready()
    assert (await setup.decide(exchange("hi there!"))).tier == "simple"
    # the rules' complex tier is a floor for what the learned model never saw
    design = await setup.decide(exchange(DESIGN))
    assert design.tier == "complex" and design.features["rules_complex"] == 1.0
    # a strong share of 1 sends everything to the strong tier, 0 nothing
    all_strong = RouterSetup(Settings(router="learned", router_strong_share=1.0))
    await all_strong.start()
    assert await all_strong.ready()
    assert (await all_strong.decide(exchange("hi there!"))).tier == "complex"


def test_sidecar_routes_with_the_learned_router(make_settings: Any, fake: FakeOpenAI) -> None:
    settings = make_settings(router="learned")
    with ServerThread(create_app(settings)) as server:
        body = {"model": "large", "messages": [{"role": "user", "content": "hi there!"}]}
        response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 200
        assert response.headers["x-optiroute-tier"] == "simple"
        assert response.headers["x-optiroute-model"] == "small"
        body["messages"] = [{"role": "user", "content": DESIGN}]
        response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)
        assert response.headers["x-optiroute-tier"] == "complex"
        assert response.headers["x-optiroute-model"] == "large"


# --- the LLM classifier against the fake backend -------------------------------------------


@pytest.fixture
async def outbound() -> Any:
    client = OutboundClient(Settings(read_timeout_s=5.0))
    yield client
    await client.aclose()


def rating_classifier(
    fake: FakeOpenAI, client: OutboundClient, timeout_s: float = 2.0
) -> tuple[LLMClassifier, Metrics]:
    backend = BackendSpec(name="rater", base_url=fake.base_url)
    model = ModelSpec(name="rater-model", backend="rater", tier="simple")
    registry = Registry([backend], [model])
    settings = Settings(read_timeout_s=5.0)
    metrics = Metrics()
    setup = RouterSetup(Settings(router="llm", router_llm_timeout_s=timeout_s), metrics=metrics)
    setup.bind(registry, Forwarder(registry, client, settings))
    assert isinstance(setup.active, LLMClassifier)
    return setup.active, metrics


@pytest.mark.parametrize(("answer", "tier"), [("1", "simple"), ("2", "medium"), ("3.", "complex")])
async def test_llm_rating_sets_the_tier(
    fake: FakeOpenAI, outbound: OutboundClient, answer: str, tier: str
) -> None:
    classifier, _ = rating_classifier(fake, outbound)
    fake.script(Fault(content=answer))
    decision = await classifier.decide(exchange(EASY))
    assert (decision.tier, decision.source) == (tier, "llm")
    sent = fake.requests[-1].json
    assert sent["model"] == "rater-model" and sent["max_tokens"] == 4
    assert EASY in sent["messages"][0]["content"]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(delay_s=1.5),
        Fault(status=500),
        Fault(content="I think it is hard"),
        Fault(malformed_json=True),
    ],
)
async def test_llm_classifier_falls_back_to_rules(
    fake: FakeOpenAI, outbound: OutboundClient, fault: Fault
) -> None:
    classifier, metrics = rating_classifier(fake, outbound, timeout_s=0.5)
    fake.always(fault)
    started = asyncio.get_running_loop().time()
    decision = await classifier.decide(exchange(DESIGN))
    assert asyncio.get_running_loop().time() - started < 1.4  # the strict timeout held
    assert (decision.tier, decision.source) == ("complex", "rules")
    assert side_errors(metrics) == 1.0
    fake.always(None)


def test_llm_router_without_a_model_stays_on_rules() -> None:
    setup = RouterSetup(Settings(router="llm", router_llm_model="nope"), metrics=Metrics())
    registry = Registry([BackendSpec(name="b", base_url="http://b.test")], [])
    setup.bind(registry, None)  # type: ignore[arg-type]
    assert setup.active_kind == "rules"
