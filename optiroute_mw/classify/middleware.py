"""Classify: how hard is this prompt?  Writes tier, score and features to the Exchange."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..exchange import ensure_exchange
from .rules import RuleClassifier


class ClassifyMiddleware:
    def __init__(self, app: ASGIApp, *, classifier: RuleClassifier | None = None) -> None:
        self.app = app
        self.classifier = classifier or RuleClassifier()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            exchange, receive = await ensure_exchange(scope, receive)
            if exchange.classification is None:
                exchange.classification = self.classifier.classify(exchange.request)
        await self.app(scope, receive, send)
