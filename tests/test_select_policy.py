"""The selector's scoring by mode and its hard constraints (beyond test_classify_select)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from optiroute_mw.exchange import Classification, Exchange
from optiroute_mw.health import Health
from optiroute_mw.registry import BackendSpec, ModelSpec, Registry
from optiroute_mw.select.balance import Balancer
from optiroute_mw.select.middleware import read_max_latency
from optiroute_mw.select.needs import needs_of, text_tokens
from optiroute_mw.select.policy import NoModel, Selector
from optiroute_mw.wire import RequestError, parse_request

BACKENDS = [BackendSpec(name=n, base_url=f"http://{n}.test") for n in ("b1", "b2", "b3")]


def spec(name: str, tier: str, price: float, quality: float, **extra: Any) -> ModelSpec:
    return ModelSpec(
        name=name,
        backend=extra.pop("backend", "b1"),
        tier=tier,  # type: ignore[arg-type]
        input_per_mtok=price / 4,
        output_per_mtok=price * 3 / 4,
        quality=quality,
        **extra,
    )


LOCAL = spec("local", "simple", 0.0, 0.2, context_window=2048)
MINI = spec("mini", "medium", 0.75, 0.75, context_window=128_000, capabilities=frozenset({"json"}))
FAST = spec("fast", "medium", 1.2, 0.7, context_window=32_000)
BIG = spec(
    "big",
    "complex",
    12.5,
    0.9,
    context_window=128_000,
    capabilities=frozenset({"tools", "json", "vision"}),
)
HUGE = spec("huge", "complex", 40.0, 0.95, context_window=200_000)
MODELS = [LOCAL, MINI, FAST, BIG, HUGE]


def make(
    tier: str = "medium", content: Any = "hello", mode: str = "balanced", **fields: Any
) -> Exchange:
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": content}]}
    body.update(fields.pop("body", {}))
    raw = json.dumps(body).encode()
    ex = Exchange(
        request_id="t", kind="chat", path="/v1/chat/completions", body=raw,
        request=parse_request("chat", raw),
    )  # fmt: skip
    ex.classification = Classification(tier=tier, score=0)
    ex.mode = mode
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


def selector(health: Health | None = None, *models: ModelSpec) -> Selector:
    registry = Registry(BACKENDS, list(models or MODELS))
    return Selector(registry, health=health)


def names(selection: Any) -> list[str]:
    return [m.name for m in selection.candidates]


# --- scoring by mode ----------------------------------------------------------------------


def test_balanced_without_latency_data_is_the_cheapest_covering_model() -> None:
    selection = selector().select(make("medium"))
    assert names(selection) == ["mini", "fast", "big", "huge", "local"]
    assert selection.reason == "balanced: cheapest model for tier medium"


def test_speed_mode_prefers_the_faster_model_once_latency_is_learned() -> None:
    health = Health()
    for _ in range(5):
        health.observe(MINI.key, 2.0)
        health.observe(FAST.key, 0.2)
    sel = selector(health)
    assert sel.select(make("medium", mode="speed")).primary.name == "fast"
    assert "best speed score" in sel.select(make("medium", mode="speed")).reason
    # balanced weighs price first: a 10x latency gap outweighs a 1.6x price gap here
    assert sel.select(make("medium", mode="balanced")).primary.name == "fast"
    # cost ignores latency altogether
    assert sel.select(make("medium", mode="cost")).primary.name == "local"
    assert sel.select(make("complex", mode="cost")).primary.name == "mini"


def test_balanced_keeps_the_cheaper_model_when_latencies_are_close() -> None:
    health = Health()
    health.observe(MINI.key, 0.5)
    health.observe(FAST.key, 0.4)
    assert selector(health).select(make("medium")).primary.name == "mini"


def test_quality_mode_orders_by_quality_whatever_the_tier() -> None:
    assert names(selector().select(make("simple", mode="quality"))) == [
        "huge", "big", "mini", "fast", "local",
    ]  # fmt: skip


def test_any_number_of_models_per_tier_are_ordered_then_the_rest_strongest_first() -> None:
    extra = spec("mid2", "medium", 0.5, 0.6)
    selection = selector(None, *MODELS, extra).select(make("medium"))
    assert names(selection) == ["mid2", "mini", "fast", "big", "huge", "local"]


# --- hard constraints ---------------------------------------------------------------------


def test_tools_require_a_model_that_declares_them() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    selection = selector().select(make("simple", body={"tools": tools}))
    assert names(selection) == ["big"]
    assert "needs tools" in selection.reason


def test_json_mode_and_images_are_capabilities() -> None:
    fmt = {"response_format": {"type": "json_object"}}
    assert names(selector().select(make("simple", body=fmt))) == ["mini", "big"]
    image = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    assert names(selector().select(make("simple", content=image))) == ["big"]
    assert needs_of(make(content=image).request).capabilities == {"vision"}
    assert needs_of(make(body=fmt).request).capabilities == {"json"}
    text = {"response_format": {"type": "text"}}
    assert needs_of(make(body=text).request).capabilities == frozenset()


def test_a_capability_no_model_declares_is_not_enforced() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    plain = [LOCAL, MINI, HUGE]
    selection = selector(None, *plain).select(make("simple", body={"tools": tools}))
    # MINI declares json, nobody declares tools: route as usual
    assert selection.primary.name == "local"


def test_a_required_capability_beats_the_price_ceiling() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    ex = make("simple", body={"tools": tools, "model": "mini"})
    assert names(selector().select(ex)) == ["big"]


def test_nothing_with_the_capability_and_room_is_400() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    too_long = "word " * 200_000  # ~285k tokens: more than big's 128k window
    with pytest.raises(NoModel) as info:
        selector().select(make("simple", content=too_long, body={"tools": tools}))
    assert info.value.status == 400 and "tools" in info.value.message


def test_context_window_counts_dense_scripts_as_more_tokens() -> None:
    assert text_tokens("hello world") == 4
    assert text_tokens("日本語のテキスト") == 9
    # a CJK character is a token: 1,500 of them plus the default 256-token answer fit
    # local's 2,048-token window, 2,000 do not
    assert selector().select(make("simple", content="語" * 1500)).primary.name == "local"
    assert "local" not in names(selector().select(make("simple", content="語" * 2000)))


def test_max_latency_excludes_models_known_to_be_slower() -> None:
    health = Health()
    health.observe(LOCAL.key, 3.0)
    health.observe(MINI.key, 0.8)
    ex = make("simple", max_latency_s=1.0)
    selection = selector(health).select(ex)
    assert "local" not in names(selection)
    assert selection.primary.name == "mini"
    # unknown latency passes; nothing fast enough is a clear 400
    assert "huge" in names(selection)
    for model in MODELS:
        health.observe(model.key, 5.0)
    with pytest.raises(NoModel) as info:
        selector(health).select(make("simple", max_latency_s=1.0))
    assert info.value.status == 400 and info.value.code == "no_model_fits"


def test_max_latency_header_is_parsed() -> None:
    ex = make()
    read_max_latency(ex, {"headers": [(b"x-optiroute-max-latency-ms", b"250")]})
    assert ex.max_latency_s == 0.25
    for bad in (b"soon", b"-5", b"0", b"inf"):
        with pytest.raises(RequestError):
            read_max_latency(make(), {"headers": [(b"x-optiroute-max-latency-ms", bad)]})


def test_max_cost_with_the_mode() -> None:
    # 256 default output tokens: big ~0.0024 USD, mini ~0.00014
    ex = make("complex", mode="quality", max_cost_usd=0.001)
    assert names(selector().select(ex)) == ["mini", "fast", "local"]


# --- overrides ------------------------------------------------------------------------------


def test_pin_beats_mode_tier_and_capabilities_but_not_the_window() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    ex = make("complex", mode="quality", pinned_model="local", body={"tools": tools})
    selection = selector().select(ex)
    assert names(selection) == ["local"] and selection.reason == "pinned"
    with pytest.raises(NoModel):
        selector().select(make(content="word " * 3000, pinned_model="local"))


def test_pinned_replicas_are_balanced() -> None:
    replicas = [spec("big", "complex", 12.5, 0.9, backend=b) for b in ("b1", "b2", "b3")]
    health = Health()
    registry = Registry(BACKENDS, replicas)
    sel = Selector(registry, balancer=Balancer(health, random.Random(7)))
    assert sel.select(make(pinned_model="big")).primary.backend == "b1"  # idle: in order
    firsts = []
    for _ in range(60):  # calls still in flight spread the next ones
        primary = sel.select(make(pinned_model="big")).primary
        health.begin(primary.key)
        firsts.append(primary.backend)
    assert {firsts.count(b) for b in ("b1", "b2", "b3")} == {20}
    selection = sel.select(make(pinned_model="big"))
    assert sorted(m.backend for m in selection.candidates) == ["b1", "b2", "b3"]


# --- the kept ranking ---------------------------------------------------------------------


def test_a_ranking_is_kept_for_its_time_and_only_for_the_same_question() -> None:
    import time

    health = Health()
    sel = Selector(Registry(BACKENDS, MODELS), health=health, rank_ttl_s=0.2)
    assert sel.select(make("medium", mode="speed")).primary.name == "mini"  # no latency yet
    for _ in range(5):
        health.observe(MINI.key, 2.0)
        health.observe(FAST.key, 0.2)
    # within its time the kept ranking answers the same question ...
    assert sel.select(make("medium", mode="speed")).primary.name == "mini"
    # ... but not another tier, mode or a request with limits of its own
    assert sel.select(make("medium", mode="balanced")).primary.name == "fast"
    assert sel.select(make("medium", mode="speed", max_cost_usd=1.0)).primary.name == "fast"
    # a prompt too long for the small window is another question: "local" never shows up
    long_prompt = "word " * 4000
    assert "local" not in names(sel.select(make("simple", content=long_prompt, mode="cost")))
    assert names(sel.select(make("simple", mode="cost")))[0] == "local"
    time.sleep(0.25)
    assert sel.select(make("medium", mode="speed")).primary.name == "fast"  # learned now


def test_no_ranking_is_kept_by_default() -> None:
    health = Health()
    sel = Selector(Registry(BACKENDS, MODELS), health=health)
    assert sel.select(make("medium", mode="speed")).primary.name == "mini"
    for _ in range(5):
        health.observe(MINI.key, 2.0)
        health.observe(FAST.key, 0.2)
    assert sel.select(make("medium", mode="speed")).primary.name == "fast"
