"""Routing metrics on hand-computed tables, and the packaged learned router."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import msgspec
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
    DEFAULT_TOKEN_CHARS,
    DEFAULT_WEIGHTS,
    FEATURE_NAMES,
    FORMAT_VERSION,
    LearnedRouter,
    RouterWeights,
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
    assert router.token_chars == DEFAULT_TOKEN_CHARS
    # a quality target maps to a strong share through the out-of-sample curve
    share95 = router.share_for_quality(0.95)
    assert share95 is not None and 0.1 < share95 < 0.7
    assert router.share_for_quality(0.9) <= share95 <= router.share_for_quality(0.99)  # type: ignore[operator]
    assert router.share_for_quality(1.0) <= 1.0  # type: ignore[operator]


def test_token_ids_read_the_head_cut_at_a_word() -> None:
    router = LearnedRouter.load()
    short = "What is the capital of France?"
    assert len(router.token_ids(short)) == 7  # what is the capital of france ?
    long = "word " * 1000
    assert router.token_ids(long) == router.token_ids(cut_text(long, DEFAULT_TOKEN_CHARS))
    assert len(router.token_ids(long)) == len(cut_text(long, DEFAULT_TOKEN_CHARS).split())
    assert cut_text("x" * 1000, 10) == "x" * 10  # no space to cut at


def test_probabilities_in_unit_interval() -> None:
    router = LearnedRouter.load()
    texts = ["hi", "", "   ", "what is 2+2", "x" * 5000, "Statement 1 | a\nA. 1\nB. 2\nAnswer:"]
    for text in [*texts, "東京 🙂 \x00�"]:
        assert 0.0 <= router.predict_weak_ok(text) <= 1.0


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


VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "four", "easy", "hard", "x", "##x"]


def _write_weights(
    path: Path,
    *,
    length_weight: float,
    calib_intercept: float,
    token_scores: object = None,
    prior_tokens: float = 0.0,
) -> RouterWeights:
    table = np.zeros((len(VOCABULARY), 3)) if token_scores is None else token_scores
    weights = RouterWeights(
        format_version=FORMAT_VERSION,
        feature_names=list(FEATURE_NAMES),
        vocabulary=VOCABULARY,
        token_scores=np.asarray(table, dtype="<f4").tobytes(),
        coef_text=[[0.0] * len(FEATURE_NAMES)] * 3,
        prior_tokens=prior_tokens,
        prior_scores=[0.0, 0.0, 1.0],
        intercept=[0.0, 0.0, 0.0],
        gain_mean=0.0,
        gain_std=1.0,
        length_mean=math.log1p(len("four")),
        length_std=1.0,
        length_weight=length_weight,
        calib_slope=2.0,
        calib_intercept=calib_intercept,
        quantiles=[0.2, 0.5, 0.9],
        token_chars=DEFAULT_TOKEN_CHARS,
    )
    weights.save(path)
    return weights


def test_inference_formula_on_handmade_weights(tmp_path: Path) -> None:
    path = tmp_path / "w.msgpack.gz"
    # Zero weights: the three classes are equally likely, gain 0.  "four" has exactly
    # the mean length, so the score is 0 and the probability is sigmoid(intercept).
    _write_weights(path, length_weight=1.0, calib_intercept=0.5)
    router = LearnedRouter.load(str(path))
    assert router.token_ids("four") == [4]
    assert router.predict_weak_ok("four") == pytest.approx(1 / (1 + math.exp(-0.5)))
    # A longer prompt lowers the score by length_weight * (log1p(n) - log1p(4)).
    longer = "x" * 99
    expected = 2.0 * -(math.log1p(99) - math.log1p(4)) + 0.5
    assert router.predict_weak_ok(longer) == pytest.approx(1 / (1 + math.exp(-expected)))
    # Quantile table: share 0.25 lies halfway between levels 0 (0.2) and 0.5 (0.5).
    assert router.threshold_for_strong_share(0.25) == pytest.approx(0.35)


def test_the_logits_are_the_mean_of_the_tokens_rows(tmp_path: Path) -> None:
    path = tmp_path / "w.msgpack.gz"
    table = np.zeros((len(VOCABULARY), 3), dtype=np.float32)
    table[VOCABULARY.index("easy")] = [2.0, 0.0, 0.0]  # weak better
    table[VOCABULARY.index("hard")] = [0.0, 0.0, 2.0]  # strong better
    _write_weights(path, length_weight=0.0, calib_intercept=0.0, token_scores=table)
    router = LearnedRouter.load(str(path))

    def gain(logits: list[float]) -> float:
        e = np.exp(np.array(logits))
        p = e / e.sum()
        return float(p[0] - p[2])

    # score = gain (length weight 0, gain standardised with mean 0 and std 1)
    assert router.routing_score("easy") == pytest.approx(gain([2, 0, 0]))
    assert router.routing_score("hard") == pytest.approx(gain([0, 0, 2]))
    assert router.routing_score("easy hard") == pytest.approx(0.0)  # rows cancel out
    assert router.routing_score("easy easy hard four") == pytest.approx(gain([1, 0, 0.5]))
    assert router.routing_score("EASY") == router.routing_score("easy")  # uncased
    assert router.routing_score("") == pytest.approx(0.0)  # no tokens: a zero row
    assert router.predict_weak_ok("easy") > 0.5 > router.predict_weak_ok("hard")
    # pseudo-tokens of the prior row (0, 0, 1) count as that many more tokens
    _write_weights(
        path, length_weight=0.0, calib_intercept=0.0, token_scores=table, prior_tokens=2.0
    )
    router = LearnedRouter.load(str(path))
    assert router.routing_score("easy easy") == pytest.approx(gain([1, 0, 0.5]))
    assert router.routing_score("") == pytest.approx(gain([0, 0, 1]))  # the prior alone


def test_weights_of_another_format_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.msgpack.gz"
    weights = _write_weights(path, length_weight=1.0, calib_intercept=0.0)
    msgspec.structs.replace(weights, format_version=2).save(path)
    with pytest.raises(ValueError, match="format 2"):
        LearnedRouter.load(str(path))
    msgspec.structs.replace(weights, token_scores=bytes(12)).save(path)
    with pytest.raises(ValueError, match="token table"):
        LearnedRouter.load(str(path))
    path.write_bytes(b"not gzip")
    with pytest.raises(OSError):
        LearnedRouter.load(str(path))


def test_feature_vector_shape() -> None:
    feats = text_features("What is 3 + 4? A. 7 B. 8 (it is not 8).")
    assert len(feats) == len(FEATURE_NAMES)
    assert feats[FEATURE_NAMES.index("multiple_choice")] == 0.0  # options must start a line
    assert feats[FEATURE_NAMES.index("negation")] == 1.0
    assert text_features("Q\nA. 1\nB. 2")[FEATURE_NAMES.index("multiple_choice")] == 1.0


def test_word_problem_features() -> None:
    text = (
        "Each box holds 12 apples and costs $3.50. Tom buys 3 boxes, then gives half "
        "of the apples away. How many apples are left? Use 1/2 for half."
    )
    feats = text_features(text)

    def value(name: str) -> float:
        return float(feats[FEATURE_NAMES.index(name)])

    # 12, 3.50, 3, 1, 2: five distinct quantities (3 and 3.50 differ), the largest 12
    assert value("log_distinct_numbers") == pytest.approx(math.log1p(5))
    assert value("log_max_number") == pytest.approx(math.log1p(12))
    assert value("log_fractions") == pytest.approx(math.log1p(2))  # 3.50 and 1/2
    # each, then, half, how many, left, half
    assert value("log_step_words") == pytest.approx(math.log1p(6))
    # a long digit run (an id, a pasted hash) is capped, never an overflow
    huge = text_features("order " + "9" * 400)
    assert huge[FEATURE_NAMES.index("log_max_number")] == pytest.approx(math.log1p(1e12))
    assert all(math.isfinite(x) for x in huge)


def test_hard_prompt_ranked_below_trivial_one() -> None:
    router = LearnedRouter.load()
    easy = "what is 2+2"
    hard = (
        "Prove that for every integer n >= 1 the sum 1^3 + 2^3 + ... + n^3 equals "
        "(n(n+1)/2)^2. First state the base case, then carry out the induction step, "
        "expanding (n+1)^3 and simplifying the algebra at each stage, and finally use the "
        "result to compute the sum of the cubes of the first 50 odd numbers."
    )
    assert 0.0 <= router.predict_weak_ok(hard) < router.predict_weak_ok(easy) <= 1.0
