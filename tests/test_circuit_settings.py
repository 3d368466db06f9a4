"""The circuit breaker, settings from the environment, the registry file, log redaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from optiroute_mw.breaker.circuit import Circuit, CircuitBoard
from optiroute_mw.observe.logging import redact
from optiroute_mw.registry import Registry, build_registry
from optiroute_mw.settings import Settings, SettingsError

# --- circuit ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def open_circuit(clock: Clock, threshold: int = 3, cooldown: float = 30.0) -> Circuit:
    circuit = Circuit(threshold, cooldown, clock)
    for _ in range(threshold):
        assert circuit.allow()
        circuit.record_failure()
    assert circuit.state == "open"
    return circuit


def test_circuit_full_cycle() -> None:
    clock = Clock()
    circuit = Circuit(threshold=3, cooldown_s=30.0, clock=clock)
    assert circuit.state == "closed"
    for _ in range(2):
        assert circuit.allow()
        circuit.record_failure()
        assert circuit.state == "closed"
    assert circuit.allow()
    circuit.record_failure()
    assert circuit.state == "open"
    # open: fails fast until the cooldown has passed
    for step in (0.0, 10.0, 29.9):
        clock.now = 500.0 + step
        assert not circuit.allow()
        assert circuit.state == "open"
    clock.now = 530.0
    # half-open: exactly one probe
    assert circuit.allow()
    assert circuit.state == "half_open"
    assert not circuit.allow()
    assert not circuit.allow()
    circuit.record_success()
    assert circuit.state == "closed"
    assert circuit.failures == 0
    assert all(circuit.allow() for _ in range(5))


def test_failed_probe_reopens_with_a_fresh_cooldown() -> None:
    clock = Clock()
    circuit = open_circuit(clock)
    clock.now += 30.0
    assert circuit.allow()
    clock.now += 5.0  # the probe took a while
    circuit.record_failure()
    assert circuit.state == "open"
    reopened_at = clock.now
    clock.now = reopened_at + 29.0
    assert not circuit.allow()
    clock.now = reopened_at + 30.0
    assert circuit.allow()
    assert circuit.state == "half_open"


def test_success_resets_the_consecutive_count() -> None:
    circuit = Circuit(threshold=3, cooldown_s=30.0, clock=Clock())
    for _ in range(5):
        circuit.record_failure()
        circuit.record_failure()
        circuit.record_success()
        assert circuit.state == "closed"
    assert circuit.failures == 0
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state == "closed"
    circuit.record_failure()
    assert circuit.state == "open"


def test_released_probe_lets_another_probe_through() -> None:
    clock = Clock()
    circuit = open_circuit(clock)
    clock.now += 30.0
    assert circuit.allow()
    circuit.release()
    assert circuit.state == "half_open"
    assert circuit.allow()
    assert not circuit.allow()


def test_threshold_of_one_opens_at_the_first_failure() -> None:
    circuit = Circuit(threshold=1, cooldown_s=1.0, clock=Clock())
    circuit.record_failure()
    assert circuit.state == "open"
    assert not circuit.allow()


def test_board_keeps_one_circuit_per_key() -> None:
    clock = Clock()
    board = CircuitBoard(threshold=2, cooldown_s=10.0, clock=clock)
    first = board.get("m@a")
    assert board.get("m@a") is first
    first.record_failure()
    first.record_failure()
    assert board.get("m@b").allow()
    assert board.states() == {"m@a": "open", "m@b": "closed"}
    assert first.threshold == 2 and first.cooldown_s == 10.0 and first.clock is clock


# --- settings ---------------------------------------------------------------------------


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.default_mode == "balanced"
    assert settings.cache is True
    assert settings.strict_models is False
    assert settings.routes == ("/v1/chat/completions", "/v1/completions")


def test_other_variables_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/bin", "OPTIROUTEX": "1", "OPENAI_API_KEY": "k"}) == (
        Settings()
    )


def test_strings_are_converted() -> None:
    settings = Settings.from_env(
        {
            "OPTIROUTE_PORT": "9000",
            "OPTIROUTE_CACHE": "false",
            "OPTIROUTE_STRICT_MODELS": "true",
            "OPTIROUTE_LOG_PROMPTS": "1",
            "OPTIROUTE_CACHE_TTL_S": "2.5",
            "OPTIROUTE_BREAKER_COOLDOWN_S": "7",
            "OPTIROUTE_BREAKER_FAILURES": "2",
            "OPTIROUTE_DEFAULT_MODE": "cost",
            "OPTIROUTE_ROUTES": " /v1/chat/completions , /custom ,",
            "OPTIROUTE_LOCAL_URL": "http://127.0.0.1:9999/v1",
        }
    )
    assert settings.port == 9000
    assert settings.cache is False
    assert settings.strict_models is True
    assert settings.log_prompts is True
    assert settings.cache_ttl_s == 2.5
    assert settings.breaker_cooldown_s == 7.0
    assert settings.breaker_failures == 2
    assert settings.default_mode == "cost"
    assert settings.routes == ("/v1/chat/completions", "/custom")
    assert settings.local_url == "http://127.0.0.1:9999/v1"


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"OPTIROUTE_PORT": "9000"}, port=9100)
    assert settings.port == 9100


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OPTIROUTE_PORT", "http"),
        ("OPTIROUTE_PORT", "70000"),
        ("OPTIROUTE_PORT", "-1"),
        ("OPTIROUTE_DEFAULT_MODE", "cheapest"),
        ("OPTIROUTE_CACHE", "maybe"),
        ("OPTIROUTE_STRICT_MODELS", "yes please"),
        ("OPTIROUTE_CACHE_TTL_S", "0"),
        ("OPTIROUTE_CACHE_TTL_S", "soon"),
        ("OPTIROUTE_CACHE_MAX_ENTRIES", "0"),
        ("OPTIROUTE_MAX_BODY_BYTES", "10"),
        ("OPTIROUTE_BREAKER_FAILURES", "0"),
        ("OPTIROUTE_BREAKER_COOLDOWN_S", "-3"),
        ("OPTIROUTE_HTTP_ENGINE", "curl"),
        ("OPTIROUTE_FORWARD", "teleport"),
        ("OPTIROUTE_LOG_LEVEL", "loud"),
        ("OPTIROUTE_LOCAL_MODEL", "maybe"),
        ("OPTIROUTE_ROUTES", "/ok,v1/chat"),
        ("OPTIROUTE_LOCAL_URL", "localhost:8080"),
        ("OPTIROUTE_OPENAI_BASE_URL", "api.openai.com"),
        ("OPTIROUTE_REDIS_URL", "redis-host:6379"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    assert str(info.value).startswith(variable + ":"), str(info.value)


def test_unknown_optiroute_variable_is_flagged_and_ignored() -> None:
    # a registry file may name an OPTIROUTE_* key variable, so a stray name warns
    with pytest.warns(UserWarning, match="OPTIROUTE_PROT"):
        settings = Settings.from_env({"OPTIROUTE_PROT": "9000"})
    assert settings.port == 8080


def test_missing_config_file_is_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"OPTIROUTE_CONFIG": str(missing)})
    assert str(info.value).startswith("OPTIROUTE_CONFIG:")
    assert str(missing) in str(info.value)


def test_existing_config_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("models: []\n")
    assert Settings.from_env({"OPTIROUTE_CONFIG": str(path)}).config == str(path)


def test_bad_override_names_the_variable() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({}, port="eighty")
    assert str(info.value).startswith("OPTIROUTE_PORT:")


# --- registry files ---------------------------------------------------------------------

YAML = """
backends:
  - name: fast
    base_url: "http://127.0.0.1:7001/v1"
    api_key_env: FAST_KEY
    headers: {x-team: "a"}
  - name: slow
    base_url: "http://127.0.0.1:7002/v1"
    read_timeout_s: 90
