"""The rule classifier: a feature score mapped to a tier, in tens of microseconds.

It needs nothing but the text, so it is also the fallback whenever a learned
classifier is unavailable.  Each feature adds to the score; the features that
fired are returned so a decision can be explained.
"""

from __future__ import annotations

import re

from ..exchange import Classification
from ..wire import ChatRequest, LLMRequest

_CODE = re.compile(
    r"```|\bdef \w+\(|\bclass \w+|\bfunction\b|\bimport \w+|#include"
    r"|\bSELECT\b.+\bFROM\b|=>|\{\s*\n"
    r"|\b(python|javascript|typescript|rust|golang|java|c\+\+|sql|regex|bash)\b",
    re.I | re.S,
)
_MATH = re.compile(
    r"\b(prove|proof|derive|integral|derivative|equation|theorem|lemma|matrix|probability"
    r"|eigen\w*|solve for|optimi[sz]e)\b|[=<>]\s*\d|\d\s*[\^*/]\s*\d|∑|∫|√",
    re.I,
)
_REASONING = re.compile(
    r"\b(why|explain|analy[sz]e|compare|contrast|evaluate|trade-?offs?|justify|critique|reason"
    r"|step[- ]by[- ]step|pros and cons|implications?|argue)\b",
    re.I,
)
_MULTI_STEP = re.compile(
    r"\b(first|then|after that|finally|next|steps?)\b|^\s*\d+[.)]\s", re.I | re.M
)
_TECHNICAL = re.compile(
    r"\b(architecture|distributed|scalab\w+|latency|throughput|concurren\w+|kubernetes|database"
    r"|microservices?|consensus|algorithm|complexity|security|encryption|protocol|compiler"
    r"|design (a|an|the)|system design|refactor|debug|performance)\b",
    re.I,
)
_CONSTRAINTS = re.compile(
    r"\b(must|should not|at least|at most|exactly|no more than|without using|in json|as json"
    r"|table|format(ted)? as|bullet points?|word limit|\d+ words)\b",
    re.I,
)
_SIMPLE = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|what is|what's|who is|when (is|was|did)|define"
    r"|translate|how do you say|capital of)\b",
    re.I,
)

WEIGHTS = {
    "length": 1.0,
    "code": 2.0,
    "math": 2.0,
    "reasoning": 1.5,
    "multi_step": 1.0,
    "technical": 1.5,
    "constraints": 0.75,
    "depth": 0.5,
    "simple_opener": -1.5,
}
MEDIUM_AT = 1.5
COMPLEX_AT = 4.0


class RuleClassifier:
    def __init__(self, medium_at: float = MEDIUM_AT, complex_at: float = COMPLEX_AT) -> None:
        self.medium_at = medium_at
        self.complex_at = complex_at

    def features(self, request: LLMRequest) -> dict[str, float]:
        text = request.last_user_text()
        words = len(text.split())
        found: dict[str, float] = {}
        # length saturates: a long paste is not three times harder than a paragraph
        found["length"] = min(words / 80.0, 2.0)
        if _CODE.search(text):
            found["code"] = 1.0
        math_hits = len(_MATH.findall(text))
        if math_hits:
            found["math"] = min(math_hits, 3) / 2 + 0.5
        reasoning_hits = len(_REASONING.findall(text))
        if reasoning_hits:
            found["reasoning"] = min(reasoning_hits, 3) / 2 + 0.5
        if len(_MULTI_STEP.findall(text)) >= 2:
            found["multi_step"] = 1.0
        technical_hits = len(_TECHNICAL.findall(text))
        if technical_hits:
            found["technical"] = min(technical_hits, 3) / 2 + 0.5
        if _CONSTRAINTS.search(text):
            found["constraints"] = 1.0
        if isinstance(request, ChatRequest):
            turns = sum(1 for m in request.messages if m.role in ("user", "assistant"))
            if turns > 2:
                found["depth"] = min((turns - 1) / 4, 2.0)
        if words <= 12 and _SIMPLE.search(text):
            found["simple_opener"] = 1.0
        return found

    def classify(self, request: LLMRequest) -> Classification:
        features = self.features(request)
        score = sum(WEIGHTS[name] * value for name, value in features.items())
        tier = (
            "complex"
            if score >= self.complex_at
            else "medium"
            if score >= self.medium_at
            else "simple"
        )
        return Classification(tier=tier, score=round(score, 3), features=features, source="rules")
