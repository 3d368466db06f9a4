"""Cost/quality metrics for a two-model router.

A router gives every prompt a score: the predicted probability that the weak model's
answer is good enough.  Sending a fraction ``f`` of the prompts to the strong model means
sending the ``round(f * n)`` prompts with the *lowest* scores there and the rest to the
weak model.  With per-prompt outcomes ``weak[i]`` and ``strong[i]`` (bool or numeric,
e.g. correct/incorrect or a judge score):

* routed quality ``Q(f)`` = mean over prompts of ``strong[i]`` if prompt ``i`` is routed
  to the strong model, else ``weak[i]``.  ``Q(0)`` is the weak model's mean quality
  ``q_w`` and ``Q(1)`` the strong model's ``q_s``.
* ``strong_fraction_at_95`` = the smallest fraction of strong calls at which the routed
  quality reaches 95% of the all-strong quality, ``Q(f) >= 0.95 * q_s``
  (:func:`strong_fraction_to_reach`).  This is the figure the router is tuned for.
* performance gap recovered ``PGR(f) = (Q(f) - q_w) / (q_s - q_w)``.
* ``cpt_pgr_95``: RouteLLM's call-performance threshold CPT(95%) = the smallest fraction
  of strong calls with ``PGR(f) >= 0.95`` (:func:`strong_fraction_at`): 95% of the *gap*
  recovered, a much stricter target whenever the weak model is already close.
* ``APGR`` = the area under ``PGR(f)`` for ``f`` in ``[0, 1]`` (trapezoid rule over
  evenly spaced fractions, :func:`apgr`), RouteLLM's average performance gap recovered.
  A random router has ``PGR(f) = f`` in expectation, so ``APGR = 0.5`` and
  ``CPT(x) = x``.

Ties: prompts with equal scores are ordered at random by a real router, so the quality
within a run of tied scores is the expectation over that random order (each tied prompt
contributes the run's mean gain).  A constant score therefore behaves exactly like
random routing instead of depending on the input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


def _outcomes(
    scores: ArrayLike, weak: ArrayLike, strong: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = np.asarray(weak, dtype=np.float64).ravel()
    g = np.asarray(strong, dtype=np.float64).ravel()
    if not (s.shape == w.shape == g.shape):
        raise ValueError(f"length mismatch: {s.shape}, {w.shape}, {g.shape}")
    if s.size == 0:
        raise ValueError("no prompts")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return s, w, g


def quality_by_strong_count(scores: ArrayLike, weak: ArrayLike, strong: ArrayLike) -> FloatArray:
    """Routed quality when exactly ``k`` prompts go to the strong model, for k = 0..n.

    Returns an array of length ``n + 1``; element ``k`` is ``Q(k / n)``.  The ``k``
    lowest-scored prompts go strong; ties are averaged (see the module docstring).
    """
    s, w, g = _outcomes(scores, weak, strong)
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    gain = (g - w)[order]
    # Replace each gain by the mean gain of its run of tied scores.
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    sums = np.add.reduceat(gain, starts)
    lengths = np.diff(np.r_[starts, s.size])
    gain = np.repeat(sums / lengths, lengths)
    cumulative = np.r_[0.0, np.cumsum(gain)]
    result: FloatArray = (w.sum() + cumulative) / s.size
    return result


def _fractions(points: int | Sequence[float] | FloatArray) -> FloatArray:
    if isinstance(points, int):
        if points < 2:
            raise ValueError("points must be >= 2")
        return np.linspace(0.0, 1.0, points)
    fractions = np.asarray(points, dtype=np.float64).ravel()
    if fractions.size == 0 or np.any(fractions < 0.0) or np.any(fractions > 1.0):
        raise ValueError("fractions must lie in [0, 1]")
    return fractions


def routed_quality_curve(
    scores: ArrayLike,
    weak: ArrayLike,
    strong: ArrayLike,
    points: int | Sequence[float] | FloatArray = 101,
) -> tuple[FloatArray, FloatArray]:
    """Routed quality ``Q(f)`` at the given strong-call fractions.

    ``points`` is either a number of evenly spaced fractions from 0 to 1 (inclusive) or
    the fractions themselves.  ``Q(f)`` at a fraction between ``k/n`` and ``(k+1)/n`` is
    interpolated linearly (the expected quality when the boundary prompt is sent to
    the strong model with the leftover probability).  Returns ``(fractions, quality)``.
    """
    per_count = quality_by_strong_count(scores, weak, strong)
    n = per_count.size - 1
    fractions = _fractions(points)
    quality: FloatArray = np.interp(fractions * n, np.arange(n + 1, dtype=np.float64), per_count)
    return fractions, quality


def _gap(per_count: FloatArray) -> tuple[float, float]:
    weak_q = float(per_count[0])
    strong_q = float(per_count[-1])
    if np.isclose(strong_q, weak_q, rtol=0.0, atol=1e-12):
        raise ValueError("strong and weak mean quality are equal: PGR is undefined")
    return weak_q, strong_q


def pgr_curve(
    scores: ArrayLike,
    weak: ArrayLike,
    strong: ArrayLike,
    points: int | Sequence[float] | FloatArray = 101,
) -> tuple[FloatArray, FloatArray]:
    """Performance gap recovered ``PGR(f) = (Q(f) - q_w) / (q_s - q_w)`` at ``points``."""
    weak_q, strong_q = _gap(quality_by_strong_count(scores, weak, strong))
    fractions, quality = routed_quality_curve(scores, weak, strong, points)
    return fractions, (quality - weak_q) / (strong_q - weak_q)


def strong_fraction_at(
    pgr_target: float, scores: ArrayLike, weak: ArrayLike, strong: ArrayLike
) -> float:
    """Call-performance threshold: the smallest ``k / n`` with ``PGR(k / n) >= pgr_target``.

    ``strong_fraction_at(0.95, ...)`` is RouteLLM's CPT(95%): the least share of calls
    to the strong model that recovers 95% of the quality gap between the weak and the
    strong model.  Every ``k`` from 0 to ``n`` is examined, so the answer is exact
    (no grid); it is 1.0 at most, since ``PGR(1) = 1``, when ``pgr_target <= 1``.
    Returns ``nan`` if the target is never reached (only possible above 1).
    """
    per_count = quality_by_strong_count(scores, weak, strong)
    weak_q, strong_q = _gap(per_count)
    pgr = (per_count - weak_q) / (strong_q - weak_q)
    hits = np.flatnonzero(pgr >= pgr_target - 1e-12)
    if hits.size == 0:
        return float("nan")
    return float(hits[0]) / (per_count.size - 1)


def strong_fraction_for_quality(
    quality_target: float, scores: ArrayLike, weak: ArrayLike, strong: ArrayLike
) -> float:
    """The smallest ``k / n`` with routed quality ``Q(k / n) >= quality_target``.

    E.g. ``quality_target = 0.95 * mean(strong)`` gives the share of strong calls needed
    for "95% of the all-strong quality" (a looser target than CPT(95%) whenever the weak
    model reaches more than 95% of the strong model's quality on its own; then it is 0).
    Returns ``nan`` if no fraction reaches the target.
    """
    per_count = quality_by_strong_count(scores, weak, strong)
    hits = np.flatnonzero(per_count >= quality_target - 1e-12)
    if hits.size == 0:
        return float("nan")
    return float(hits[0]) / (per_count.size - 1)


def apgr(
    scores: ArrayLike,
    weak: ArrayLike,
    strong: ArrayLike,
    points: int = 101,
) -> float:
    """Average performance gap recovered: the area under ``PGR(f)`` over ``f`` in [0, 1].

    Computed with the trapezoid rule over ``points`` evenly spaced fractions (``0, 1/(points-1),
    ..., 1``), as RouteLLM integrates its sweep.  Random routing gives 0.5 in expectation;
    a router that puts every prompt the strong model wins first gives more.
    """
    fractions, pgr = pgr_curve(scores, weak, strong, points)
    return float(np.trapezoid(pgr, fractions))


def strong_fraction_to_reach(
    share_of_strong: float, scores: ArrayLike, weak: ArrayLike, strong: ArrayLike
) -> float:
    """The smallest ``k / n`` with ``Q(k / n) >= share_of_strong * q_s``.

    ``strong_fraction_to_reach(0.95, ...)`` is ``strong_fraction_at_95``: the least share
    of strong calls at which the routed quality reaches 95% of the all-strong quality.
    It is 0 when the weak model alone gets there.
    """
    _, _, g = _outcomes(scores, weak, strong)
    return strong_fraction_for_quality(share_of_strong * float(g.mean()), scores, weak, strong)


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else round(value, 4)


def summary(scores: ArrayLike, weak: ArrayLike, strong: ArrayLike) -> dict[str, float | None]:
    """The headline figures of a routing run (rounded to 4 places; None when undefined).

    ``strong_fraction_at_95`` (95% of the all-strong quality), ``cpt_pgr_95`` and
    ``cpt_pgr_80`` (RouteLLM's CPT on the performance gap) and ``apgr``.  The PGR-based
    figures are None when the strong model is not better on average than the weak one.
    """
    s, w, g = _outcomes(scores, weak, strong)
    result: dict[str, float | None] = {
        "weak_quality": round(float(w.mean()), 4),
        "strong_quality": round(float(g.mean()), 4),
        "strong_fraction_at_95": _defined(strong_fraction_to_reach(0.95, s, w, g)),
        "cpt_pgr_95": None,
        "cpt_pgr_80": None,
        "apgr": None,
    }
    if float(g.mean()) - float(w.mean()) > 1e-12:
        result["cpt_pgr_95"] = _defined(strong_fraction_at(0.95, s, w, g))
        result["cpt_pgr_80"] = _defined(strong_fraction_at(0.80, s, w, g))
        result["apgr"] = round(apgr(s, w, g), 4)
    return result
