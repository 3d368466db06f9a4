"""The learned router: how likely is the weak model's answer to be good enough?

A prompt is described by a static embedding of its tokens and a few cheap text features
(:func:`text_features`).  The token vectors are distilled from the embedding model the
semantic cache uses (all-MiniLM-L6-v2): ``tools/train_router.py`` runs the model once on
every vocabulary token, and the prompt's vector is the mean of its tokens' vectors.  Running
the transformer per request cost about 12 ms on an MMLU prompt here (0.2 ms a token); the
static vectors cost a tokenizer pass, and the routing figures stayed within noise of the
transformer's (see the README).

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
features' part.  Everything needed at inference (the
WordPiece vocabulary, the folded table, the calibration) is in the ``.npz`` beside this
module, a few hundred KB; the model itself is never loaded to route.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_WEIGHTS: Final = Path(__file__).with_name("router_weights.npz")
FORMAT_VERSION: Final = 2
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


def text_features(text: str) -> npt.NDArray[np.float64]:
    """Cheap surface features of a prompt, in the order of :data:`FEATURE_NAMES`."""
    n_chars = len(text)
    lower = text.lower()
    options = [m.start() for m in _OPTION.finditer(text)]
    stem = text[: options[0]] if options else text
    digits = len(_DIGIT.findall(text))
    numbers = {min(float(n.replace(",", "")), MAX_NUMBER) for n in _NUMBER.findall(text)}
    return np.array(
        [
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
        ],
        dtype=np.float64,
    )


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


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class LearnedRouter:
    """Predicts the probability that the weak model suffices for a prompt.

    ``token_scores`` (vocabulary x 3) holds each token's part of the three logits (the
    regression's embedding weights folded into the distilled token vectors);
    ``prior_scores`` (3) is the row of the training prompts' mean token vector, mixed in
    as ``prior_tokens`` pseudo-tokens; ``coef_text`` (3 x text features) and
    ``intercept`` (3) the rest, standardisation included; class order is (weak better,
    tie, strong better).  The expected gain ``m = p0 - p2`` is standardised with
    ``gain_mean``/``gain_std`` and blended with the standardised ``log_chars`` (weight
    ``length_weight``, longer = harder);
    ``calib_slope``/``calib_intercept`` turn the blend into a probability.
    ``quantiles`` holds the predicted probabilities of the training prompts at evenly
    spaced levels, for :meth:`threshold_for_strong_share`.
    """

    def __init__(
        self,
        token_scores: npt.NDArray[np.floating],
        vocabulary: Sequence[str],
        coef_text: npt.NDArray[np.float64],
        intercept: npt.NDArray[np.float64],
        *,
        prior_scores: npt.NDArray[np.float64],
        prior_tokens: float = DEFAULT_PRIOR_TOKENS,
        gain_mean: float,
        gain_std: float,
        length_mean: float,
        length_std: float,
        length_weight: float,
        calib_slope: float,
        calib_intercept: float,
        quantiles: npt.NDArray[np.float64],
        token_chars: int = DEFAULT_TOKEN_CHARS,
        quality_curve: npt.NDArray[np.float64] | None = None,
    ) -> None:
        if token_scores.shape != (len(vocabulary), N_OUTCOMES):
            raise ValueError(f"token table {token_scores.shape} for {len(vocabulary)} tokens")
        if coef_text.shape != (N_OUTCOMES, len(FEATURE_NAMES)) or intercept.shape != (3,):
            raise ValueError(f"bad weight shapes {coef_text.shape}, {intercept.shape}")
        if prior_scores.shape != (N_OUTCOMES,) or prior_tokens < 0:
            raise ValueError("bad prior")
        if quantiles.ndim != 1 or quantiles.size < 2:
            raise ValueError("quantile table needs at least two levels")
        if gain_std <= 0 or length_std <= 0:
            raise ValueError("standard deviations must be positive")
        self._token_scores = np.ascontiguousarray(token_scores, dtype=np.float64)
        self._tokenizer = wordpiece_tokenizer(vocabulary)
        self._coef_text = coef_text
        self._intercept = intercept
        self._prior = prior_tokens * prior_scores  # the pseudo-tokens' summed rows
        self._prior_tokens = prior_tokens
        self._gain_mean = gain_mean
        self._gain_std = gain_std
        self._length_mean = length_mean
        self._length_std = length_std
        self._length_weight = length_weight
        self._calib_slope = calib_slope
        self._calib_intercept = calib_intercept
        self._quantiles = np.maximum.accumulate(quantiles)
        self.token_chars = token_chars
        # routed quality / all-strong quality at evenly spaced strong shares (out of sample)
        self._quality_curve = quality_curve

    @classmethod
    def load(cls, path: str | None = None) -> LearnedRouter:
        """Load weights from ``path`` (default: the file packaged beside this module)."""
        with np.load(path or DEFAULT_WEIGHTS, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"router weights format {version}, expected {FORMAT_VERSION}")
            names = tuple(str(n) for n in data["feature_names"])
            if names != FEATURE_NAMES:
                raise ValueError("router weights were trained on other text features")
            return cls(
                np.asarray(data["token_scores"]),
                str(data["vocabulary"]).split("\n"),
                np.asarray(data["coef_text"], dtype=np.float64),
                np.asarray(data["intercept"], dtype=np.float64),
                prior_scores=np.asarray(data["prior_scores"], dtype=np.float64),
                prior_tokens=float(data["prior_tokens"]),
                gain_mean=float(data["gain_mean"]),
                gain_std=float(data["gain_std"]),
                length_mean=float(data["length_mean"]),
                length_std=float(data["length_std"]),
                length_weight=float(data["length_weight"]),
                calib_slope=float(data["calib_slope"]),
                calib_intercept=float(data["calib_intercept"]),
                quantiles=np.asarray(data["quantiles"], dtype=np.float64),
                token_chars=int(data["token_chars"]),
                quality_curve=np.asarray(data["quality_curve"], dtype=np.float64)
                if "quality_curve" in data
                else None,
            )

    def token_ids(self, text: str) -> list[int]:
        """The WordPiece ids of the head of ``text`` the router reads (no [CLS]/[SEP])."""
        head = cut_text(text, self.token_chars) if self.token_chars > 0 else text
        ids: list[int] = self._tokenizer.encode(head, add_special_tokens=False).ids
        return ids

    def routing_score(self, text: str) -> float:
        """The uncalibrated blend; higher means the weak model is the safer bet."""
        ids = self.token_ids(text)
        n = len(ids) + self._prior_tokens
        tokens = (self._token_scores[ids].sum(axis=0) + self._prior) / n if n else self._prior
        feats = text_features(text[:MAX_FEATURE_CHARS])
        logits = tokens + self._coef_text @ feats + self._intercept
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        gain = (float(p[0] - p[2]) - self._gain_mean) / self._gain_std
        length = (float(feats[LENGTH_FEATURE]) - self._length_mean) / self._length_std
        return gain - self._length_weight * length

    def predict_weak_ok(self, text: str) -> float:
        """Probability that the weak model's answer to ``text`` is at least as good as the
        strong one's.  Route to the strong model when this is low."""
        score = self.routing_score(text)
        return _sigmoid(self._calib_slope * score + self._calib_intercept)

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
        levels = np.linspace(0.0, 1.0, self._quantiles.size)
        return float(np.interp(share, levels, self._quantiles))

    def share_for_quality(self, target: float) -> float | None:
        """The least strong share whose routed quality reached ``target`` x all-strong.

        Read off the out-of-sample curve stored with the weights (the training mix of
        MMLU and GSM8K); None when the weights carry no curve.
        """
        curve = self._quality_curve
        if curve is None or curve.size < 2:
            return None
        hits = np.flatnonzero(curve >= target - 1e-12)
        return 1.0 if hits.size == 0 else float(hits[0]) / (curve.size - 1)
