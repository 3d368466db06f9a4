"""The learned router: how likely is the weak model's answer to be good enough?

A prompt is described by its sentence embedding (384-d, ``optiroute_mw.embedding``) and a
few cheap text features (:func:`text_features`).  A multinomial logistic regression
predicts, for the weak/strong model pair it was trained on, which of three outcomes is
expected: the weak model does better, both do equally well (both right or both wrong),
or the strong model does better.  The routing score is the expected weak-minus-strong
outcome ``P(weak better) - P(strong better)``, blended with the prompt's length (the one
signal that held up on subjects the model never saw), then mapped by a fitted sigmoid to
the probability that the weak answer is at least as good as the strong one.

Ranking by that gain, not by the weak model's accuracy alone, matters: on a prompt both
models get wrong, calling the strong model buys nothing.

Everything needed at inference is in the ``.npz`` beside this module (see
``tools/train_router.py``, which rebuilds it).  Inference is pure numpy: one 3x398
matrix-vector product and a handful of regular expressions.  The embedding sees at most
the first ``embed_chars`` characters of the prompt (:meth:`LearnedRouter.embedding_text`,
cut at a word boundary), in training as in serving: the encoder's cost grows with every
token, and the routing figures did not move when prompts were cut at 256 characters.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

DEFAULT_WEIGHTS: Final = Path(__file__).with_name("router_weights.npz")
FORMAT_VERSION: Final = 1

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_OPERATOR = re.compile(
    r"[=+*/^<>]|\bsqrt\b|\\frac|\bmod\b|\blog\b|\bsin\b|\bcos\b|\bintegral\b|\bderivative\b"
)
_WORD = re.compile(r"\w+")
_DIGIT = re.compile(r"\d")
_SENTENCE_END = re.compile(r"[.?!](?:\s|$)")
_OPTION = re.compile(r"^[A-D]\.\s", re.M)
_CODE = re.compile(r"\bdef |\breturn\b|[{};]|\bint\b|\bprint\(|==|\+\+")

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
)
LENGTH_FEATURE: Final = 0  # index of log_chars, the feature blended into the score
DEFAULT_EMBED_CHARS: Final = 256
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
        ],
        dtype=np.float64,
    )


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class LearnedRouter:
    """Predicts the probability that the weak model suffices for a prompt.

    ``coef`` (3 x (dim + features)) and ``intercept`` (3) already include the input
    standardisation; class order is (weak better, tie, strong better).  The expected
    gain ``m = p0 - p2`` is standardised with ``gain_mean``/``gain_std`` and blended
    with the standardised ``log_chars`` (weight ``length_weight``, longer = harder);
    ``calib_slope``/``calib_intercept`` turn the blend into a probability.
    ``quantiles`` holds the predicted probabilities of the training prompts at
    evenly spaced levels, for :meth:`threshold_for_strong_share`.
    """

    def __init__(
        self,
        coef: npt.NDArray[np.float64],
        intercept: npt.NDArray[np.float64],
        *,
        gain_mean: float,
        gain_std: float,
        length_mean: float,
        length_std: float,
        length_weight: float,
        calib_slope: float,
        calib_intercept: float,
        quantiles: npt.NDArray[np.float64],
        dim: int,
        embed_chars: int = DEFAULT_EMBED_CHARS,
        quality_curve: npt.NDArray[np.float64] | None = None,
    ) -> None:
        n_features = len(FEATURE_NAMES)
        if coef.shape != (3, dim + n_features) or intercept.shape != (3,):
            raise ValueError(f"bad weight shapes {coef.shape}, {intercept.shape} for dim {dim}")
        if quantiles.ndim != 1 or quantiles.size < 2:
            raise ValueError("quantile table needs at least two levels")
        if gain_std <= 0 or length_std <= 0:
            raise ValueError("standard deviations must be positive")
        self.dim = dim
        self._coef_vec = np.ascontiguousarray(coef[:, :dim])
        self._coef_text = np.ascontiguousarray(coef[:, dim:])
        self._intercept = intercept
        self._gain_mean = gain_mean
        self._gain_std = gain_std
        self._length_mean = length_mean
        self._length_std = length_std
        self._length_weight = length_weight
        self._calib_slope = calib_slope
        self._calib_intercept = calib_intercept
        self._quantiles = np.maximum.accumulate(quantiles)
        self.embed_chars = embed_chars
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
                np.asarray(data["coef"], dtype=np.float64),
                np.asarray(data["intercept"], dtype=np.float64),
                gain_mean=float(data["gain_mean"]),
                gain_std=float(data["gain_std"]),
                length_mean=float(data["length_mean"]),
                length_std=float(data["length_std"]),
                length_weight=float(data["length_weight"]),
                calib_slope=float(data["calib_slope"]),
                calib_intercept=float(data["calib_intercept"]),
                quantiles=np.asarray(data["quantiles"], dtype=np.float64),
                dim=int(data["dim"]),
                embed_chars=int(data["embed_chars"]) if "embed_chars" in data else 0,
                quality_curve=np.asarray(data["quality_curve"], dtype=np.float64)
                if "quality_curve" in data
                else None,
            )

    def routing_score(self, vector: npt.NDArray[np.floating], text: str) -> float:
        """The uncalibrated blend; higher means the weak model is the safer bet."""
        v = np.asarray(vector, dtype=np.float64).reshape(-1)
        if v.size != self.dim:
            raise ValueError(f"expected a {self.dim}-d embedding, got {v.size}")
        feats = text_features(text[:MAX_FEATURE_CHARS])
        logits = self._coef_vec @ v + self._coef_text @ feats + self._intercept
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        gain = (float(p[0] - p[2]) - self._gain_mean) / self._gain_std
        length = (float(feats[LENGTH_FEATURE]) - self._length_mean) / self._length_std
        return gain - self._length_weight * length

    def predict_weak_ok(self, vector: npt.NDArray[np.floating], text: str) -> float:
        """Probability that the weak model's answer is at least as good as the strong one's.

        ``vector`` is the prompt's L2-normalised embedding (``Embedder.embed_one``) and
        ``text`` the same prompt.  Route to the strong model when this is low.
        """
        score = self.routing_score(vector, text)
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

    def embedding_text(self, text: str) -> str:
        """What to embed for ``text``: its head, as in training (0: the whole text)."""
        return cut_text(text, self.embed_chars) if self.embed_chars > 0 else text

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
