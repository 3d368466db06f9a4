"""Settings from ``OPTIROUTE_*`` environment variables.

Every field of :class:`Settings` is read from ``OPTIROUTE_<FIELD>`` (upper case).
Values are converted and validated when the process starts; a bad value raises
:class:`SettingsError` naming the variable, so nothing fails at the first request.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

Mode = Literal["cost", "balanced", "quality", "speed"]
PREFIX = "OPTIROUTE_"
LIST_FIELDS = frozenset({"routes", "breaker_counted"})


class SettingsError(ValueError):
    """A setting is missing, malformed or inconsistent; the message names it."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    # sidecar
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    config: str | None = None
    # which requests the stack handles; the rest goes to the wrapped app untouched
    routes: tuple[str, ...] = ("/v1/chat/completions", "/v1/completions")
    forward: Literal["proxy", "app"] = "proxy"
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 4 * 1024 * 1024
    # routing
    default_mode: Mode = "balanced"
    strict_models: bool = False
    baseline_model: str | None = None
    # the classifier: auto = learned when tokenizers is installed, else rules
    # (see optiroute_mw/classify/setup.py)
    router: Literal["auto", "rules", "learned", "llm"] = "auto"
    router_strong_share: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    router_quality_target: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.95
    router_medium_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.25
    router_weights: str | None = None  # learned router weights (tools/train_router.py)
    router_llm_model: str | None = None  # the rating model (default: the cheapest)
    router_llm_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    # cache
    cache: bool = True
    cache_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    cache_max_entries: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    cache_max_entry_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1024 * 1024
    # semantic cache: on when the embedding model loads; cosine cut-off (with the look-alike
    # guard, = cache.semantic_index.DEFAULT_SIMILARITY_THRESHOLD); how often a replica pulls
    # entries other replicas wrote to Redis; the saved index (default: <data_dir>/semantic-cache)
    semantic: bool = True
    semantic_threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.89
    semantic_sync_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    semantic_path: str | None = None
    # outbound HTTP
    http_engine: Literal["aiohttp", "httpx"] = "aiohttp"
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 4096
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    read_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    total_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    # time to the first stream event / longest gap between events (default: read timeout)
    ttft_timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    idle_timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # circuit breaker
    breaker_failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    breaker_cooldown_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    breaker_failure_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    breaker_window_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    breaker_min_requests: Annotated[int, msgspec.Meta(ge=1)] = 20
    breaker_half_open_probes: Annotated[int, msgspec.Meta(ge=1)] = 1
    breaker_close_after: Annotated[int, msgspec.Meta(ge=1)] = 1
    # which failures count against a circuit (a 429 only cools its deployment down)
    breaker_counted: tuple[str, ...] = (
        "timeout",
        "ttft_timeout",
        "connect",
        "read",
        "malformed",
        "stream_error",
        "stream_broken",
        "http_401",
        "http_403",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "http_529",
    )
    # retries and failover
    retry_rounds: Annotated[int, msgspec.Meta(ge=0)] = 2
    retry_backoff_s: Annotated[float, msgspec.Meta(ge=0)] = 0.2
    retry_backoff_max_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    retry_after_max_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    all_open_wait_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    degrade_to_local: bool = True
    stream_failover: bool = True
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    # the embedded local model (SmolLM2 via llama.cpp) or an existing local server
    local_model: Literal["auto", "off"] = "auto"
    local_model_path: str | None = None
    local_threads: Annotated[int, msgspec.Meta(ge=1)] = 1
    local_url: str | None = None
    local_model_name: str = "smollm2-135m"
    # cloud backends (keys are read from their usual variables, never from here)
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_base_url: str = "https://api.anthropic.com"
    # side systems
    redis_url: str | None = None
    embed_model_path: str | None = None
    # ONNX threads per embedding: 1 keeps the other core free; 2 is quicker on an idle box
    embed_threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    # ingress: API keys, rate limits, budgets; the cost ledger
    require_auth: bool = False  # auth is also on as soon as any key exists
    master_key: str | None = None  # guards the admin API; kept only as a digest
    data_dir: str | None = None  # default: $XDG_DATA_HOME/optiroute-mw (~/.local/share/…)
    keys_db: str | None = None  # default: <data_dir>/keys.db
    ledger: bool = True
    ledger_path: str | None = None  # default: <data_dir>/ledger.db
    ledger_flush_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    global_rpm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    global_tpm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # logs
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_prompts: bool = False
    log_prompts_chars: Annotated[int, msgspec.Meta(ge=1)] = 500  # excerpt length
    # OpenTelemetry traces (the otel extra): a span per request and stage, GenAI attributes
    otel: Literal["on", "off"] = "off"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``OPTIROUTE_*`` variables; ``overrides`` win over the environment."""
        env = os.environ if environ is None else environ
        fields = {f.name: f.type for f in msgspec.structs.fields(cls)}
        known = {PREFIX + name.upper(): name for name in fields}
        raw: dict[str, object] = {}
        for var, value in env.items():
            if not var.startswith(PREFIX):
                continue
            if var not in known:
                # may be a key variable a registry file names; a typo still deserves a word
                warnings.warn(f"{var} is not an optiroute-mw setting; ignored", stacklevel=2)
                continue
            name = known[var]
            raw[name] = _split_list(value) if name in LIST_FIELDS else value
        raw.update(overrides)
        try:
            settings = msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(_name_variable(str(exc))) from None
        settings.check()
        return settings

    SECRET_FIELDS = frozenset({"master_key"})

    def __repr__(self) -> str:
        # settings may end up in a log or a traceback: never with a secret in them
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            hidden = name in self.SECRET_FIELDS and value
            parts.append(f"{name}={'[redacted]' if hidden else repr(value)}")
        return f"Settings({', '.join(parts)})"

    def check(self) -> None:
        for route in self.routes:
            if not route.startswith("/"):
                raise SettingsError(f"OPTIROUTE_ROUTES: {route!r} is not a path")
        for name in ("local_url", "openai_base_url", "anthropic_base_url", "redis_url"):
            url = getattr(self, name)
            if url and "://" not in url:
                raise SettingsError(f"{PREFIX}{name.upper()}: {url!r} is not a URL")
        if self.config and not os.path.isfile(self.config):
            raise SettingsError(f"OPTIROUTE_CONFIG: no such file {self.config!r}")
        if self.router_weights and not os.path.isfile(self.router_weights):
            raise SettingsError(f"OPTIROUTE_ROUTER_WEIGHTS: no such file {self.router_weights!r}")

    def data_file(self, explicit: str | None, name: str) -> str:
        """``explicit`` if set, else ``name`` in the data dir (read when asked, not at import)."""
        if explicit:
            return os.path.expanduser(explicit)
        base = self.data_dir or os.path.join(
            os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "optiroute-mw"
        )
        return os.path.join(os.path.expanduser(base), name)


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _name_variable(message: str) -> str:
    # msgspec says "... - at `$.port`"; users know the variable, not the field.
    if "`$." in message:
        text, _, path = message.rpartition(" - at `$.")
        field = path.rstrip("`").split("[")[0]
        return f"{PREFIX}{field.upper()}: {text}"
    if "missing required field" in message:
        return f"{PREFIX}{message.split('`')[1].upper()}: required"
    return message
