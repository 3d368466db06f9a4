"""The rule classifier: a feature score mapped to a tier, in tens of microseconds.

It needs nothing but the text, so it is also the fallback whenever a learned
classifier is unavailable.  Each feature adds to the score; the features that
fired are returned so a decision can be explained.
"""

from __future__ import annotations

import re
from collections import Counter

from ..exchange import Classification
from ..wire import ChatRequest, LLMRequest

# The text is lower-cased and split into words once; each word is looked up in one
# table and phrases are found by substring search, so the cost grows with the text's
# length only once (seven case-insensitive regexes cost ~150 µs on a 200-character
# prompt; this is a few µs on a short one).
_WORDS = re.compile(r"\w+")
_VOCABULARY: dict[str, list[str]] = {
    "code": [
        "function",
        "python",
        "javascript",
        "typescript",
        "rust",
        "golang",
        "java",
        "sql",
        "regex",
        "bash",
    ],
    "math": [
        "prove",
        "proof",
        "derive",
        "integral",
        "derivative",
        "equation",
        "theorem",
        "lemma",
        "matrix",
        "probability",
        "optimise",
        "optimize",
    ],
    "reasoning": [
        "why",
        "explain",
        "analyse",
        "analyze",
        "compare",
        "contrast",
        "evaluate",
        "justify",
        "critique",
        "reason",
        "implication",
        "implications",
        "argue",
        "tradeoff",
        "tradeoffs",
    ],
    "multi_step": ["first", "then", "finally", "next", "step", "steps"],
    "technical": [
        "architecture",
        "distributed",
        "latency",
        "throughput",
        "kubernetes",
        "database",
        "microservice",
        "microservices",
        "consensus",
        "algorithm",
        "complexity",
        "security",
        "encryption",
        "protocol",
        "compiler",
        "refactor",
        "debug",
        "performance",
    ],
    "constraints": ["must", "exactly", "table"],
}
_FEATURE_OF = {word: feature for feature, words in _VOCABULARY.items() for word in words}
_PREFIXES = {"eigen": "math", "scalab": "technical", "concurren": "technical"}
_PREFIX_TUPLE = tuple(_PREFIXES)
_PHRASES: dict[str, str] = {
    "solve for": "math",
    "trade off": "reasoning",
    "trade offs": "reasoning",
    "step by step": "reasoning",
    "pros and cons": "reasoning",
    "after that": "multi_step",
    "design a": "technical",
    "design an": "technical",
    "design the": "technical",
    "system design": "technical",
    **dict.fromkeys(
        [
            "should not",
            "at least",
            "at most",
            "no more than",
            "without using",
            "in json",
            "as json",
            "format as",
            "formatted as",
            "bullet point",
            "bullet points",
            "word limit",
        ],
        "constraints",
    ),
}
_CODE_MARKS = ("c++", "```", "#include", "=>")
_CODE_SHAPE_HINTS = ("def ", "class ", "import ", "select", "{")  # cheap gate before the regex
_CODE_SHAPES = re.compile(
    r"\bdef \w+\(|\bclass \w+|\bimport \w+|\bselect\b.+\bfrom\b|\{\s*\n", re.S
)
_MATH_SYMBOL_HINTS = tuple("=<>^*/∑∫√")
_MATH_SYMBOLS = re.compile(r"[=<>]\s*\d|\d\s*[\^*/]\s*\d|∑|∫|√")
_NUMBERED_LINE = re.compile(r"^\s*\d+[.)]\s", re.M)
_WORD_COUNT = re.compile(r"\d+ words\b")
_SIMPLE = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|what is|what's|who is|when (is|was|did)|define"
    r"|translate|how do you say|capital of)\b",
    re.I,
)


def _has_any(text: str, needles: tuple[str, ...]) -> bool:
    return any(needle in text for needle in needles)


def _hits(lowered: str) -> Counter[str]:
    """How often each feature's vocabulary occurs in the (lower-cased) text."""
    words = _WORDS.findall(lowered)
    hits: Counter[str] = Counter()
    for word in words:
        feature = _FEATURE_OF.get(word)
        if feature is not None:
            hits[feature] += 1
        elif word.startswith(_PREFIX_TUPLE):
            hits[next(v for k, v in _PREFIXES.items() if word.startswith(k))] += 1
    joined = f" {' '.join(words)} "  # word boundaries for phrase search
    for phrase, feature in _PHRASES.items():
        if phrase in joined:
            hits[feature] += joined.count(f" {phrase} ")
    if _has_any(lowered, _MATH_SYMBOL_HINTS):
        hits["math"] += len(_MATH_SYMBOLS.findall(lowered))
    if _has_any(lowered, _CODE_MARKS) or (
        _has_any(lowered, _CODE_SHAPE_HINTS) and _CODE_SHAPES.search(lowered)
    ):
        hits["code"] += 1
    if " words" in lowered and _WORD_COUNT.search(lowered):
        hits["constraints"] += 1
    return hits


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
        count = len(text.split())
        hits = _hits(text.lower())
        found: dict[str, float] = {}
        # length saturates: a long paste is not three times harder than a paragraph
        found["length"] = min(count / 80.0, 2.0)
        if hits["code"]:
            found["code"] = 1.0
        for name in ("math", "reasoning"):
            if hits[name]:
                found[name] = min(hits[name], 3) / 2 + 0.5
        if hits["multi_step"] + len(_NUMBERED_LINE.findall(text)) >= 2:
            found["multi_step"] = 1.0
        if hits["technical"]:
            found["technical"] = min(hits["technical"], 3) / 2 + 0.5
        if hits["constraints"]:
            found["constraints"] = 1.0
        if isinstance(request, ChatRequest):
            turns = sum(1 for m in request.messages if m.role in ("user", "assistant"))
            if turns > 2:
                found["depth"] = min((turns - 1) / 4, 2.0)
        if count <= 12 and _SIMPLE.search(text):
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
