"""Classify: how hard is this prompt?  Writes tier, score and features to the Exchange.

The router (rules by default; see ``setup.py`` for the learned and LLM classifiers)
decides; if it ever raises, the rule classifier decides instead.
"""

from __future__ import annotations

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from ..exchange import ensure_exchange
from .routers import Router, RulesRouter
from .rules import RuleClassifier

logger = structlog.get_logger(__name__)


class ClassifyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        classifier: RuleClassifier | None = None,
        router: Router | None = None,
    ) -> None:
        self.app = app
        self.classifier = classifier or RuleClassifier()
        self.router: Router = router or RulesRouter(self.classifier)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            exchange, receive = await ensure_exchange(scope, receive)
            if exchange.classification is None:
                try:
                    exchange.classification = await self.router.decide(exchange)
                except Exception:  # never fail a call over its classification
                    logger.exception("classify_failed")
                    exchange.classification = self.classifier.classify(exchange.request)
        await self.app(scope, receive, send)
