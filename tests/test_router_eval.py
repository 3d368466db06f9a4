"""Routing metrics on hand-computed tables, and the packaged learned router."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

from optiroute_mw.classify.evaluation import (  # noqa: E402
    apgr,
    pgr_curve,
    quality_by_strong_count,
    routed_quality_curve,
    strong_fraction_at,
    strong_fraction_for_quality,
    strong_fraction_to_reach,
    summary,
)
from optiroute_mw.classify.learned import (  # noqa: E402
    DEFAULT_EMBED_CHARS,
    DEFAULT_WEIGHTS,
    FEATURE_NAMES,
    FORMAT_VERSION,
    LearnedRouter,
    cut_text,
    text_features,
)

# Five prompts.  score = predicted P(weak suffices); the lowest scores go strong first.
#   prompt  score  weak  strong  gain (strong - weak)
#   A       0.1    0     1       +1
#   B       0.2    1     0       -1
#   C       0.3    0     1       +1
#   D       0.4    1     1        0
#   E       0.5    0     0        0
# weak quality q_w = 2/5 = 0.4, strong quality q_s = 3/5 = 0.6, gap 0.2.
# k prompts strong -> quality Q_k:  k=0: 0.4 | k=1 (A): 0.6 | k=2 (+B): 0.4 | k=3 (+C): 0.6
#                                    k=4 (+D): 0.6 | k=5 (+E): 0.6
# PGR_k = (Q_k - 0.4) / 0.2 = 0, 1, 0, 1, 1, 1
# CPT(95%) = smallest k/n with PGR >= 0.95 = 1/5 = 0.2
# APGR over fractions 0, 0.2, ..., 1 (trapezoid, h = 0.2):
#   0.2 * (0/2 + 1 + 0 + 1 + 1 + 1/2) = 0.7
SCORES = [0.1, 0.2, 0.3, 0.4, 0.5]
WEAK = [False, True, False, True, False]
STRONG = [True, False, True, True, False]


def test_quality_by_strong_count_hand_table() -> None:
    q = quality_by_strong_count(SCORES, WEAK, STRONG)
    assert q == pytest.approx([0.4, 0.6, 0.4, 0.6, 0.6, 0.6])


def test_curve_and_pgr_hand_table() -> None:
    fractions, quality = routed_quality_curve(SCORES, WEAK, STRONG, points=6)
    assert fractions == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert quality == pytest.approx([0.4, 0.6, 0.4, 0.6, 0.6, 0.6])
    # Between k=0 and k=1 (f = 0.1) the quality is interpolated: (0.4 + 0.6) / 2.
    _, half = routed_quality_curve(SCORES, WEAK, STRONG, points=[0.1])
    assert half == pytest.approx([0.5])
    _, pgr = pgr_curve(SCORES, WEAK, STRONG, points=6)
    assert pgr == pytest.approx([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])


def test_cpt_and_apgr_hand_table() -> None:
    assert strong_fraction_at(0.95, SCORES, WEAK, STRONG) == pytest.approx(0.2)
    assert strong_fraction_at(0.0, SCORES, WEAK, STRONG) == 0.0
    assert apgr(SCORES, WEAK, STRONG, points=6) == pytest.approx(0.7)
    # 95% of the all-strong quality: 0.95 * 0.6 = 0.57, first reached at k = 1.
    assert strong_fraction_for_quality(0.57, SCORES, WEAK, STRONG) == pytest.approx(0.2)
    # PGR never exceeds 1 on this table.
    assert math.isnan(strong_fraction_at(1.5, SCORES, WEAK, STRONG))


def test_numeric_outcomes_separate_the_two_95_percent_targets() -> None:
    # Judge-style scores: q_w = (0.9 + 1 + 1 + 0.9) / 4 = 0.95, q_s = 1.
    # Order by score: prompts 0 (gain 0.1), 3 (gain 0.1), 1, 2.
    # Q_0 = 0.95, Q_1 = 0.975 (PGR 0.5), Q_2 = 1.0 (PGR 1.0).
    scores = [0.1, 0.5, 0.6, 0.2]
    weak = [0.9, 1.0, 1.0, 0.9]
    strong = [1.0, 1.0, 1.0, 1.0]
    assert strong_fraction_at(0.95, scores, weak, strong) == pytest.approx(0.5)
    assert strong_fraction_at(0.5, scores, weak, strong) == pytest.approx(0.25)
    # "95% of the strong quality" (>= 0.95) already holds with no strong call at all.
    assert strong_fraction_for_quality(0.95, scores, weak, strong) == 0.0


def test_the_two_95_percent_definitions_on_a_hand_table() -> None:
    # Four prompts, judge-style outcomes; the strong model is perfect.
    #   prompt  score  weak  strong  gain
    #   A       0.1    0.5   1       0.5
    #   B       0.2    0.8   1       0.2
    #   C       0.3    1     1       0
    #   D       0.4    1     1       0
    # q_w = 3.3 / 4 = 0.825, q_s = 1, gap 0.175.
    # Q_0 = 0.825, Q_1 = 0.95, Q_2 = 1.0, Q_3 = 1.0, Q_4 = 1.0
    # 95% of the all-strong quality (0.95) is reached at k = 1: strong_fraction_at_95 = 0.25.
    # PGR_k = 0, 0.714, 1, 1, 1: CPT(95%) = CPT(80%) = 2/4 = 0.5.
    # APGR over 0, 0.25, ..., 1: 0.25 * (0/2 + 0.714 + 1 + 1 + 1/2) = 0.8036.
    scores = [0.1, 0.2, 0.3, 0.4]
    weak = [0.5, 0.8, 1.0, 1.0]
    strong = [1.0, 1.0, 1.0, 1.0]
    assert strong_fraction_to_reach(0.95, scores, weak, strong) == pytest.approx(0.25)
    assert strong_fraction_at(0.95, scores, weak, strong) == pytest.approx(0.5)
    assert apgr(scores, weak, strong, points=5) == pytest.approx(0.25 * (0.125 / 0.175 + 2.5))
    figures = summary(scores, weak, strong)
    assert figures["weak_quality"] == 0.825
    assert figures["strong_quality"] == 1.0
    assert figures["strong_fraction_at_95"] == 0.25
    assert figures["cpt_pgr_95"] == 0.5
    assert figures["cpt_pgr_80"] == 0.5
    # summary's APGR integrates over 101 fractions (interpolated between prompts)
    assert figures["apgr"] == pytest.approx(apgr(scores, weak, strong), abs=1e-4)


def test_summary_when_the_strong_model_is_not_better() -> None:
    # The weak model wins on average: no gap to recover, and no strong call is needed.
    figures = summary([0.1, 0.2], [1, 1], [0, 1])
    assert figures["strong_fraction_at_95"] == 0.0
    assert figures["cpt_pgr_95"] is None and figures["apgr"] is None


def test_summary_on_the_first_hand_table() -> None:
    # 0.95 * q_s = 0.57 is first reached with A alone, like CPT(95%)
    figures = summary(SCORES, WEAK, STRONG)
    assert figures["strong_fraction_at_95"] == 0.2
    assert figures["cpt_pgr_95"] == 0.2


def test_ties_are_averaged_so_a_constant_score_is_random_routing() -> None:
    weak = [1, 0, 0, 1, 0]
    strong = [1, 1, 1, 0, 1]
    # All tied: Q_k = q_w + k/n * gap, so PGR_k = k/5 and CPT(95%) needs k = 5.
    constant = [0.5] * 5
    assert strong_fraction_at(0.95, constant, weak, strong) == 1.0
    assert strong_fraction_at(0.6, constant, weak, strong) == pytest.approx(0.6)
    assert apgr(constant, weak, strong, points=11) == pytest.approx(0.5)
    # The input order of tied prompts does not matter.
    q1 = quality_by_strong_count([0.1, 0.1, 0.5], [0, 1, 0], [1, 0, 0])
    q2 = quality_by_strong_count([0.1, 0.1, 0.5], [1, 0, 0], [0, 1, 0])
    assert q1 == pytest.approx(q2)
    assert q1 == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1 / 3])


def test_metric_input_validation() -> None:
    with pytest.raises(ValueError, match="length"):
        apgr([0.1, 0.2], [1], [1, 0])
    with pytest.raises(ValueError, match="undefined"):
        strong_fraction_at(0.95, [0.1, 0.2], [1, 0], [0, 1])
    with pytest.raises(ValueError):
        routed_quality_curve(SCORES, WEAK, STRONG, points=[1.5])


def test_random_scores_give_about_half_apgr() -> None:
    rng = np.random.default_rng(0)
    weak = rng.random(4000) < 0.6
    strong = rng.random(4000) < 0.8
    assert apgr(rng.random(4000), weak, strong) == pytest.approx(0.5, abs=0.05)
    # Ranking by the true gain beats it by far.
    oracle = weak.astype(float) - strong.astype(float)
    assert apgr(oracle, weak, strong) > 1.0


# --- the learned router ---------------------------------------------------------------


def test_packaged_weights_load_and_are_small() -> None:
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size < 3_000_000
    router = LearnedRouter.load()
    assert router.dim == 384
    assert router.embed_chars == DEFAULT_EMBED_CHARS
    # a quality target maps to a strong share through the out-of-sample curve
    share95 = router.share_for_quality(0.95)
    assert share95 is not None and 0.1 < share95 < 0.7
    assert router.share_for_quality(0.9) <= share95 <= router.share_for_quality(0.99)  # type: ignore[operator]
    assert router.share_for_quality(1.0) <= 1.0  # type: ignore[operator]


def test_embedding_text_is_the_head_cut_at_a_word() -> None:
    router = LearnedRouter.load()
    short = "What is the capital of France?"
    assert router.embedding_text(short) == short
    long = "word " * 200
    head = router.embedding_text(long)
    assert len(head) <= DEFAULT_EMBED_CHARS and long.startswith(head)
    assert head.endswith("word")
    assert cut_text("x" * 1000, 10) == "x" * 10  # no space to cut at


def test_probabilities_in_unit_interval() -> None:
    router = LearnedRouter.load()
    rng = np.random.default_rng(1)
    for text in ["hi", "what is 2+2", "x" * 5000, "Statement 1 | a\nA. 1\nB. 2\nAnswer:"]:
        vec = rng.normal(size=384).astype(np.float32)
        vec /= np.linalg.norm(vec)
        p = router.predict_weak_ok(vec, text)
        assert 0.0 <= p <= 1.0
    with pytest.raises(ValueError, match="384"):
        router.predict_weak_ok(np.zeros(10, dtype=np.float32), "hi")


def test_threshold_for_strong_share_is_monotone() -> None:
    router = LearnedRouter.load()
    shares = np.linspace(0.0, 1.0, 21)
    cuts = [router.threshold_for_strong_share(float(s)) for s in shares]
    assert all(a <= b for a, b in itertools.pairwise(cuts))
    assert cuts[0] == 0.0  # share 0: nothing scores below 0
    assert cuts[-1] > 1.0  # share 1: everything scores below it
    assert all(0.0 <= c <= 1.0 for c in cuts[1:-1])
    with pytest.raises(ValueError):
        router.threshold_for_strong_share(1.5)


def _write_weights(path: Path, *, length_weight: float, calib_intercept: float) -> None:
    dim = 4
    np.savez(
        path,
        format_version=np.int64(FORMAT_VERSION),
        dim=np.int64(dim),
        feature_names=np.array(FEATURE_NAMES),
        coef=np.zeros((3, dim + len(FEATURE_NAMES))),
        intercept=np.zeros(3),
        gain_mean=0.0,
        gain_std=1.0,
        length_mean=math.log1p(len("four")),
        length_std=1.0,
        length_weight=length_weight,
        calib_slope=2.0,
        calib_intercept=calib_intercept,
        quantiles=np.array([0.2, 0.5, 0.9]),
    )


def test_inference_formula_on_handmade_weights(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    # Zero weights: the three classes are equally likely, gain 0.  "four" has exactly
    # the mean length, so the score is 0 and the probability is sigmoid(intercept).
    _write_weights(path, length_weight=1.0, calib_intercept=0.5)
    router = LearnedRouter.load(str(path))
    vec = np.ones(4, dtype=np.float32) / 2
    assert router.predict_weak_ok(vec, "four") == pytest.approx(1 / (1 + math.exp(-0.5)))
    # A longer prompt lowers the score by length_weight * (log1p(n) - log1p(4)).
    longer = "x" * 99
    expected = 2.0 * -(math.log1p(99) - math.log1p(4)) + 0.5
    assert router.predict_weak_ok(vec, longer) == pytest.approx(1 / (1 + math.exp(-expected)))
    # Quantile table: share 0.25 lies halfway between levels 0 (0.2) and 0.5 (0.5).
    assert router.threshold_for_strong_share(0.25) == pytest.approx(0.35)


def test_feature_vector_shape() -> None:
    feats = text_features("What is 3 + 4? A. 7 B. 8 (it is not 8).")
    assert feats.shape == (len(FEATURE_NAMES),)
    assert feats[FEATURE_NAMES.index("multiple_choice")] == 0.0  # options must start a line
    assert feats[FEATURE_NAMES.index("negation")] == 1.0
    assert text_features("Q\nA. 1\nB. 2")[FEATURE_NAMES.index("multiple_choice")] == 1.0


@pytest.mark.skipif(
    not os.environ.get("OPTIROUTE_EMBED_MODEL_PATH"), reason="needs the local embedding model"
)
def test_hard_prompt_ranked_below_trivial_one() -> None:
    from optiroute_mw.embedding import Embedder

    embedder = Embedder.from_env()
    router = LearnedRouter.load()
    easy = "what is 2+2"
    hard = (
        "Prove that for every integer n >= 1 the sum 1^3 + 2^3 + ... + n^3 equals "
        "(n(n+1)/2)^2. First state the base case, then carry out the induction step, "
        "expanding (n+1)^3 and simplifying the algebra at each stage, and finally use the "
        "result to compute the sum of the cubes of the first 50 odd numbers."
    )
    p_easy = router.predict_weak_ok(embedder.embed_one(easy), easy)
    p_hard = router.predict_weak_ok(embedder.embed_one(hard), hard)
    assert 0.0 <= p_hard < p_easy <= 1.0
