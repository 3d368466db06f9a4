"""The learned router: how likely is the weak model's answer to be good enough?

A prompt is described by a static embedding of its tokens and a few cheap text features
(:func:`text_features`).  The token vectors are distilled from the embedding model the
semantic cache uses (all-MiniLM-L6-v2): ``tools/train_router.py`` runs the model once on
every vocabulary token, and the prompt's vector is the mean of its tokens' vectors.  Running
the transformer per request cost about 12 ms on an MMLU prompt here (0.2 ms a token); the
static vectors cost a tokenizer pass, and route as well on MMLU and about as well on GSM8K
(the README has the figures).

A multinomial logistic regression predicts, for the weak/strong model pair it was trained
on, which of three outcomes is expected: the weak model does better, both do equally well
(both right or both wrong), or the strong model does better.  The routing score is the
expected weak-minus-strong outcome ``P(weak better) - P(strong better)``, blended with the
prompt's length (the one signal that held up on subjects the model never saw), then mapped
by a fitted sigmoid to the probability that the weak answer is at least as good as the
strong one.  Ranking by that gain, not by the weak model's accuracy alone, matters: on a
prompt both models get wrong, calling the strong model buys nothing.

The regression is linear in the mean token vector, so its weights are folded into the token
table: each vocabulary token carries three numbers, and a prompt's logits are the mean of
its tokens' rows (with ``prior_tokens`` rows of the training mean mixed in) plus the text
features' part.  Everything needed at inference (the WordPiece vocabulary, the folded
table, the calibration) is in ``router_weights.msgpack.gz`` beside this module
(:class:`RouterWeights`, about 470 KB); the model itself is never loaded to route.
Inference is plain Python over that table and needs only ``tokenizers``: no numpy, so an
idle sidecar routing this way stays small (the WordPiece vocabulary in the tokenizer is
most of its ~15 MB).
"""

from __future__ import annotations

import gzip
import math
import re
import sys
from array import array
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_WEIGHTS: Final = Path(__file__).with_name("router_weights.msgpack.gz")
FORMAT_VERSION: Final = 3
N_OUTCOMES: Final = 3

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
# one \b group for the words: Python's re tries every \b alternative at every position
_OPERATOR = re.compile(r"[=+*/^<>]|\\frac|\b(?:sqrt|mod|log|sin|cos|integral|derivative)\b")
_WORD = re.compile(r"\w+")
_DIGIT = re.compile(r"\d")
_SENTENCE_END = re.compile(r"[.?!](?:\s|$)")
_OPTION = re.compile(r"^[A-D]\.\s", re.M)
_CODE = re.compile(r"[{};]|==|\+\+|\b(?:def |return\b|int\b|print\()")
_FRACTION = re.compile(r"\d+/\d+|\d+\.\d+")
# the words of a word problem's steps: each one is an operation to carry out
_STEP = re.compile(
    r"\b(?:each|per|every|total|remaining|left|twice|half|times|percent|more than|"
    r"less than|fewer|after|then|how many|how much)\b"
)
MAX_NUMBER: Final = 1e12  # a longer digit run is an id, not a quantity

FEATURE_NAMES: Final = (
    "log_chars",
    "log_words",
    "digit_share",
    "log_numbers",
    "log_operators",
    "log_newlines",
    "two_statements",
    "log_stem_chars",
    "multiple_choice",
    "negation",
    "log_code_tokens",
    "log_question_marks",
    "log_stem_sentences",
    "percent_or_money",
    "log_distinct_numbers",
    "log_max_number",
    "log_fractions",
    "log_step_words",
)
LENGTH_FEATURE: Final = 0  # index of log_chars, the feature blended into the score
DEFAULT_TOKEN_CHARS: Final = 2048  # the head that is tokenized; a longer paste saturates
# Pseudo-tokens of the training prompts' mean vector added to every prompt: the mean of a
# few tokens lies far from any training prompt's and would decide alone ("hi there!" went
# to the strong tier without it); a long prompt's own tokens outweigh it.
DEFAULT_PRIOR_TOKENS: Final = 16.0
MAX_FEATURE_CHARS: Final = 16_384  # the surface features of a longer paste saturate anyway


