"""The rule classifier's tiers, and the selector's choice of model and fallbacks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from optiroute_mw.classify.rules import RuleClassifier
from optiroute_mw.exchange import Classification, Exchange
from optiroute_mw.registry import BackendSpec, ModelSpec, Registry
from optiroute_mw.select.policy import NoModel, Selector
from optiroute_mw.settings import Settings
from optiroute_mw.wire import parse_request

# --- classifier -------------------------------------------------------------------------


def chat_request(*contents: str, **fields: Any) -> Any:
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
    body = {"model": "auto", "messages": messages, **fields}
    return parse_request("chat", json.dumps(body).encode())


SIMPLE = [
    "hi there!",
    "Hello",
    "What is the capital of France?",
    "Who is the author of Hamlet?",
    "Thanks, that helps.",
    "translate 'good morning' into Spanish",
]
MEDIUM = [
    "Explain why the sky is blue and compare it with the colour of sunsets.",
    "Write a python function that reverses a string.",
    "Summarize the pros and cons of remote work in a short paragraph.",
]
COMPLEX = [
    "Design a distributed, horizontally scalable rate limiter for a microservices "
    "architecture.\n"
    "1. First describe the algorithm and its complexity.\n"
    "2. Then explain the consensus protocol you would use and analyze the latency and "
    "throughput trade-offs.\n"
    "3. Finally justify the database choice; the answer must be at most 800 words.",
    "Prove that the sum of the first n odd numbers equals n^2. First state the theorem, then "
    "derive the induction step, then explain why the base case holds, and finally evaluate "
    "whether a direct proof would be simpler.",
]


@pytest.mark.parametrize("prompt", SIMPLE)
def test_greetings_and_trivia_are_simple(prompt: str) -> None:
    result = RuleClassifier().classify(chat_request(prompt))
    assert result.tier == "simple", result
    assert result.features.get("simple_opener") == 1.0
    assert result.score < 1.5
    assert result.source == "rules"


@pytest.mark.parametrize("prompt", MEDIUM)
def test_in_between_prompts_are_medium(prompt: str) -> None:
    result = RuleClassifier().classify(chat_request(prompt))
    assert result.tier == "medium", result
    assert 1.5 <= result.score < 4.0


@pytest.mark.parametrize("prompt", COMPLEX)
def test_multi_part_design_or_proof_prompts_are_complex(prompt: str) -> None:
    result = RuleClassifier().classify(chat_request(prompt))
    assert result.tier == "complex", result
    assert result.score >= 4.0
    assert "reasoning" in result.features
    assert result.features.get("multi_step") == 1.0


def test_features_explain_the_decision() -> None:
    design = RuleClassifier().classify(chat_request(COMPLEX[0])).features
    assert {"technical", "reasoning", "multi_step", "constraints", "length"} <= set(design)
    assert "math" not in design and "simple_opener" not in design
    proof = RuleClassifier().classify(chat_request(COMPLEX[1])).features
    assert "math" in proof
    code = RuleClassifier().classify(chat_request(MEDIUM[1])).features
    assert code.get("code") == 1.0


def test_score_is_the_weighted_sum_of_features() -> None:
    from optiroute_mw.classify.rules import WEIGHTS

    result = RuleClassifier().classify(chat_request(COMPLEX[0]))
    expected = sum(WEIGHTS[name] * value for name, value in result.features.items())
    assert result.score == pytest.approx(expected, abs=1e-3)


def test_only_the_last_user_message_is_scored() -> None:
    request = chat_request(COMPLEX[0], "Sure, here it is.", "thanks!")
    result = RuleClassifier().classify(request)
    assert "technical" not in result.features
    assert "depth" in result.features  # but a long conversation still adds depth


def test_conversation_depth_raises_the_score() -> None:
    prompt = "Can you say more about that?"
    short = RuleClassifier().classify(chat_request(prompt))
    long = RuleClassifier().classify(chat_request("a", "b", "c", "d", "e", "f", prompt))
    assert "depth" not in short.features
    assert long.features["depth"] > 0
    assert long.score > short.score


def test_length_saturates() -> None:
    result = RuleClassifier().classify(chat_request("word " * 5000))
    assert result.features["length"] == 2.0


def test_thresholds_are_configurable() -> None:
    request = chat_request(MEDIUM[0])
    assert RuleClassifier(medium_at=100, complex_at=200).classify(request).tier == "simple"
    assert RuleClassifier(medium_at=0.1, complex_at=0.2).classify(request).tier == "complex"


def test_completions_request_is_classified_from_its_prompt() -> None:
    body = json.dumps({"model": "m", "prompt": COMPLEX[1]}).encode()
    assert RuleClassifier().classify(parse_request("completions", body)).tier == "complex"


# --- selector ---------------------------------------------------------------------------

BACKENDS = [
    BackendSpec(name="b1", base_url="http://b1.test"),
    BackendSpec(name="b2", base_url="http://b2.test"),
]
TINY = ModelSpec(
    name="tiny",
    backend="b1",
    tier="simple",
    input_per_mtok=0.1,
    output_per_mtok=0.4,
    quality=0.2,
    context_window=2048,
)
MID = ModelSpec(
    name="mid",
    backend="b1",
    tier="medium",
    input_per_mtok=0.5,
    output_per_mtok=1.5,
    quality=0.6,
    context_window=16_000,
)
BIG = ModelSpec(
    name="big",
    backend="b1",
    tier="complex",
    input_per_mtok=2.5,
    output_per_mtok=10.0,
    quality=0.9,
    context_window=128_000,
)
HUGE = ModelSpec(
    name="huge",
    backend="b1",
    tier="complex",
    input_per_mtok=10.0,
    output_per_mtok=30.0,
    quality=0.95,
    context_window=128_000,
    aliases=("best",),
)
ALL = [HUGE, TINY, BIG, MID]  # out of price order on purpose


def registry(*extra: ModelSpec) -> Registry:
    return Registry(BACKENDS, [*ALL, *extra])


def exchange(
    tier: str = "medium", model: str = "auto", content: str = "hello", **fields: Any
) -> Exchange:
    body_dict: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    body_dict.update(fields.pop("body", {}))
    body = json.dumps(body_dict).encode()
    ex = Exchange(
        request_id="t",
        kind="chat",
        path="/v1/chat/completions",
        body=body,
        request=parse_request("chat", body),
    )
    ex.classification = Classification(tier=tier, score=0)
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


def names(models: list[ModelSpec]) -> list[str]:
    return [m.name for m in models]


def test_registry_orders_models_cheapest_first() -> None:
    assert names(registry().models) == ["tiny", "mid", "big", "huge"]


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        ("simple", "tiny"),
        ("medium", "mid"),
        ("complex", "big"),
    ],
)
def test_cheapest_covering_model_for_each_tier(tier: str, expected: str) -> None:
    selection = Selector(registry()).select(exchange(tier))
    assert selection.primary.name == expected
    assert "cheapest" in selection.reason


def test_no_classification_is_treated_as_medium() -> None:
    ex = exchange()
    ex.classification = None
    assert Selector(registry()).select(ex).primary.name == "mid"


def test_auto_has_no_ceiling() -> None:
    selection = Selector(registry()).select(exchange("complex", "auto"))
    assert names(selection.candidates) == ["big", "huge", "mid", "tiny"]


def test_requested_model_is_a_price_ceiling() -> None:
    selection = Selector(registry()).select(exchange("complex", "mid"))
    assert selection.primary.name == "mid"
    assert "huge" not in names(selection.candidates)
    assert "big" not in names(selection.candidates)
    assert "no model covers" in selection.reason


def test_ceiling_still_allows_cheaper_covering_models() -> None:
    selection = Selector(registry()).select(exchange("simple", "big"))
    assert selection.primary.name == "tiny"
    assert set(names(selection.candidates)) == {"tiny", "mid", "big"}


def test_ceiling_from_known_list_price_for_a_model_not_served() -> None:
    # gpt-4o lists at 2.5 + 10 per 1M tokens: big fits under it, huge does not
    selection = Selector(registry()).select(exchange("complex", "gpt-4o"))
    assert selection.primary.name == "big"
    assert "huge" not in names(selection.candidates)


def test_requested_model_found_by_alias_sets_the_ceiling() -> None:
    selection = Selector(registry()).select(exchange("complex", "best"))
    assert "huge" in names(selection.candidates)
    assert selection.primary.name == "big"


def test_unknown_model_is_routed_as_auto() -> None:
    selector = Selector(registry())
    for tier in ("simple", "medium", "complex"):
        unknown = selector.select(exchange(tier, "no-such-model"))
        auto = selector.select(exchange(tier, "auto"))
        assert names(unknown.candidates) == names(auto.candidates)


def test_unknown_model_is_404_when_strict() -> None:
    selector = Selector(registry(), Settings(strict_models=True))
    with pytest.raises(NoModel) as info:
        selector.select(exchange("simple", "no-such-model"))
    assert info.value.status == 404
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"
    # auto, a served model and a known list-priced model are still fine
    assert selector.select(exchange("simple", "auto")).primary.name == "tiny"
    assert selector.select(exchange("simple", "big")).primary.name == "tiny"
    assert selector.select(exchange("simple", "gpt-4o")).primary.name == "tiny"


def test_pin_wins_over_tier_ceiling_and_mode() -> None:
    selection = Selector(registry()).select(
        exchange("simple", "tiny", pinned_model="huge", mode="cost")
    )
    assert selection.primary.name == "huge"
    assert selection.fallbacks == []
    assert selection.reason == "pinned"


def test_pin_by_alias() -> None:
    assert Selector(registry()).select(exchange(pinned_model="best")).primary.name == "huge"


def test_pin_replicas_become_the_fallbacks() -> None:
    replica = ModelSpec(
        name="big",
        backend="b2",
        tier="complex",
        input_per_mtok=2.5,
        output_per_mtok=10.0,
        quality=0.9,
        context_window=128_000,
    )
    selection = Selector(registry(replica)).select(exchange(pinned_model="big"))
    assert [m.key for m in selection.candidates] == ["big@b1", "big@b2"]


def test_unknown_pin_is_no_model() -> None:
    with pytest.raises(NoModel) as info:
        Selector(registry()).select(exchange(pinned_model="nope"))
    assert info.value.status == 404
    assert "nope" in info.value.message


def test_pin_that_cannot_hold_the_prompt_is_no_model() -> None:
    with pytest.raises(NoModel):
        Selector(registry()).select(exchange(content="x" * 12_000, pinned_model="tiny"))


def test_quality_mode_picks_the_strongest_under_the_ceiling() -> None:
    selector = Selector(registry())
    assert selector.select(exchange("simple", "big", mode="quality")).primary.name == "big"
    assert selector.select(exchange("simple", "mid", mode="quality")).primary.name == "mid"
    selection = selector.select(exchange("simple", "auto", mode="quality"))
    assert names(selection.candidates) == ["huge", "big", "mid", "tiny"]


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        ("simple", "tiny"),
        ("medium", "tiny"),
        ("complex", "mid"),
    ],
)
def test_cost_mode_allows_one_tier_lower(tier: str, expected: str) -> None:
    assert Selector(registry()).select(exchange(tier, mode="cost")).primary.name == expected


def test_speed_and_balanced_follow_the_tier() -> None:
    selector = Selector(registry())
    assert selector.select(exchange("complex", mode="speed")).primary.name == "big"
    assert selector.select(exchange("complex", mode="balanced")).primary.name == "big"


def test_prompt_too_long_for_small_model_never_selects_it() -> None:
    long_prompt = "lorem ipsum " * 800  # ~2400 tokens: more than tiny's 2048
    for mode in ("cost", "balanced", "quality"):
        selection = Selector(registry()).select(exchange("simple", content=long_prompt, mode=mode))
        assert "tiny" not in names(selection.candidates)
    selection = Selector(registry()).select(exchange("simple", content=long_prompt))
    assert selection.primary.name == "mid"


def test_requested_output_counts_against_the_context_window() -> None:
    prompt = "x" * 6000  # 1500 tokens
    fits = Selector(registry()).select(exchange("simple", content=prompt, body={"max_tokens": 100}))
    assert fits.primary.name == "tiny"
    too_big = Selector(registry()).select(
        exchange("simple", content=prompt, body={"max_tokens": 1000})
    )
    assert "tiny" not in names(too_big.candidates)


def test_max_cost_excludes_expensive_models() -> None:
    # 256 default output tokens: huge ~0.0077 USD, big ~0.0026, mid ~0.0004
    selection = Selector(registry()).select(exchange("complex", max_cost_usd=0.001))
    assert names(selection.candidates) == ["mid", "tiny"]
    assert "no model covers" in selection.reason


def test_max_cost_nothing_fits_is_400() -> None:
    with pytest.raises(NoModel) as info:
        Selector(registry()).select(exchange("simple", max_cost_usd=0.0))
    assert info.value.status == 400
    assert info.value.code == "no_model_fits"


@pytest.mark.parametrize("mode", ["cost", "balanced", "quality", "speed"])
@pytest.mark.parametrize("tier", ["simple", "medium", "complex"])
@pytest.mark.parametrize("model", ["auto", "tiny", "mid", "big", "huge", "gpt-4o", "other"])
def test_fallbacks_never_include_the_primary(mode: str, tier: str, model: str) -> None:
    selection = Selector(registry()).select(exchange(tier, model, mode=mode))
    keys = [m.key for m in selection.candidates]
    assert selection.primary not in selection.fallbacks
    assert len(keys) == len(set(keys))


def test_fallbacks_are_covering_models_then_the_rest_strongest_first() -> None:
    cheap_mid = ModelSpec(
        name="mid-lite",
        backend="b2",
        tier="medium",
        input_per_mtok=0.3,
        output_per_mtok=1.0,
        quality=0.5,
        context_window=16_000,
    )
    selection = Selector(registry(cheap_mid)).select(exchange("medium"))
    assert selection.primary.name == "mid-lite"
    # covering models cheapest first, then the models below the tier, strongest first
    assert names(selection.fallbacks) == ["mid", "big", "huge", "tiny"]


def test_baseline_price() -> None:
    selector = Selector(registry())
    assert selector.baseline_price("big") == (2.5, 10.0)
    assert selector.baseline_price("gpt-4o-mini") == (0.15, 0.6)
    assert selector.baseline_price("unknown") == (10.0, 30.0)  # the strongest model
    with_baseline = Selector(registry(), Settings(baseline_model="mid"))
    assert with_baseline.baseline_price("unknown") == (0.5, 1.5)
