"""Rebuild the learned router's weights and print cross-validated routing figures.

Trains only on the licence-clean RouteLLM outcomes (``routellm_evals``: MMLU + GSM8K,
Mixtral-8x7B as the weak model, GPT-4-1106 as the strong one; Apache-2.0 / MIT), with
RouteLLM's contaminated prompts dropped.  Every figure printed is out-of-sample:

* MMLU: subjects are split into ``--folds`` groups; each group is scored by a model
  trained on the other subjects (plus all of GSM8K), so whole subjects are unseen.
* GSM8K: prompts are split into ``--folds`` folds; each is scored by a model trained
  on the other folds plus all of MMLU.

Output: one JSON object per line (the cross-validated metrics of the learned router and
of the baselines: random, a length/math/code rule score, length alone, and the oracle),
then the saved file.  Embeddings are cached under ``--cache-dir`` (outside the repo) so
each data set is embedded once.

    OPTIROUTE_EMBED_MODEL_PATH=/work/shared/models/all-MiniLM-L6-v2-onnx \\
        .venv/bin/python tools/train_router.py --data-dir /work/shared/data/routellm_evals
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import KFold  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optiroute_mw.classify.evaluation import (
    apgr,
    strong_fraction_at,
    strong_fraction_for_quality,
)
from optiroute_mw.classify.learned import (
    FEATURE_NAMES,
    FORMAT_VERSION,
    LENGTH_FEATURE,
    LearnedRouter,
    text_features,
)

F64 = npt.NDArray[np.float64]
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "optiroute_mw" / "classify" / "router_weights.npz"
QUANTILE_LEVELS = 1001
MIN_FOLD_GAP = 0.02


@dataclass
class Bench:
    name: str
    prompts: list[str]
    weak: F64
    strong: F64
    groups: npt.NDArray[np.str_]
    emb: F64
    feats: F64


def read_csv(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(1 << 24)
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def embed_cached(prompts: list[str], cache_dir: Path, tag: str) -> F64:
    """Embed ``prompts`` once; later runs read ``cache_dir/<tag>_<hash>.npy``."""
    model = os.environ.get("OPTIROUTE_EMBED_MODEL_PATH") or os.environ.get(
        "OPTIROUTE_EMBED_MODEL", "default"
    )
    digest = hashlib.sha256("\x00".join(prompts).encode()).hexdigest()[:16]
    model_tag = hashlib.sha256(model.encode()).hexdigest()[:8]
    path = cache_dir / f"{tag}_{digest}_{model_tag}.npy"
    if path.exists():
        cached: F64 = np.asarray(np.load(path), dtype=np.float64)
        return cached
    from optiroute_mw.embedding import Embedder

    started = time.perf_counter()
    vectors = Embedder.from_env().embed(prompts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    print(
        json.dumps(
            {"embedded": tag, "rows": len(prompts), "s": round(time.perf_counter() - started)}
        ),
        file=sys.stderr,
    )
    return vectors.astype(np.float64)


def load_bench(data_dir: Path, cache_dir: Path) -> tuple[Bench, Bench]:
    out = []
    for name, file in (
        ("mmlu", "mmlu_mixtral_vs_gpt4.csv"),
        ("gsm8k", "gsm8k_mixtral_vs_gpt4.csv"),
    ):
        rows = read_csv(data_dir / file)
        emb = embed_cached([r["prompt"] for r in rows], cache_dir, file.removesuffix(".csv"))
        keep = np.array([r["contaminated"] != "True" for r in rows])
        kept = [r for r, k in zip(rows, keep, strict=True) if k]
        out.append(
            Bench(
                name=name,
                prompts=[r["prompt"] for r in kept],
                weak=np.array([r["mixtral_8x7b_correct"] == "True" for r in kept], dtype=float),
                strong=np.array([r["gpt4_1106_correct"] == "True" for r in kept], dtype=float),
                groups=np.array([r.get("subject", name) for r in kept]),
                emb=emb[keep],
                feats=np.array([text_features(r["prompt"]) for r in kept]),
            )
        )
    return out[0], out[1]


# --- the model ---------------------------------------------------------------------------


@dataclass
class Params:
    coef: F64  # (3, dim + n_features), standardisation folded in
    intercept: F64
    gain_mean: float
    gain_std: float
    length_mean: float
    length_std: float
    length_weight: float


def outcome_class(weak: F64, strong: F64) -> npt.NDArray[np.int64]:
    """0: weak better, 1: equal, 2: strong better (numeric outcomes are compared)."""
    return (np.sign(strong - weak) + 1).astype(np.int64)


def fit(emb: F64, feats: F64, weak: F64, strong: F64, c: float, length_weight: float) -> Params:
    x = np.hstack([emb, feats])
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    model = LogisticRegression(C=c, max_iter=5000).fit(
        (x - scaler.mean_) / scale, outcome_class(weak, strong)
    )
    if list(model.classes_) != [0, 1, 2]:
        raise SystemExit("training data must contain all three outcome classes")
    coef = model.coef_ / scale
    intercept = model.intercept_ - coef @ scaler.mean_
    probs = _softmax(x @ coef.T + intercept)
    gain = probs[:, 0] - probs[:, 2]
    length = feats[:, LENGTH_FEATURE]
    return Params(
        coef=coef,
        intercept=intercept,
        gain_mean=float(gain.mean()),
        gain_std=float(gain.std()) or 1.0,
        length_mean=float(length.mean()),
        length_std=float(length.std()) or 1.0,
        length_weight=length_weight,
    )


def _softmax(logits: F64) -> F64:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: F64 = e / e.sum(axis=1, keepdims=True)
    return out


def routing_score(p: Params, emb: F64, feats: F64) -> F64:
    """Vectorised LearnedRouter.routing_score (higher = weak is the safer bet)."""
    probs = _softmax(np.hstack([emb, feats]) @ p.coef.T + p.intercept)
    gain = (probs[:, 0] - probs[:, 2] - p.gain_mean) / p.gain_std
    length = (feats[:, LENGTH_FEATURE] - p.length_mean) / p.length_std
    out: F64 = gain - p.length_weight * length
    return out


# --- baselines ---------------------------------------------------------------------------

_R_CODE = re.compile(r"```|\bdef \w+\(|\bclass \w+|\bfunction\b|\bimport \w+|#include|=>", re.I)
_R_MATH = re.compile(
    r"\b(prove|proof|derive|integral|derivative|equation|theorem|matrix|probability|solve)\b"
    r"|[=<>]\s*\d|\d\s*[\^*/+-]\s*\d|√|∑|∫",
    re.I,
)
_R_STEPS = re.compile(r"\b(first|then|after that|finally|next|each|total|remaining)\b", re.I)


def rules_hardness(text: str) -> float:
    """A quick rule score (length, math, code and multi-step cues); higher = harder."""
    score = min(len(text.split()) / 80.0, 2.0)
    if _R_CODE.search(text):
        score += 2.0
    math_hits = len(_R_MATH.findall(text))
    if math_hits:
        score += 2.0 * (min(math_hits, 3) / 2 + 0.5)
    if len(_R_STEPS.findall(text)) >= 2:
        score += 1.0
    return score


def metrics(scores: F64, weak: F64, strong: F64) -> dict[str, float]:
    return {
        "strong_fraction_at_95": round(strong_fraction_at(0.95, scores, weak, strong), 4),
        "strong_fraction_at_80": round(strong_fraction_at(0.80, scores, weak, strong), 4),
        "strong_fraction_at_50": round(strong_fraction_at(0.50, scores, weak, strong), 4),
        "apgr": round(apgr(scores, weak, strong), 4),
        "strong_fraction_for_95pct_of_strong_quality": round(
            strong_fraction_for_quality(0.95 * float(strong.mean()), scores, weak, strong), 4
        ),
    }


def subject_folds(groups: npt.NDArray[np.str_], k: int, seed: int) -> list[npt.NDArray[np.intp]]:
    """Test-index arrays; whole subjects per fold, subjects shuffled by ``seed``."""
    subjects = np.array(sorted(set(groups.tolist())))
    order = np.random.default_rng(seed).permutation(len(subjects))
    fold_of = {subjects[j]: i % k for i, j in enumerate(order)}
    fold = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(fold == i) for i in range(k)]


def cross_validate(
    mmlu: Bench, gsm: Bench, args: argparse.Namespace
) -> tuple[F64, F64, list[dict[str, float]]]:
    """Out-of-sample routing scores for every MMLU and GSM8K prompt."""
    oof_m = np.zeros(len(mmlu.weak))
    oof_g = np.zeros(len(gsm.weak))
    per_fold: list[dict[str, float]] = []
    for test in subject_folds(mmlu.groups, args.folds, args.seed):
        train = np.setdiff1d(np.arange(len(mmlu.weak)), test)
        p = fit(
            np.vstack([mmlu.emb[train], gsm.emb]),
            np.vstack([mmlu.feats[train], gsm.feats]),
            np.r_[mmlu.weak[train], gsm.weak],
            np.r_[mmlu.strong[train], gsm.strong],
            args.C,
            args.length_weight,
        )
        oof_m[test] = routing_score(p, mmlu.emb[test], mmlu.feats[test])
        w, s = mmlu.weak[test], mmlu.strong[test]
        gap = float(s.mean() - w.mean())
        fold_metrics: dict[str, float] = {
            "subjects": len(set(mmlu.groups[test].tolist())),
            "rows": len(test),
            "gap": round(gap, 4),
        }
        # PGR is meaningless when the strong model is barely (or not) better on the fold.
        if gap >= MIN_FOLD_GAP:
            fold_metrics.update(metrics(oof_m[test], w, s))
        per_fold.append(fold_metrics)
    splitter = KFold(args.folds, shuffle=True, random_state=args.seed)
    for train, test in splitter.split(gsm.emb):
        p = fit(
            np.vstack([mmlu.emb, gsm.emb[train]]),
            np.vstack([mmlu.feats, gsm.feats[train]]),
            np.r_[mmlu.weak, gsm.weak[train]],
            np.r_[mmlu.strong, gsm.strong[train]],
            args.C,
            args.length_weight,
        )
        oof_g[test] = routing_score(p, gsm.emb[test], gsm.feats[test])
    return oof_m, oof_g, per_fold


def calibrate(scores: F64, weak: F64, strong: F64) -> tuple[float, float]:
    """Sigmoid mapping (slope, intercept) of a routing score to P(weak >= strong)."""
    label = (weak >= strong).astype(int)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(scores.reshape(-1, 1), label)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def measure_latency(path: Path, prompts: list[str], n: int) -> dict[str, float]:
    from optiroute_mw.embedding import Embedder

    router = LearnedRouter.load(str(path))
    embedder = Embedder.from_env()
    embedder.embed_one("warm up")
    sample = prompts[:n]
    embed_ms, model_ms = [], []
    for text in sample:
        t0 = time.perf_counter()
        vec = embedder.embed_one(text)
        t1 = time.perf_counter()
        router.predict_weak_ok(vec, text)
        t2 = time.perf_counter()
        embed_ms.append((t1 - t0) * 1e3)
        model_ms.append((t2 - t1) * 1e3)
    total = np.add(embed_ms, model_ms)
    return {
        "prompts": len(sample),
        "embed_ms_median": round(float(np.median(embed_ms)), 3),
        "model_ms_median": round(float(np.median(model_ms)), 4),
        "total_ms_median": round(float(np.median(total)), 3),
        "total_ms_p90": round(float(np.percentile(total, 90)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("/work/shared/data/routellm_evals"))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/optiroute_router_cache"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=0.001, help="inverse L2 strength")
    ap.add_argument("--length-weight", type=float, default=1.0)
    ap.add_argument("--random-repeats", type=int, default=50)
    ap.add_argument("--latency-samples", type=int, default=0, help="time N prompts (0: skip)")
    args = ap.parse_args(argv)

    mmlu, gsm = load_bench(args.data_dir, args.cache_dir)
    oof_m, oof_g, per_fold = cross_validate(mmlu, gsm, args)
    for bench, oof in ((mmlu, oof_m), (gsm, oof_g)):
        w, s = bench.weak, bench.strong
        split = "group_kfold_by_subject" if bench.name == "mmlu" else "kfold"
        base = {"bench": bench.name, "rows": len(w), "weak_q": round(float(w.mean()), 4)}
        base["strong_q"] = round(float(s.mean()), 4)
        print(json.dumps({**base, "router": "learned", "split": split, **metrics(oof, w, s)}))
        rng = np.random.default_rng(args.seed)
        runs = [metrics(rng.random(len(w)), w, s) for _ in range(args.random_repeats)]
        mean_random = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]}
        print(json.dumps({**base, "router": "random", "repeats": len(runs), **mean_random}))
        rules = -np.array([rules_hardness(t) for t in bench.prompts])
        print(json.dumps({**base, "router": "rules", **metrics(rules, w, s)}))
        length = -bench.feats[:, LENGTH_FEATURE]
        print(json.dumps({**base, "router": "length_only", **metrics(length, w, s)}))
        print(json.dumps({**base, "router": "oracle", **metrics(w - s, w, s)}))
    for i, fm in enumerate(per_fold):
        print(json.dumps({"bench": "mmlu", "router": "learned", "fold": i, **fm}))

    slope, intercept = calibrate(
        np.r_[oof_m, oof_g], np.r_[mmlu.weak, gsm.weak], np.r_[mmlu.strong, gsm.strong]
    )
    emb = np.vstack([mmlu.emb, gsm.emb])
    feats = np.vstack([mmlu.feats, gsm.feats])
    final = fit(
        emb,
        feats,
        np.r_[mmlu.weak, gsm.weak],
        np.r_[mmlu.strong, gsm.strong],
        args.C,
        args.length_weight,
    )
    z = slope * routing_score(final, emb, feats) + intercept
    prob = 1.0 / (1.0 + np.exp(-z))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        format_version=np.int64(FORMAT_VERSION),
        dim=np.int64(emb.shape[1]),
        feature_names=np.array(FEATURE_NAMES),
        coef=final.coef,
        intercept=final.intercept,
        gain_mean=final.gain_mean,
        gain_std=final.gain_std,
        length_mean=final.length_mean,
        length_std=final.length_std,
        length_weight=final.length_weight,
        calib_slope=slope,
        calib_intercept=intercept,
        quantiles=np.quantile(prob, np.linspace(0, 1, QUANTILE_LEVELS)),
        trained_on=np.array("routellm_evals mmlu+gsm8k (contaminated rows dropped)"),
        c=args.C,
        seed=np.int64(args.seed),
    )
    # The packaged inference path must reproduce the vectorised training scores.
    router = LearnedRouter.load(str(args.out))
    probe = [0, len(mmlu.weak) // 2, len(mmlu.weak) + 1]
    texts = mmlu.prompts + gsm.prompts
    got = np.array([router.predict_weak_ok(emb[i], texts[i]) for i in probe])
    if not np.allclose(got, prob[probe], atol=1e-9):
        raise SystemExit(f"inference mismatch: {got} vs {prob[probe]}")
    print(
        json.dumps(
            {
                "saved": str(args.out),
                "bytes": args.out.stat().st_size,
                "calib_slope": round(slope, 4),
                "calib_intercept": round(intercept, 4),
                "train_rows": len(texts),
            }
        )
    )
    if args.latency_samples:
        for bench in (mmlu, gsm):
            rng = np.random.default_rng(args.seed)
            idx = rng.choice(len(bench.prompts), size=min(args.latency_samples, len(bench.prompts)))
            sample = [bench.prompts[i] for i in idx]
            print(
                json.dumps(
                    {"latency": bench.name, **measure_latency(args.out, sample, len(sample))}
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
