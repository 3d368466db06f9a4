"""Per-request controls from x-optiroute-* headers and the `optiroute` body object."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from optiroute_mw.exchange import Exchange
from optiroute_mw.ingress.controls import apply_controls, clean_request_id
from optiroute_mw.wire import RequestError, parse_request

MESSAGES = [{"role": "user", "content": "hello"}]


def exchange(**extra: Any) -> Exchange:
    body = json.dumps({"model": "gpt-4o", "messages": MESSAGES, **extra}).encode()
    return Exchange(
        request_id="t",
        kind="chat",
        path="/v1/chat/completions",
        body=body,
        request=parse_request("chat", body),
    )


def scope(*headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "path": "/v1/chat/completions",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }


def apply(ex: Exchange, *headers: tuple[str, str], default_mode: str = "balanced") -> Exchange:
    apply_controls(ex, scope(*headers), default_mode)
    return ex


def refused(ex: Exchange, *headers: tuple[str, str]) -> RequestError:
    with pytest.raises(RequestError) as info:
        apply(ex, *headers)
    assert info.value.status == 400
    return info.value


# --- headers ----------------------------------------------------------------------------


def test_no_controls_gives_the_defaults() -> None:
    ex = apply(exchange(), default_mode="quality")
    assert ex.mode == "quality"
    assert ex.cache_control == "use"
    assert ex.max_cost_usd is None
    assert ex.pinned_model is None


def test_headers_are_parsed() -> None:
    ex = apply(
        exchange(),
        ("x-optiroute-mode", "cost"),
        ("x-optiroute-cache", "refresh"),
        ("x-optiroute-max-cost", "0.0025"),
        ("x-optiroute-model", "big"),
    )
    assert ex.mode == "cost"
    assert ex.cache_control == "refresh"
    assert ex.max_cost_usd == pytest.approx(0.0025)
    assert ex.pinned_model == "big"


@pytest.mark.parametrize("mode", ["cost", "balanced", "quality", "speed"])
def test_every_mode_is_accepted(mode: str) -> None:
    assert apply(exchange(), ("x-optiroute-mode", mode)).mode == mode


@pytest.mark.parametrize("cache", ["use", "bypass", "refresh"])
def test_every_cache_control_is_accepted(cache: str) -> None:
    assert apply(exchange(), ("x-optiroute-cache", cache)).cache_control == cache


def test_zero_max_cost_is_allowed() -> None:
    assert apply(exchange(), ("x-optiroute-max-cost", "0")).max_cost_usd == 0.0


def test_empty_model_header_pins_nothing() -> None:
    assert apply(exchange(), ("x-optiroute-model", "")).pinned_model is None


def test_empty_mode_header_falls_back_to_the_default() -> None:
    assert apply(exchange(), ("x-optiroute-mode", ""), default_mode="cost").mode == "cost"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-optiroute-mode", "fastest"),
        ("x-optiroute-mode", "COST"),
        ("x-optiroute-cache", "sometimes"),
        ("x-optiroute-max-cost", "cheap"),
        ("x-optiroute-max-cost", "-0.01"),
        ("x-optiroute-max-cost", ""),
    ],
)
def test_bad_header_values_are_400_naming_the_header(name: str, value: str) -> None:
    error = refused(exchange(), (name, value))
    assert error.param == name
    assert name in error.message


def test_nan_max_cost_is_refused() -> None:
    error = refused(exchange(), ("x-optiroute-max-cost", "nan"))
    assert error.param == "x-optiroute-max-cost"


# --- Cache-Control ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no-store", "bypass"),
        ("No-Store", "bypass"),
        ("no-cache", "refresh"),
        ("max-age=0, no-cache", "refresh"),
        ("no-cache, no-store", "bypass"),
        ("max-age=60", "use"),
    ],
)
def test_cache_control_header(value: str, expected: str) -> None:
    assert apply(exchange(), ("cache-control", value)).cache_control == expected


def test_explicit_cache_control_wins_over_cache_control_header() -> None:
    ex = apply(exchange(), ("cache-control", "no-store"), ("x-optiroute-cache", "use"))
    assert ex.cache_control == "use"


# --- the optiroute body object ------------------------------------------------------------


def test_body_object_mirrors_the_headers() -> None:
    ex = exchange(
        optiroute={"mode": "quality", "cache": "bypass", "max_cost": 0.5, "model": "huge"}
    )
    apply(ex)
    assert ex.mode == "quality"
    assert ex.cache_control == "bypass"
    assert ex.max_cost_usd == 0.5
    assert ex.pinned_model == "huge"


def test_body_object_is_stripped_from_the_body() -> None:
    ex = exchange(optiroute={"mode": "cost"}, temperature=0.5, vendor_field={"a": 1})
    apply(ex)
    sent = msgspec.json.decode(ex.body)
    assert "optiroute" not in sent
    assert b'"optiroute"' not in ex.body
    assert sent == {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "temperature": 0.5,
        "vendor_field": {"a": 1},
    }
    assert "optiroute" not in ex.raw()  # the cached decoded view is refreshed too
    assert b"optiroute" not in ex.body_for("other-model")


def test_headers_win_over_the_body_object() -> None:
    ex = exchange(optiroute={"mode": "quality", "model": "huge"})
    apply(ex, ("x-optiroute-mode", "cost"), ("x-optiroute-model", "tiny"))
    assert ex.mode == "cost"
    assert ex.pinned_model == "tiny"
    assert b"optiroute" not in ex.body


def test_body_without_controls_is_left_byte_for_byte() -> None:
    ex = exchange()
    before = ex.body
    apply(ex, ("x-optiroute-mode", "cost"))
    assert ex.body is before


def test_the_word_optiroute_in_a_message_is_not_a_control() -> None:
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": 'what does "optiroute" do?'}]}
    ).encode()
    ex = Exchange(
        request_id="t",
        kind="chat",
        path="/v1/chat/completions",
        body=body,
        request=parse_request("chat", body),
    )
    apply(ex)
    assert ex.body == body
    assert ex.mode == "balanced"


def test_null_body_object_is_ignored() -> None:
    ex = apply(exchange(optiroute=None))
    assert ex.mode == "balanced"


@pytest.mark.parametrize("value", ["cost", 1, ["mode", "cost"]])
def test_body_object_must_be_an_object(value: Any) -> None:
    error = refused(exchange(optiroute=value))
    assert error.param == "optiroute"


@pytest.mark.parametrize(
    ("controls", "param"),
    [
        ({"mode": "fastest"}, "x-optiroute-mode"),
        ({"mode": 3}, "x-optiroute-mode"),
        ({"cache": "never"}, "x-optiroute-cache"),
        ({"max_cost": "a lot"}, "x-optiroute-max-cost"),
        ({"max_cost": -1}, "x-optiroute-max-cost"),
        ({"max_cost": {"usd": 1}}, "x-optiroute-max-cost"),
        ({"model": 42}, "x-optiroute-model"),
        ({"model": ["a", "b"]}, "x-optiroute-model"),
    ],
)
def test_bad_body_controls_are_400(controls: dict[str, Any], param: str) -> None:
    error = refused(exchange(optiroute=controls))
    assert error.param == param


@pytest.mark.parametrize("controls", [{"mode": ["cost"]}, {"cache": {"x": 1}}])
def test_unhashable_body_controls_are_400(controls: dict[str, Any]) -> None:
    refused(exchange(optiroute=controls))


# --- request ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "req-123",
        "A.B_C:D-9",
        "0" * 128,
        "550e8400-e29b-41d4-a716-446655440000",
    ],
)
def test_safe_request_ids_are_kept(value: str) -> None:
    assert clean_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "0" * 129,
        "has space",
        "semi;colon",
        'quote"d',
        "new\nline",
        "tab\there",
        "ünïcode",
        "<script>",
        "a/b",
        "x\r\ny",
    ],
)
def test_odd_request_ids_are_dropped(value: str | None) -> None:
    assert clean_request_id(value) is None


def test_request_id_with_trailing_newline_is_dropped() -> None:
    assert clean_request_id("abc\n") is None
