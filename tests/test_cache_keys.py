"""The exact-cache key: what must not change it, and what must."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optiroute_mw.cache.keys import exact_key

PROPERTY = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

BASE: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
    ],
    "temperature": 0.2,
    "max_tokens": 64,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "add",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"],
                },
            },
        }
    ],
    "x_vendor": {"flag": True},
}


def key(raw: dict[str, Any], tenant: str = "default", kind: str = "chat") -> str:
    return exact_key(tenant, kind, raw)


# --- strategies -----------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=30)},
        optional={"name": st.text(min_size=1, max_size=8)},
    ),
    min_size=1,
    max_size=4,
)
requests = st.fixed_dictionaries(
    {"model": st.text(min_size=1, max_size=12), "messages": messages},
    optional={
        "temperature": st.floats(min_value=0, max_value=2),
        "max_tokens": st.integers(min_value=1, max_value=4096),
        "tools": st.lists(
            st.dictionaries(st.text(max_size=6), json_values, max_size=3), max_size=2
        ),
        "extra": json_values,
        "metadata": st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    },
)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with the keys of every dict, at every depth, in another order."""
    if isinstance(value, dict):
        items = [(k, shuffled(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


# --- what must not change the key -------------------------------------------------------


@PROPERTY
@given(raw=requests, seed=st.integers(0, 2**32 - 1))
def test_dict_key_order_never_changes_the_key(raw: dict[str, Any], seed: int) -> None:
    other = shuffled(raw, random.Random(seed))
    assert key(other) == key(raw)


@PROPERTY
@given(
    raw=requests,
    indent=st.sampled_from([None, 0, 1, 2, 4, "\t"]),
    separators=st.sampled_from([None, (",", ":"), (", ", ": "), (" ,  ", " :\t")]),
    ensure_ascii=st.booleans(),
    sort_keys=st.booleans(),
)
def test_json_whitespace_never_changes_the_key(
    raw: dict[str, Any], indent: Any, separators: Any, ensure_ascii: bool, sort_keys: bool
) -> None:
    text = json.dumps(
        raw, indent=indent, separators=separators, ensure_ascii=ensure_ascii, sort_keys=sort_keys
    )
    compact = msgspec.json.encode(raw)
    assert key(msgspec.json.decode(text.encode())) == key(msgspec.json.decode(compact))
    assert key(msgspec.json.decode(text.encode())) == key(raw)


@PROPERTY
@given(raw=requests, stream=st.booleans(), include_usage=st.booleans())
def test_stream_and_stream_options_do_not_change_the_key(
    raw: dict[str, Any], stream: bool, include_usage: bool
) -> None:
    streamed = {**raw, "stream": stream, "stream_options": {"include_usage": include_usage}}
    assert key(streamed) == key(raw)


def test_delivery_fields_alone_do_not_change_the_key() -> None:
    plain = key(BASE)
    assert key({**BASE, "stream": True}) == plain
    assert key({**BASE, "stream": False}) == plain
    assert key({**BASE, "stream": True, "stream_options": {"include_usage": True}}) == plain


def test_integral_float_and_int_give_the_same_key() -> None:
    assert key({**BASE, "temperature": 1}) == key({**BASE, "temperature": 1.0})
    assert key({**BASE, "max_tokens": 64.0}) == key(BASE)
    nested_int = copy.deepcopy(BASE)
    nested_float = copy.deepcopy(BASE)
    nested_int["x_vendor"]["weights"] = [1, 2, {"w": 3}]
    nested_float["x_vendor"]["weights"] = [1.0, 2.0, {"w": 3.0}]
    assert key(nested_int) == key(nested_float)
    # a real fraction is not folded
    assert key({**BASE, "temperature": 1.5}) != key({**BASE, "temperature": 1})


def test_same_request_from_json_bytes_in_another_layout() -> None:
    text = json.dumps(BASE, indent=3, sort_keys=True)
    assert key(json.loads(text)) == key(BASE)


# --- what must change the key ------------------------------------------------------------


@PROPERTY
@given(raw=requests, new_model=st.text(min_size=1, max_size=12))
def test_model_changes_the_key(raw: dict[str, Any], new_model: str) -> None:
    if new_model == raw["model"]:
        new_model += "x"
    assert key({**raw, "model": new_model}) != key(raw)


@PROPERTY
@given(raw=requests, data=st.data())
def test_any_message_change_changes_the_key(raw: dict[str, Any], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(raw["messages"]) - 1))
    other = copy.deepcopy(raw)
    other["messages"][index]["content"] += data.draw(st.text(min_size=1, max_size=5))
    assert key(other) != key(raw)


@PROPERTY
@given(raw=requests, name=st.text(min_size=1, max_size=10))
def test_unknown_field_changes_the_key(raw: dict[str, Any], name: str) -> None:
    field = "zz_" + name
    assert key({**raw, field: True}) != key(raw)


def test_single_changes_each_change_the_key() -> None:
    plain = key(BASE)
    variants: list[dict[str, Any]] = []
    variants.append({**BASE, "model": "gpt-4o"})
    variants.append({**BASE, "temperature": 0.3})
    variants.append({**BASE, "max_tokens": 65})
    variants.append({**BASE, "seed": 1})
    variants.append({**BASE, "x_vendor": {"flag": False}})
    variants.append({**BASE, "unknown_field": None})
    changed_message = copy.deepcopy(BASE)
    changed_message["messages"][0]["content"] = "You are verbose."
    variants.append(changed_message)
    changed_role = copy.deepcopy(BASE)
    changed_role["messages"][0]["role"] = "developer"
    variants.append(changed_role)
    reordered = copy.deepcopy(BASE)
    reordered["messages"].reverse()
    variants.append(reordered)
    tool_deep = copy.deepcopy(BASE)
    tool_deep["tools"][0]["function"]["parameters"]["properties"]["b"]["type"] = "integer"
    variants.append(tool_deep)
    tool_required = copy.deepcopy(BASE)
    tool_required["tools"][0]["function"]["parameters"]["required"] = ["b", "a"]
    variants.append(tool_required)
    keys = [key(v) for v in variants]
    assert plain not in keys
    assert len(set(keys)) == len(keys)


def test_true_and_one_are_different() -> None:
    assert key({**BASE, "logprobs": True}) != key({**BASE, "logprobs": 1})


def test_tenant_scopes_the_key() -> None:
    assert key(BASE, tenant="a") != key(BASE, tenant="b")
    assert key(BASE, tenant="a") == key(BASE, tenant="a")


def test_tenant_and_kind_boundary_is_unambiguous() -> None:
    assert exact_key("ab", "c", BASE) != exact_key("a", "bc", BASE)


def test_kind_scopes_the_key() -> None:
    assert key(BASE, kind="chat") != key(BASE, kind="completions")


def test_key_is_a_sha256_hex_digest() -> None:
    value = key(BASE)
    assert len(value) == 64
    int(value, 16)
