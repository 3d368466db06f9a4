"""Which classifier runs, chosen from ``OPTIROUTE_ROUTER``, and its start-up.

* ``rules``: the rule classifier only.
* ``learned``: the embedding model and the learned router.  The model is loaded at
  start-up in a worker thread, never at request time: from ``OPTIROUTE_EMBED_MODEL_PATH``
  when set (start-up waits for it, up to :data:`LOAD_WAIT_S`), else through fastembed's
  own download and cache (in the background; the rules route until it is ready).
* ``llm``: a cheap registry model rates each prompt (``llm.py``).
* ``auto`` (the default): ``learned`` when ``OPTIROUTE_EMBED_MODEL_PATH`` names a local
  model, else ``rules``, so the embedded demo never downloads anything.

Whatever is chosen, the rule classifier answers whenever the other cannot (model missing
or failing, numpy or fastembed not installed, a rating timeout): the failure is logged
once and counted in ``optiroute_side_system_errors{system="router"}``; a call never fails
because of it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from starlette.types import ASGIApp

from ..exchange import Classification, Exchange
from ..observe.metrics import Metrics
from ..registry import Registry
from ..settings import Settings
from .routers import LearnedClassifier, Router, RulesRouter, TierCuts

if TYPE_CHECKING:
    from ..embedding import Embedder

logger = structlog.get_logger(__name__)
LOAD_WAIT_S = 30.0


def resolve_kind(settings: Settings) -> str:
    if settings.router == "auto":
        return "learned" if settings.embed_model_path else "rules"
    return settings.router


class RouterSetup:
    """The classify stage's router: delegates to the active classifier."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """``embedder``: one shared with the semantic cache (else the router loads its own)."""
        self.settings = settings
        self.metrics = metrics
        self.kind = resolve_kind(settings)
        self.rules = RulesRouter()
        self.active: Router = self.rules
        self.embedder: Embedder | None = embedder
        self._learned: LearnedClassifier | None = None
        self._warned: set[str] = set()
        self._loading: asyncio.Task[None] | None = None

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
        if self.kind != "learned" or self._learned is not None:
            return
        settings = self.settings
        try:
            from ..embedding import DEFAULT_MODEL, Embedder
            from .learned import LearnedRouter

            model = LearnedRouter.load(settings.router_weights)
            cuts = TierCuts.calibrated(
                model,
                strong_share=settings.router_strong_share,
                quality_target=settings.router_quality_target,
                medium_share=settings.router_medium_share,
            )
        except Exception as exc:  # numpy missing, weights unreadable
            self.failed("learned router unavailable", exc)
            return
        if self.embedder is None:
            self.embedder = Embedder(
                DEFAULT_MODEL, settings.embed_model_path, settings.embed_threads
            )
        learned = self._learned = LearnedClassifier(
            model, self.embedder, cuts, rules=self.rules.classifier, on_failure=self.failed
        )
        self._loading = asyncio.create_task(self._load(learned))
        if settings.embed_model_path:
            await asyncio.wait({self._loading}, timeout=LOAD_WAIT_S)

    async def ready(self) -> bool:
        """Wait for the model load to end; whether the learned router is active."""
        if self._loading is not None:
            await asyncio.shield(self._loading)
        return self.active_kind == "learned"

    async def _load(self, learned: LearnedClassifier) -> None:
        embedder = learned.embedder
        try:
            await asyncio.to_thread(embedder.load)
            await asyncio.to_thread(embedder.embed_one, "warm up")
        except Exception as exc:
            self.failed("embedding model unavailable", exc)
            return
        self.active = learned
        logger.info(
            "router_ready",
            router="learned",
            strong_share=round(learned.cuts.strong_share, 3),
            complex_below=round(learned.cuts.complex_below, 4),
        )

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
