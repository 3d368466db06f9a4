"""Select: which model answers, and which ones stand behind it.

The model a client names is what it would have paid for: the baseline for savings
and the ceiling for routing (``auto`` has no ceiling).  Within the ceiling, the
cheapest model whose tier covers the prompt's tier goes first; the rest of the
ceiling follows as fallbacks, stronger first.  Models whose context window cannot
hold the prompt, or whose estimated cost is over the caller's limit, never appear.
"""

from __future__ import annotations

from ..exchange import Exchange, Selection, estimate_tokens
from ..registry import AUTO, KNOWN_PRICES, TIER_RANK, ModelSpec, Registry
from ..settings import Settings
from ..wire import ChatRequest, RequestError

DEFAULT_OUTPUT_TOKENS = 256


class NoModel(RequestError):
    def __init__(self, message: str, status: int = 404, code: str = "model_not_found") -> None:
        super().__init__(message, status=status, code=code, param="model")


def _price(model: ModelSpec) -> float:
    return model.input_per_mtok + model.output_per_mtok


class Selector:
    def __init__(self, registry: Registry, settings: Settings | None = None) -> None:
        self.registry = registry
        self.settings = settings or Settings()

    def baseline_price(self, requested: str) -> tuple[float, float] | None:
        price = self.registry.price_of(requested)
        if price is None and self.settings.baseline_model:
            price = self.registry.price_of(self.settings.baseline_model)
        if price is None:
            strongest = self.registry.strongest()
            price = (strongest.input_per_mtok, strongest.output_per_mtok) if strongest else None
        return price

    def select(self, exchange: Exchange) -> Selection:
        registry = self.registry
        request = exchange.request
        requested = request.model
        prompt_tokens = estimate_tokens(request.prompt_text())
        max_out = (
            getattr(request, "max_tokens", None)
            or (request.max_completion_tokens if isinstance(request, ChatRequest) else None)
            or DEFAULT_OUTPUT_TOKENS
        )

        def fits(model: ModelSpec) -> bool:
            if prompt_tokens + min(max_out, 1024) > model.context_window:
                return False
            if exchange.max_cost_usd is not None:
                return model.cost(prompt_tokens, max_out) <= exchange.max_cost_usd
            return True

        if exchange.pinned_model:
            pinned = [m for m in registry.find(exchange.pinned_model) if fits(m)]
            if not pinned:
                raise NoModel(f"The pinned model '{exchange.pinned_model}' is not available.")
            return Selection(pinned[0], pinned[1:], "pinned")

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
            ceiling = float("inf")
        allowed = [m for m in registry.models if _price(m) <= ceiling and fits(m)]
        allowed += [m for m in named if m not in allowed and fits(m)]
        if not allowed:
            allowed = [m for m in registry.models if fits(m)]
            if not allowed:
                raise NoModel(
                    "No configured model can take this request (context size or cost limit).",
                    status=400,
                    code="no_model_fits",
                )

        tier = exchange.classification.tier if exchange.classification else "medium"
        need = TIER_RANK[tier]
        if exchange.mode == "cost":
            need = max(0, need - 1)
        if exchange.mode == "quality":
            ranked = sorted(allowed, key=lambda m: (-m.quality, _price(m)))
            reason = "quality: strongest within the ceiling"
        else:
            covering = [m for m in allowed if TIER_RANK[m.tier] >= need]  # cheapest first
            rest = sorted((m for m in allowed if m not in covering), key=lambda m: -m.quality)
            ranked = covering + rest
            reason = (
                f"{exchange.mode}: cheapest model for tier {tier}"
                if covering
                else f"{exchange.mode}: no model covers tier {tier}, strongest allowed"
            )
        primary, fallbacks = ranked[0], ranked[1:]
        return Selection(primary, fallbacks, reason)