models:
  - name: small
    upstream: small-2024
    backend: fast
    tier: simple
    input_per_mtok: 0.1
    output_per_mtok: 0.4
    quality: 0.3
    aliases: [cheap, s]
  - name: large
    backend: slow
    tier: complex
    input_per_mtok: 3
    output_per_mtok: 12
    quality: 0.9
    context_window: 128000
    capabilities: [tools, json]
"""

TOML = """
replace_defaults = true

[[backends]]
name = "fast"
base_url = "http://127.0.0.1:7001/v1"

[[models]]
name = "small"
backend = "fast"
tier = "simple"
input_per_mtok = 0.1
output_per_mtok = 0.4
aliases = ["cheap"]

[[models]]
name = "medium-one"
backend = "fast"
tier = "medium"
input_per_mtok = 1.0
output_per_mtok = 2.0
"""


@pytest.fixture(autouse=True)
def _no_cloud_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def registry_from(tmp_path: Path, name: str, text: str, **settings: Any) -> Registry:
    path = tmp_path / name
    path.write_text(text)
    return build_registry(Settings(config=str(path), local_model="off", **settings))


def test_yaml_registry_is_loaded(tmp_path: Path) -> None:
    registry = registry_from(tmp_path, "models.yaml", YAML)
    assert set(registry.backends) == {"fast", "slow"}
    assert registry.backends["fast"].api_key_env == "FAST_KEY"
    assert registry.backends["fast"].headers == {"x-team": "a"}
    assert registry.backends["slow"].read_timeout_s == 90.0
    assert registry.names() == ["large", "small"]
    small = registry.find("small")[0]
    assert small.upstream_name == "small-2024"
    assert small.tier == "simple"
    assert small.backend == "fast"
    large = registry.find("large")[0]
    assert large.input_per_mtok == 3.0
    assert large.context_window == 128_000
    assert large.capabilities == frozenset({"tools", "json"})
    assert large.upstream_name == "large"


def test_toml_registry_is_loaded(tmp_path: Path) -> None:
    registry = registry_from(tmp_path, "models.toml", TOML)
    assert list(registry.backends) == ["fast"]
    assert registry.names() == ["medium-one", "small"]
    assert registry.find("medium-one")[0].tier == "medium"
    assert registry.price_of("medium-one") == (1.0, 2.0)


def test_aliases_resolve(tmp_path: Path) -> None:
    registry = registry_from(tmp_path, "models.yaml", YAML)
    assert registry.find("cheap") == registry.find("small")
    assert registry.find("s")[0].name == "small"
    assert registry.find("nothing") == []
    assert registry.price_of("cheap") == (0.1, 0.4)


def test_model_naming_an_unknown_backend_is_rejected(tmp_path: Path) -> None:
    text = YAML.replace("backend: slow", "backend: nowhere")
    with pytest.raises(SettingsError) as info:
        registry_from(tmp_path, "models.yaml", text)
    assert "nowhere" in str(info.value)
    assert "large" in str(info.value)


def test_bad_value_in_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        registry_from(tmp_path, "models.yaml", YAML.replace("tier: complex", "tier: genius"))
    assert str(info.value).startswith("OPTIROUTE_CONFIG")


def test_backend_without_url_scheme_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        registry_from(tmp_path, "models.yaml", YAML.replace("http://127.0.0.1:7002/v1", "slow"))


def test_malformed_yaml_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        registry_from(tmp_path, "models.yaml", "models: [\n  - {name: x, backend: [}\n")


def test_malformed_toml_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        registry_from(tmp_path, "models.toml", "[[models]\nname = ")


def test_file_adds_to_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real-000000")
    registry = registry_from(tmp_path, "models.yaml", YAML, local_url="http://127.0.0.1:7003/v1")
    assert {"openai", "local", "fast", "slow"} <= set(registry.backends)
    assert {"gpt-4o", "gpt-4o-mini", "smollm2-135m", "small", "large"} <= set(registry.names())
    assert registry.find("local")[0].backend == "local"
    assert registry.has_local()


def test_replace_defaults_drops_the_built_in_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real-000000")
    registry = registry_from(tmp_path, "models.toml", TOML, local_url="http://127.0.0.1:7003/v1")
    assert list(registry.backends) == ["fast"]
    assert registry.names() == ["medium-one", "small"]
    assert not registry.has_local()


def test_file_backend_replaces_a_default_backend_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real-000000")
    text = """
