"""The model registry: which models exist, on which backend, at what price and tier.

It is built once at start-up from the embedded defaults, the environment (cloud
keys, a local server URL) and an optional YAML or TOML file (``OPTIROUTE_CONFIG``).
Secrets are never stored here: a backend names the variable holding its key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from .settings import Settings, SettingsError

Tier = Literal["simple", "medium", "complex"]
TIER_RANK: dict[str, int] = {"simple": 0, "medium": 1, "complex": 2}


class BackendSpec(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    base_url: str
    adapter: str = "openai"
    api_key_env: str | None = None
    headers: dict[str, str] = {}
    local: bool = False
    connect_timeout_s: float | None = None
    read_timeout_s: float | None = None
    total_timeout_s: float | None = None
    # Azure OpenAI's api-version query parameter ("v1" for its v1 API); others ignore it
    api_version: str | None = None


class ModelSpec(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    backend: str
    upstream: str | None = None  # the name the backend knows it by
    tier: Tier = "medium"  # the hardest tier this model is good enough for
    input_per_mtok: float = 0.0  # USD per 1M prompt tokens
    output_per_mtok: float = 0.0  # USD per 1M completion tokens
    quality: float = 0.5
    context_window: int = 8192
    capabilities: frozenset[str] = frozenset()
    aliases: tuple[str, ...] = ()
    # share of traffic among deployments of one model name (load balancing), > 0
    weight: Annotated[float, msgspec.Meta(gt=0)] = 1.0

    @property
    def upstream_name(self) -> str:
        return self.upstream or self.name

    @property
    def key(self) -> str:
        return f"{self.name}@{self.backend}"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class RegistryFile(msgspec.Struct, kw_only=True):
    backends: list[BackendSpec] = []
    models: list[ModelSpec] = []
    replace_defaults: bool = False


# Public list prices (USD / 1M tokens) so a client naming a model we do not serve
# still has a baseline for savings.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4": (30.0, 60.0),
    "gpt-3.5-turbo": (0.5, 1.5),
    "o3-mini": (1.1, 4.4),
    "claude-3-5-sonnet-latest": (3.0, 15.0),
    "claude-3-5-haiku-latest": (0.8, 4.0),
    "claude-3-opus-latest": (15.0, 75.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4-6": (3.0, 15.0),
}

AUTO = "auto"


class Registry:
    """Models and backends by name; the selector's and the forwarder's source of truth."""

    def __init__(self, backends: Iterable[BackendSpec], models: Iterable[ModelSpec]) -> None:
        self.backends: dict[str, BackendSpec] = {}
        for backend in backends:
            if "://" not in backend.base_url:
                raise SettingsError(f"backend {backend.name!r}: base_url is not a URL")
            self.backends[backend.name] = backend
        self.models: list[ModelSpec] = []
        self._by_name: dict[str, list[ModelSpec]] = {}
        for model in models:
            if model.backend not in self.backends:
                raise SettingsError(
                    f"model {model.name!r}: unknown backend {model.backend!r} "
                    f"(known: {', '.join(self.backends) or 'none'})"
                )
            self.models.append(model)
            for name in (model.name, *model.aliases):
                self._by_name.setdefault(name, []).append(model)
        # cheapest first: the order every "cheapest that fits" walk wants
        self.models.sort(key=lambda m: (m.input_per_mtok + m.output_per_mtok, -m.quality))

    def find(self, name: str) -> list[ModelSpec]:
        """Every deployment of a model name (replicas on several backends)."""
        return self._by_name.get(name, [])

    def names(self) -> list[str]:
        return sorted({m.name for m in self.models})

    def price_of(self, name: str) -> tuple[float, float] | None:
        models = self.find(name)
        if models:
            return models[0].input_per_mtok, models[0].output_per_mtok
        return KNOWN_PRICES.get(name)

    def strongest(self) -> ModelSpec | None:
        return max(self.models, key=lambda m: (m.quality, TIER_RANK[m.tier]), default=None)

    def backend_of(self, model: ModelSpec) -> BackendSpec:
        return self.backends[model.backend]

    def has_local(self) -> bool:
        return any(b.local for b in self.backends.values())


def local_backend(settings: Settings, base_url: str) -> tuple[BackendSpec, ModelSpec]:
    """The local tier: free, simple prompts, generous timeouts (CPU generation is slow)."""
    backend = BackendSpec(
        name="local",
        base_url=base_url,
        local=True,
        read_timeout_s=max(settings.read_timeout_s, 60.0),
    )
    model = ModelSpec(
        name=settings.local_model_name,
        backend="local",
        tier="simple",
        quality=0.2,
        context_window=2048,
        aliases=("local",),
    )
    return backend, model


def cloud_defaults(
    settings: Settings, environ: dict[str, str]
) -> tuple[list[BackendSpec], list[ModelSpec]]:
    backends: list[BackendSpec] = []
    models: list[ModelSpec] = []
    if environ.get("OPENAI_API_KEY"):
        backends.append(
            BackendSpec(
                name="openai", base_url=settings.openai_base_url, api_key_env="OPENAI_API_KEY"
            )
        )
        caps = frozenset({"tools", "json", "vision"})
        models += [
            ModelSpec(
                name="gpt-4o-mini",
                backend="openai",
                tier="medium",
                input_per_mtok=0.15,
                output_per_mtok=0.6,
                quality=0.75,
                context_window=128_000,
                capabilities=caps,
            ),
            ModelSpec(
                name="gpt-4o",
                backend="openai",
                tier="complex",
                input_per_mtok=2.5,
                output_per_mtok=10.0,
                quality=0.9,
                context_window=128_000,
                capabilities=caps,
            ),
        ]
    if environ.get("ANTHROPIC_API_KEY"):
        backends.append(
            BackendSpec(
                name="anthropic",
                base_url=settings.anthropic_base_url,
                adapter="anthropic",
                api_key_env="ANTHROPIC_API_KEY",
            )
        )
        claude = frozenset({"tools", "vision"})
        models += [
            ModelSpec(
                name="claude-haiku-4-5",
                backend="anthropic",
                tier="medium",
                input_per_mtok=1.0,
                output_per_mtok=5.0,
                quality=0.8,
                context_window=200_000,
                capabilities=claude,
            ),
            ModelSpec(
                name="claude-sonnet-4-6",
                backend="anthropic",
                tier="complex",
                input_per_mtok=3.0,
                output_per_mtok=15.0,
                quality=0.92,
                context_window=200_000,
                capabilities=claude,
            ),
        ]
    return backends, models


def load_file(path: str) -> RegistryFile:
    data = Path(path).read_bytes()
    try:
        if path.endswith(".toml"):
            return msgspec.toml.decode(data, type=RegistryFile)
        import yaml

        try:
            raw: Any = yaml.safe_load(data) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"OPTIROUTE_CONFIG ({path}): not valid YAML: {exc}") from None
        return msgspec.convert(raw, RegistryFile)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise SettingsError(f"OPTIROUTE_CONFIG ({path}): {exc}") from None


def build_registry(settings: Settings, local_url: str | None = None) -> Registry:
    """Defaults from the environment, then the file (which may replace them)."""
    environ = dict(os.environ)
    backends, models = cloud_defaults(settings, environ)
    url = local_url or settings.local_url
    if url:
        backend, model = local_backend(settings, url)
        backends.insert(0, backend)
        models.insert(0, model)
    if settings.config:
        extra = load_file(settings.config)
        if extra.replace_defaults:
            backends, models = [], []
        names = {b.name for b in extra.backends}
        backends = [b for b in backends if b.name not in names] + extra.backends
        models = models + extra.models
    return Registry(backends, models)
