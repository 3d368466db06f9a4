"""Which classifier runs, chosen from ``OPTIROUTE_ROUTER``, and its start-up.

* ``rules``: the rule classifier only.
* ``learned``: the learned router (``learned.py``).  Its weights, vocabulary included,
  ship in the package and load at start-up in a worker thread; no model is downloaded or
  run to route.
* ``llm``: a cheap registry model rates each prompt (``llm.py``).
* ``auto`` (the default): ``learned`` when what it needs (tokenizers, in the ``semantic``
  extra) is installed, else ``rules``.

Whatever is chosen, the rule classifier answers whenever the other cannot (weights
unreadable, tokenizers not installed, an error, a rating timeout): the failure
is logged once and counted in ``optiroute_side_system_errors{system="router"}``; a call
never fails because of it.
"""

from __future__ import annotations

import asyncio
from importlib.util import find_spec

import structlog
from starlette.types import ASGIApp

from ..exchange import Classification, Exchange
from ..observe.metrics import Metrics
from ..registry import Registry
from ..settings import Settings
from .routers import LearnedClassifier, Router, RulesRouter, TierCuts

logger = structlog.get_logger(__name__)


def learned_installed() -> bool:
    return find_spec("tokenizers") is not None


def resolve_kind(settings: Settings) -> str:
    if settings.router == "auto":
        return "learned" if learned_installed() else "rules"
    return settings.router


class RouterSetup:
    """The classify stage's router: delegates to the active classifier."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.kind = resolve_kind(settings)
        self.rules = RulesRouter()
        self.active: Router = self.rules
        self._warned: set[str] = set()

    @property
    def active_kind(self) -> str:
        if isinstance(self.active, LearnedClassifier):
            return "learned"
        return "rules" if self.active is self.rules else self.kind

    async def decide(self, exchange: Exchange) -> Classification:
        return await self.active.decide(exchange)

    def failed(self, why: str, exc: BaseException | None = None) -> None:
        """Count every fallback; log each kind of failure once."""
        if self.metrics is not None:
            self.metrics.side_errors.labels("router").inc()
        if why not in self._warned:
            self._warned.add(why)
            error = f"{type(exc).__name__}: {exc}"[:300] if exc is not None else None
            logger.warning("router_fallback", reason=why, error=error, fallback="rules")

    async def start(self) -> None:
        """Load what the chosen classifier needs; the rules stay on if that fails."""
        if self.kind != "learned" or self.active_kind == "learned":
            return
        settings = self.settings
        try:
            from .learned import LearnedRouter

            model = await asyncio.to_thread(LearnedRouter.load, settings.router_weights)
            cuts = TierCuts.calibrated(
                model,
                strong_share=settings.router_strong_share,
                quality_target=settings.router_quality_target,
                medium_share=settings.router_medium_share,
            )
        except Exception as exc:  # tokenizers missing, weights unreadable
            self.failed("learned router unavailable", exc)
            return
        self.active = LearnedClassifier(
            model, cuts, rules=self.rules.classifier, on_failure=self.failed
        )
        logger.info(
            "router_ready",
            router="learned",
            strong_share=round(cuts.strong_share, 3),
            complex_below=round(cuts.complex_below, 4),
        )

    async def ready(self) -> bool:
        """Whether the learned router is active (call after :meth:`start`)."""
        return self.active_kind == "learned"

    def bind(self, registry: Registry, forwarder: ASGIApp) -> RouterSetup:
        """``llm``: the rating model from the registry, asked through ``forwarder``."""
        if self.kind != "llm":
            return self
        from .llm import LLMClassifier

        settings = self.settings
        name = settings.router_llm_model
        found = registry.find(name) if name else registry.models[:1]
        if not found:
            self.failed("llm classifier has no model", LookupError(name or "empty registry"))
            self.active = self.rules
            return self
        self.active = LLMClassifier(
            forwarder,
            found[0],
            timeout_s=settings.router_llm_timeout_s,
            fallback=self.rules,
            on_failure=self.failed,
        )
        return self
