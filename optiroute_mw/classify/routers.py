"""The classifiers the classify stage can run, behind one small protocol.

* :class:`RulesRouter`: the rule score (``rules.py``), in tens of microseconds, no
  dependencies; every other classifier falls back to it.
* :class:`LearnedClassifier`: asks the learned model (``learned.py``: distilled token
  vectors of the embedding model, folded into a table, plus text features) for
  P(weak model suffices) of the last user message, in a fraction of a millisecond on the
  event loop; :class:`TierCuts` maps that probability to a tier.  The rule classifier's
  ``complex`` stays a floor: the learned model knows exam questions and word problems
  (its training data), not system-design briefs or multi-part coding tasks, and the
  rules catch those.  On the training benchmarks the
  floor adds about 1.5% strong calls (MMLU) and 0.5% (GSM8K) at the same quality.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..exchange import Classification, Exchange
from .rules import RuleClassifier

if TYPE_CHECKING:  # tokenizers is optional (the semantic extra)
    from .learned import LearnedRouter

FailureHook = Callable[[str, BaseException | None], None]
DEFAULT_STRONG_SHARE = 0.5


class Router(Protocol):
    async def decide(self, exchange: Exchange) -> Classification: ...


class RulesRouter:
    def __init__(self, classifier: RuleClassifier | None = None) -> None:
        self.classifier = classifier or RuleClassifier()

    async def decide(self, exchange: Exchange) -> Classification:
        return self.classifier.classify(exchange.request)


@dataclass(frozen=True, slots=True)
class TierCuts:
    """P(weak ok) below ``complex_below``: complex; below ``medium_below``: medium."""

    complex_below: float
    medium_below: float
    strong_share: float  # the share of (training) prompts that land in complex

    def tier(self, p_weak_ok: float) -> str:
        if p_weak_ok < self.complex_below:
            return "complex"
        if p_weak_ok < self.medium_below:
            return "medium"
        return "simple"

    @classmethod
    def calibrated(
        cls,
        model: LearnedRouter,
        *,
        strong_share: float | None = None,
        quality_target: float = 0.95,
        medium_share: float = 0.25,
    ) -> TierCuts:
        """Cuts from a target share of strong (complex) calls or, when no share is given,
        from a quality target: the least strong share whose routed quality reached
        ``quality_target`` x the all-strong quality out of sample in training."""
        share = strong_share
        if share is None:
            share = model.share_for_quality(quality_target)
        if share is None:
            share = DEFAULT_STRONG_SHARE
        complex_below = model.threshold_for_strong_share(share)
        medium_below = model.threshold_for_strong_share(min(1.0, share + medium_share))
        return cls(complex_below, max(complex_below, medium_below), share)


class LearnedClassifier:
    """The learned model's tiers; the rules answer whenever it cannot."""

    def __init__(
        self,
        model: LearnedRouter,
        cuts: TierCuts,
        *,
        rules: RuleClassifier | None = None,
        on_failure: FailureHook | None = None,
    ) -> None:
        self.model = model
        self.cuts = cuts
        self.rules = rules or RuleClassifier()
        self.fallback = RulesRouter(self.rules)
        self.on_failure = on_failure

    def _fail(self, why: str, exc: BaseException | None = None) -> None:
        if self.on_failure is not None:
            self.on_failure(why, exc)

    async def decide(self, exchange: Exchange) -> Classification:
        text = exchange.request.last_user_text()
        if not text.strip():
            return await self.fallback.decide(exchange)
        try:
            p = self.model.predict_weak_ok(text)
        except Exception as exc:  # a side system never fails the call
            self._fail("learned router failed", exc)
            return await self.fallback.decide(exchange)
        cuts = self.cuts
        rules = self.rules.classify(exchange.request)
        floor = rules.tier == "complex"
        return Classification(
            tier="complex" if floor else cuts.tier(p),
            score=round(1.0 - p, 4),  # like the rule score: higher is harder
            features={
                "p_weak_ok": p,
                "rules_score": rules.score,
                "rules_complex": float(floor),
                "complex_below": round(cuts.complex_below, 4),
                "medium_below": round(cuts.medium_below, 4),
            },
            source="learned",
        )


def routing_order_score(decision: Classification) -> float:
    """One number ordering prompts from hardest to easiest as the classifier routes them.

    Learned: P(weak ok), minus 1 when the rules' complex floor applies (those prompts go
    strong at any threshold); rules and LLM: the negated score.
    """
    if decision.source == "learned":
        return decision.features["p_weak_ok"] - decision.features.get("rules_complex", 0.0)
    return -decision.score