backends:
  - name: openai
    base_url: "http://127.0.0.1:7009/v1"
"""
    registry = registry_from(tmp_path, "models.yaml", text)
    assert registry.backends["openai"].base_url == "http://127.0.0.1:7009/v1"
    assert "gpt-4o" in registry.names()


# --- redaction --------------------------------------------------------------------------


def test_secret_fields_are_redacted() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "call",
            "authorization": "Bearer abcdefghijkl",
            "Authorization": "whatever",
            "api_key": "k",
            "x-api-key": "k2",
            "openai_api_key": "k3",
            "client_secret": "s",
            "password": "p",
            "access_token": "t",
        },
    )
    for name in (
        "authorization",
        "Authorization",
        "api_key",
        "x-api-key",
        "openai_api_key",
        "client_secret",
        "password",
        "access_token",
    ):
        assert event[name] == "[redacted]", name
    assert event["event"] == "call"


def test_secret_values_inside_strings_are_redacted() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "upstream said: invalid key sk-proj-ABCdef123456789 for org",
            "error": "401 with header Bearer eyJhbGciOi.JIUzI1NiJ9-x_y",
            "detail": "nothing secret here",
        },
    )
    assert event["event"] == "upstream said: invalid key [redacted] for org"
    assert "sk-proj" not in event["error"]
    assert "eyJhbGciOi" not in event["error"]
    assert event["error"].startswith("401 with header [redacted]")
    assert event["detail"] == "nothing secret here"


def test_usage_counters_are_not_redacted() -> None:
    event = redact(
        None,
        "info",
        {
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "total_tokens": 15,
            "max_tokens": 64,
            "model": "gpt-4o",
            "status": 200,
            "short": "sk-abc",
        },
    )
    assert event == {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
        "max_tokens": 64,
        "model": "gpt-4o",
        "status": 200,
        "short": "sk-abc",
    }


def test_settings_repr_hides_the_master_key() -> None:
    settings = Settings.from_env({}, master_key="sk-master-very-secret")
    assert "sk-master-very-secret" not in repr(settings)
    assert "master_key='[redacted]'" not in repr(settings)  # shown unquoted, as a marker
    assert "master_key=[redacted]" in repr(settings)