def cut_text(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, ending at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit // 2 else head


def text_features(text: str) -> list[float]:
    """Cheap surface features of a prompt, in the order of :data:`FEATURE_NAMES`."""
    n_chars = len(text)
    lower = text.lower()
    options = [m.start() for m in _OPTION.finditer(text)]
    stem = text[: options[0]] if options else text
    digits = len(_DIGIT.findall(text))
    numbers = {min(float(n.replace(",", "")), MAX_NUMBER) for n in _NUMBER.findall(text)}
    return [
        math.log1p(n_chars),
        math.log1p(len(_WORD.findall(text))),
        digits / max(1, n_chars),
        math.log1p(len(_NUMBER.findall(text))),
        math.log1p(len(_OPERATOR.findall(text))),
        math.log1p(text.count("\n")),
        float("statement 1" in lower),
        math.log1p(len(stem)),
        float(len(options) >= 2),
        float(" not " in lower or "except" in lower),
        math.log1p(len(_CODE.findall(text))),
        math.log1p(text.count("?")),
        math.log1p(len(_SENTENCE_END.findall(stem))),
        float("%" in text or "$" in text),
        math.log1p(len(numbers)),
        math.log1p(max(numbers, default=0.0)),
        math.log1p(len(_FRACTION.findall(text))),
        math.log1p(len(_STEP.findall(lower))),
    ]


def wordpiece_tokenizer(vocabulary: Sequence[str]) -> Tokenizer:
    """The embedding model's tokenizer (BERT uncased WordPiece) rebuilt from its vocabulary.

    The same normaliser, pre-tokenizer and model as the model folder's ``tokenizer.json``,
    so the router needs no model files to route (checked token for token in the tests).
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    ids = {token: i for i, token in enumerate(vocabulary)}
    tokenizer = Tokenizer(WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tokenizer.pre_tokenizer = BertPreTokenizer()
    return tokenizer


class RouterWeights(msgspec.Struct, frozen=True, kw_only=True):
    """What ``tools/train_router.py`` saves: gzip-compressed msgpack.

    ``token_scores`` holds float32 little-endian numbers, three per vocabulary token in
    vocabulary order: the token's part of the (weak better, tie, strong better) logits.
    ``prior_scores`` is the row of the training prompts' mean token vector, mixed in as
    ``prior_tokens`` pseudo-tokens; ``coef_text`` (3 x text features) and ``intercept``
    the rest, input standardisation included.  The expected gain ``p0 - p2`` is
    standardised with ``gain_mean``/``gain_std`` and blended with the standardised
    ``log_chars`` (weight ``length_weight``, longer = harder); ``calib_slope`` and
    ``calib_intercept`` turn the blend into a probability.  ``quantiles`` holds the
    training prompts' probabilities at evenly spaced levels; ``quality_curve`` the routed
    quality / all-strong quality at evenly spaced strong shares, out of sample.
    """

    format_version: int
    feature_names: list[str]
    vocabulary: list[str]
    token_scores: bytes
    prior_scores: list[float]
    prior_tokens: float
    coef_text: list[list[float]]
    intercept: list[float]
    gain_mean: float
    gain_std: float
    length_mean: float
    length_std: float
    length_weight: float
    calib_slope: float
    calib_intercept: float
    quantiles: list[float]
    quality_curve: list[float] | None = None
    token_chars: int = DEFAULT_TOKEN_CHARS
    trained_on: str = ""

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(gzip.compress(msgspec.msgpack.encode(self), mtime=0))

    @classmethod
    def read(cls, path: str | Path) -> RouterWeights:
        return msgspec.msgpack.decode(gzip.decompress(Path(path).read_bytes()), type=cls)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class LearnedRouter:
    """Predicts the probability that the weak model suffices for a prompt."""

    def __init__(self, weights: RouterWeights) -> None:
        w = weights
        if w.format_version != FORMAT_VERSION:
            raise ValueError(f"router weights format {w.format_version}, expected {FORMAT_VERSION}")
        if tuple(w.feature_names) != FEATURE_NAMES:
            raise ValueError("router weights were trained on other text features")
        table = array("f")
        table.frombytes(w.token_scores)
        if sys.byteorder == "big":
            table.byteswap()
        if len(table) != N_OUTCOMES * len(w.vocabulary):
            raise ValueError(f"token table of {len(table)} numbers for {len(w.vocabulary)} tokens")
        rows = [len(row) for row in w.coef_text]
        if rows != [len(FEATURE_NAMES)] * N_OUTCOMES or len(w.intercept) != N_OUTCOMES:
            raise ValueError(f"bad weight shapes {rows}, {len(w.intercept)}")
        if len(w.prior_scores) != N_OUTCOMES or w.prior_tokens < 0:
            raise ValueError("bad prior")
        if len(w.quantiles) < 2:
            raise ValueError("quantile table needs at least two levels")
        if w.gain_std <= 0 or w.length_std <= 0:
            raise ValueError("standard deviations must be positive")
        # what inference reads; the vocabulary and the raw table live on in their new forms
        self.weights = msgspec.structs.replace(w, vocabulary=[], token_scores=b"")
        # one column per outcome: a prompt's rows are summed with sum(map(...)) per column
        self._columns = [array("d", table[k::N_OUTCOMES]) for k in range(N_OUTCOMES)]
        self._tokenizer = wordpiece_tokenizer(w.vocabulary)
        self._prior = [w.prior_tokens * v for v in w.prior_scores]  # the pseudo-tokens' sum
        self._quantiles = list(accumulate(w.quantiles, max))  # monotone, to interpolate
        self.token_chars = w.token_chars

    @classmethod
    def load(cls, path: str | None = None) -> LearnedRouter:
        """Load weights from ``path`` (default: the file packaged beside this module)."""
        return cls(RouterWeights.read(path or DEFAULT_WEIGHTS))

    def token_ids(self, text: str) -> list[int]:
        """The WordPiece ids of the head of ``text`` the router reads (no [CLS]/[SEP])."""
        head = cut_text(text, self.token_chars) if self.token_chars > 0 else text
        ids: list[int] = self._tokenizer.encode(head, add_special_tokens=False).ids
        return ids

    def _logits(self, ids: list[int], feats: list[float]) -> list[float]:
        """The three outcome logits: token rows (with the prior), text features, intercept."""
        w = self.weights
        n = len(ids) + w.prior_tokens
        out = []
        for k in range(N_OUTCOMES):
            column = self._columns[k]
            tokens = (sum(map(column.__getitem__, ids)) + self._prior[k]) / n if n else 0.0
            text_part = math.fsum(c * f for c, f in zip(w.coef_text[k], feats, strict=True))
            out.append(tokens + text_part + w.intercept[k])
        return out

    def routing_score(self, text: str) -> float:
        """The uncalibrated blend; higher means the weak model is the safer bet."""
        w = self.weights
        feats = text_features(text[:MAX_FEATURE_CHARS])
        logits = self._logits(self.token_ids(text), feats)
        top = max(logits)
        e = [math.exp(x - top) for x in logits]
        total = sum(e)
        gain = ((e[0] - e[2]) / total - w.gain_mean) / w.gain_std
        length = (feats[LENGTH_FEATURE] - w.length_mean) / w.length_std
        return gain - w.length_weight * length

    def predict_weak_ok(self, text: str) -> float:
        """Probability that the weak model's answer to ``text`` is at least as good as the
        strong one's.  Route to the strong model when this is low."""
        w = self.weights
        return _sigmoid(w.calib_slope * self.routing_score(text) + w.calib_intercept)

    def threshold_for_strong_share(self, share: float) -> float:
        """The ``predict_weak_ok`` cut-off that sends about ``share`` of prompts to strong.

        Route to the strong model when ``predict_weak_ok(...) < threshold``.  The share is
        that of the training prompts (MMLU and GSM8K); real traffic with another mix of
        prompts will see another share, so re-derive the table from live scores when
        possible.
        """
        if not 0.0 <= share <= 1.0:
            raise ValueError("share must lie in [0, 1]")
        if share <= 0.0:
            return 0.0  # nothing scores below 0
        if share >= 1.0:
            return math.nextafter(1.0, math.inf)  # everything scores below this
        q = self._quantiles
        position = share * (len(q) - 1)  # the levels are evenly spaced over [0, 1]
        i = min(int(position), len(q) - 2)
        return q[i] + (q[i + 1] - q[i]) * (position - i)

    def share_for_quality(self, target: float) -> float | None:
        """The least strong share whose routed quality reached ``target`` x all-strong.

        Read off the out-of-sample curve stored with the weights (the training mix of
        MMLU and GSM8K); None when the weights carry no curve.
        """
        curve = self.weights.quality_curve
        if curve is None or len(curve) < 2:
            return None
        # the curve is not monotone: the first share that reaches the target
        first = next((i for i, q in enumerate(curve) if q >= target - 1e-12), None)
        return 1.0 if first is None else first / (len(curve) - 1)
