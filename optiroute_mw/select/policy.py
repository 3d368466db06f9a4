"""Select: which model answers, and which ones stand behind it.

The model a client names is what it would have paid for: the baseline for savings and
the ceiling for routing (``auto`` has no ceiling).  Hard constraints come first: a model
whose context window cannot hold the prompt, whose estimated cost is over the caller's
``max-cost``, whose learned latency is over the caller's ``max-latency``, or that lacks a
capability the request needs (tools, JSON mode, images) never appears.  A capability
no configured model declares is not enforced (the registry simply does not say).

Then the mode scores what is left, per model name (lower is better)::

    w_price * ln(price + 0.01) + w_latency * ln(latency) - w_quality * quality

    cost      1     0     0     (and the prompt's tier may be one lower)
    balanced  1     0.25  0.5
    speed     0.25  1     0
    quality   strongest first, whatever the tier

Models whose tier covers the prompt's go first in score order, then the rest strongest
first as the last resort.  Several deployments of one model name are ordered by the
load balancer (:mod:`.balance`).  The selection is the primary and its ordered
fallbacks, with the reason.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Sequence

from ..exchange import Exchange, Selection
from ..health import Health
from ..registry import AUTO, KNOWN_PRICES, TIER_RANK, ModelSpec, Registry
from ..settings import Settings
from ..wire import RequestError
from .balance import Balancer
from .needs import DEFAULT_OUTPUT_TOKENS, Needs, needs_of

__all__ = ["DEFAULT_OUTPUT_TOKENS", "MODE_WEIGHTS", "NoModel", "Selector"]

# (price, latency, quality) weights per mode; quality mode sorts by quality instead
MODE_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "cost": (1.0, 0.0, 0.0),
    "balanced": (1.0, 0.25, 0.5),
    "speed": (0.25, 1.0, 0.0),
}
DEFAULT_LATENCY_S = 1.0
RANKED_MAX = 1024


class NoModel(RequestError):
    def __init__(self, message: str, status: int = 404, code: str = "model_not_found") -> None:
        super().__init__(message, status=status, code=code, param="model")


def _price(model: ModelSpec) -> float:
    return model.input_per_mtok + model.output_per_mtok


class Selector:
    def __init__(
        self,
        registry: Registry,
        settings: Settings | None = None,
        *,
        balancer: Balancer | None = None,
        health: Health | None = None,
        rank_ttl_s: float = 0.0,
    ) -> None:
        self.registry = registry
        self.settings = settings or Settings()
        self.balancer = balancer
        self.health = health or (balancer.health if balancer else None)
        self.declared: frozenset[str] = frozenset(
            cap for model in registry.models for cap in model.capabilities
        )
        # The ranking of a common request (no per-request limits) is kept this long: it
        # moves only with learned latencies, which a second's delay does not hurt, and
        # the balancer still orders each model's deployments per call.
        self.rank_ttl_s = rank_ttl_s
        self._windows = sorted({m.context_window for m in registry.models})
        self._ranked: dict[tuple[object, ...], tuple[float, list[list[ModelSpec]], str]] = {}

    def baseline_price(self, requested: str) -> tuple[float, float] | None:
        price = self.registry.price_of(requested)
        if price is None and self.settings.baseline_model:
            price = self.registry.price_of(self.settings.baseline_model)
        if price is None:
            strongest = self.registry.strongest()
            price = (strongest.input_per_mtok, strongest.output_per_mtok) if strongest else None
        return price

    def latency(self, model: ModelSpec) -> float | None:
        return self.health.latency(model.key) if self.health else None

    def select(self, exchange: Exchange) -> Selection:
        needs = needs_of(exchange.request)
        if exchange.pinned_model:
            return self._pinned(exchange, needs)
        registry = self.registry
        requested = exchange.request.model
        named = registry.find(requested)
        if (
            not named
            and requested != AUTO
            and requested not in KNOWN_PRICES
            and self.settings.strict_models
        ):
            raise NoModel(f"The model '{requested}' does not exist.")
        if named:
            ceiling = _price(named[0])
        elif requested in KNOWN_PRICES:
            ceiling = sum(KNOWN_PRICES[requested])
        else:
            ceiling = math.inf
        required = needs.capabilities & self.declared
        key = self._rank_key(exchange, needs, required)
        if key is not None:
            kept = self._ranked.get(key)
            if kept is not None and kept[0] > time.monotonic():
                return self._selection(kept[1], kept[2])
        fits = self._fits(exchange, needs, required)
        allowed = [m for m in registry.models if _price(m) <= ceiling and fits(m)]
        allowed += [m for m in named if m not in allowed and fits(m)]
        if not allowed:  # nothing under the ceiling can take it: anything that can
            allowed = [m for m in registry.models if fits(m)]
            if not allowed:
                raise NoModel(self._nothing_fits(required), status=400, code="no_model_fits")
        ranked, reason = self._rank(exchange, _groups(allowed))
        if required:
            reason += f" (needs {', '.join(sorted(required))})"
        if key is not None:
            if len(self._ranked) >= RANKED_MAX:  # requested names come from callers
                self._ranked.clear()
            self._ranked[key] = (time.monotonic() + self.rank_ttl_s, ranked, reason)
        return self._selection(ranked, reason)

    def _rank_key(
        self, exchange: Exchange, needs: Needs, required: frozenset[str]
    ) -> tuple[object, ...] | None:
        """What the ranking depends on, when nothing per-request limits it; else None."""
        if not self.rank_ttl_s or exchange.max_cost_usd is not None:
            return None
        if exchange.max_latency_s is not None:
            return None
        tier = exchange.classification.tier if exchange.classification else None
        # which context windows the prompt fits: the models a window test lets through
        fitting = bisect.bisect_left(self._windows, needs.window)
        return (exchange.request.model, exchange.mode, tier, fitting, required)

    def _pinned(self, exchange: Exchange, needs: Needs) -> Selection:
        fits = self._fits(exchange, needs, frozenset(), latency=False)
        pinned = [m for m in self.registry.find(exchange.pinned_model or "") if fits(m)]
        if not pinned:
            raise NoModel(f"The pinned model '{exchange.pinned_model}' is not available.")
        return self._selection([pinned], "pinned")

    def _fits(
        self, exchange: Exchange, needs: Needs, required: frozenset[str], latency: bool = True
    ) -> Callable[[ModelSpec], bool]:
        max_cost = exchange.max_cost_usd
        max_latency = exchange.max_latency_s if latency else None

        def fits(model: ModelSpec) -> bool:
            if needs.window > model.context_window:
                return False
            if max_cost is not None and model.cost(needs.prompt_tokens, needs.output_tokens) > (
                max_cost
            ):
                return False
            if not required <= model.capabilities:
                return False
            if max_latency is not None:
                seen = self.latency(model)
                if seen is not None and seen > max_latency:
                    return False
            return True

        return fits

    def _nothing_fits(self, required: frozenset[str]) -> str:
        wanted = f", {', '.join(sorted(required))}" if required else ""
        return (
            "No configured model can take this request "
            f"(context size, cost or latency limit{wanted})."
        )

    def _rank(
        self, exchange: Exchange, groups: list[list[ModelSpec]]
    ) -> tuple[list[list[ModelSpec]], str]:
        mode = exchange.mode
        if mode == "quality" or mode not in MODE_WEIGHTS:
            ranked = sorted(groups, key=lambda g: (-g[0].quality, _price(g[0])))
            return ranked, "quality: strongest within the ceiling"
        tier = exchange.classification.tier if exchange.classification else "medium"
        need = TIER_RANK[tier] - (1 if mode == "cost" else 0)
        covering = [g for g in groups if TIER_RANK[g[0].tier] >= need]
        rest = sorted((g for g in groups if TIER_RANK[g[0].tier] < need), key=_strength)
        if not covering:
            return rest, f"{mode}: no model covers tier {tier}, strongest allowed"
        score = self._scorer(mode, groups)
        covering.sort(key=score)
        cheapest = min(_price(g[0]) for g in covering)
        how = "cheapest model" if _price(covering[0][0]) <= cheapest else f"best {mode} score"
        return covering + rest, f"{mode}: {how} for tier {tier}"

    def _scorer(
        self, mode: str, groups: list[list[ModelSpec]]
    ) -> Callable[[list[ModelSpec]], float]:
        w_price, w_latency, w_quality = MODE_WEIGHTS[mode]
        seen = {id(g): self._group_latency(g) for g in groups}
        known = sorted(x for x in seen.values() if x is not None)
        prior = known[len(known) // 2] if known else DEFAULT_LATENCY_S

        def score(group: list[ModelSpec]) -> float:
            model = group[0]
            latency = seen[id(group)] or prior
            return (
                w_price * math.log(_price(model) + 0.01)
                + w_latency * math.log(max(latency, 1e-3))
                - w_quality * model.quality
            )

        return score

    def _group_latency(self, group: Sequence[ModelSpec]) -> float | None:
        usable = [m for m in group if self.health is None or self.health.available(m.key)]
        known = [x for x in (self.latency(m) for m in usable or group) if x is not None]
        return sum(known) / len(known) if known else None

    def _selection(self, ranked: list[list[ModelSpec]], reason: str) -> Selection:
        order: list[ModelSpec] = []
        for group in ranked:
            order += self.balancer.order(group) if self.balancer else group
        return Selection(order[0], order[1:], reason)


def _strength(group: list[ModelSpec]) -> float:
    return -group[0].quality


def _groups(models: list[ModelSpec]) -> list[list[ModelSpec]]:
    """Deployments grouped by model name, in first-seen (cheapest first) order."""
    by_name: dict[str, list[ModelSpec]] = {}
    for model in models:
        by_name.setdefault(model.name, []).append(model)
    return list(by_name.values())
