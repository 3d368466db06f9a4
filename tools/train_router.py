"""Rebuild the learned router's weights and print cross-validated routing figures.

Trains only on the licence-clean RouteLLM outcomes (``routellm_evals``: MMLU + GSM8K,
Mixtral-8x7B as the weak model, GPT-4-1106 as the strong one; Apache-2.0 / MIT), with
RouteLLM's contaminated prompts dropped.  Every figure printed is out-of-sample:

* MMLU: subjects are split into ``--folds`` groups; each group is scored by a model
  trained on the other subjects (plus all of GSM8K), so whole subjects are unseen.
* GSM8K: prompts are split into ``--folds`` folds; each is scored by a model trained
  on the other folds plus all of MMLU.

Token vectors are distilled from the embedding model in ``--model-dir`` (default
``OPTIROUTE_EMBED_MODEL_PATH``; fastembed's download folder works too): every vocabulary
token is run through the model once, as ``[CLS] token [SEP]``, and its output vector
kept (L2-normalised); about 10 s on two cores, cached under ``--cache-dir``.  A prompt's
vector is the mean over the tokens of its first ``--token-chars`` characters, exactly as
:class:`optiroute_mw.classify.learned.LearnedRouter` computes it when serving.

Output: one JSON object per line (the cross-validated figures of the learned router and
of the baselines: random, the rule classifier, length alone, the oracle; see
``optiroute_mw.classify.evaluation.summary`` for the definitions), then the saved file.

``--export-fold K --export-dir DIR`` also writes, for the eval command, weights trained
without MMLU subject group K and GSM8K fold K, and those held-out rows as CSV files:

    OPTIROUTE_EMBED_MODEL_PATH=/work/shared/models/all-MiniLM-L6-v2-onnx \\
        .venv/bin/python tools/train_router.py --data-dir /work/shared/data/routellm_evals
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import KFold  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optiroute_mw.classify.evaluation import routed_quality_curve, summary
from optiroute_mw.classify.learned import (
    DEFAULT_PRIOR_TOKENS,
    DEFAULT_TOKEN_CHARS,
    FEATURE_NAMES,
    FORMAT_VERSION,
    LENGTH_FEATURE,
    LearnedRouter,
    RouterWeights,
    cut_text,
    text_features,
    wordpiece_tokenizer,
)
from optiroute_mw.classify.rules import RuleClassifier
from optiroute_mw.wire import parse_request

F64 = npt.NDArray[np.float64]
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "optiroute_mw" / "classify" / "router_weights.msgpack.gz"
QUANTILE_LEVELS = 1001
CURVE_POINTS = 101
MIN_FOLD_GAP = 0.02
FILES = (("mmlu", "mmlu_mixtral_vs_gpt4.csv"), ("gsm", "gsm8k_mixtral_vs_gpt4.csv"))


@dataclass
class Bench:
    name: str
    rows: list[dict[str, str]]
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


@dataclass
class TokenVectors:
    vocabulary: list[str]
    vectors: F64  # (vocabulary, dim), L2-normalised
    prior: F64 | None = None  # the mean token vector of the training prompts


def token_vectors(model_dir: Path, cache_dir: Path) -> TokenVectors:
    """Every vocabulary token's output vector, computed once and cached by model file."""
    import onnxruntime as ort  # the semantic extra

    vocab_map = json.loads((model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    vocabulary = [""] * len(vocab_map)
    for token, i in vocab_map.items():
        vocabulary[i] = token
    model_file = model_dir / "model.onnx"
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()[:16]
    path = cache_dir / f"token_vectors_{digest}.npy"
    if path.exists():
        return TokenVectors(vocabulary, np.asarray(np.load(path), dtype=np.float64))
    started = time.perf_counter()
    session = ort.InferenceSession(str(model_file))
    cls_id, sep_id = vocab_map["[CLS]"], vocab_map["[SEP]"]
    rows = []
    for start in range(0, len(vocabulary), 1024):
        ids = np.arange(start, min(len(vocabulary), start + 1024))
        batch = np.stack([np.full(ids.size, cls_id), ids, np.full(ids.size, sep_id)], axis=1)
        feeds = {
            "input_ids": batch.astype(np.int64),
            "attention_mask": np.ones_like(batch, dtype=np.int64),
            "token_type_ids": np.zeros_like(batch, dtype=np.int64),
        }
        rows.append(session.run(None, feeds)[0][:, 1])  # the token's own position
    out = np.vstack(rows)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    took = round(time.perf_counter() - started, 1)
    print(json.dumps({"token_vectors": len(vocabulary), "s": took}), file=sys.stderr)
    return TokenVectors(vocabulary, out.astype(np.float64))


def token_sums(
    prompts: list[str], tokens: TokenVectors, tokenizer: Any, token_chars: int
) -> tuple[F64, F64]:
    """Each prompt head's sum of token vectors, and its token count."""
    heads = [cut_text(p, token_chars) if token_chars else p for p in prompts]
    encoded = tokenizer.encode_batch(heads, add_special_tokens=False)
    sums = np.array([tokens.vectors[e.ids].sum(axis=0) for e in encoded])
    return sums, np.array([len(e.ids) for e in encoded], dtype=np.float64)


def load_bench(
    data_dir: Path, tokens: TokenVectors, args: argparse.Namespace
) -> tuple[Bench, Bench, TokenVectors]:
    """Both benches, and ``tokens`` with its prior: a prompt's vector is its tokens' mean
    shrunk towards the corpus mean by ``--prior-tokens`` pseudo-tokens, as served."""
    tokenizer = wordpiece_tokenizer(tokens.vocabulary)
    rows, prompts, sums, counts = [], [], [], []
    for _, file in FILES:
        kept = [r for r in read_csv(data_dir / file) if r["contaminated"] != "True"]
        rows.append(kept)
        prompts.append([r["prompt"] for r in kept])
        total, n = token_sums(prompts[-1], tokens, tokenizer, args.token_chars)
        sums.append(total)
        counts.append(n)
    prior = np.vstack(sums).sum(axis=0) / np.concatenate(counts).sum()
    k = args.prior_tokens
    out = []
    for (name, _), kept, texts, total, n in zip(FILES, rows, prompts, sums, counts, strict=True):
        out.append(
            Bench(
                name=name,
                rows=kept,
                prompts=texts,
                weak=np.array([r["mixtral_8x7b_correct"] == "True" for r in kept], dtype=float),
                strong=np.array([r["gpt4_1106_correct"] == "True" for r in kept], dtype=float),
                groups=np.array([r.get("subject", name) for r in kept]),
                emb=(total + k * prior) / (n + k)[:, None],
                feats=np.array([text_features(p) for p in texts]),
            )
        )
    return out[0], out[1], replace(tokens, prior=prior)


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


def _softmax(logits: F64) -> F64:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: F64 = e / e.sum(axis=1, keepdims=True)
    return out


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


def routing_score(p: Params, emb: F64, feats: F64) -> F64:
    """Vectorised LearnedRouter.routing_score (higher = weak is the safer bet)."""
    probs = _softmax(np.hstack([emb, feats]) @ p.coef.T + p.intercept)
    gain = (probs[:, 0] - probs[:, 2] - p.gain_mean) / p.gain_std
    length = (feats[:, LENGTH_FEATURE] - p.length_mean) / p.length_std
    out: F64 = gain - p.length_weight * length
    return out


def fit_on(benches: list[tuple[Bench, npt.NDArray[np.intp]]], args: argparse.Namespace) -> Params:
    """Fit on the given rows of each bench."""
    return fit(
        np.vstack([b.emb[i] for b, i in benches]),
        np.vstack([b.feats[i] for b, i in benches]),
        np.concatenate([b.weak[i] for b, i in benches]),
        np.concatenate([b.strong[i] for b, i in benches]),
        args.C,
        args.length_weight,
    )


# --- cross-validation ----------------------------------------------------------------------


def subject_folds(groups: npt.NDArray[np.str_], k: int, seed: int) -> list[npt.NDArray[np.intp]]:
    """Test-index arrays; whole subjects per fold, subjects shuffled by ``seed``."""
    subjects = np.array(sorted(set(groups.tolist())))
    order = np.random.default_rng(seed).permutation(len(subjects))
    fold_of = {subjects[j]: i % k for i, j in enumerate(order)}
    fold = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(fold == i) for i in range(k)]


def folds(mmlu: Bench, gsm: Bench, args: argparse.Namespace) -> list[tuple[Any, Any]]:
    """(MMLU test rows, GSM8K test rows) per fold: MMLU by whole subjects."""
    splitter = KFold(args.folds, shuffle=True, random_state=args.seed)
    gsm_tests = [test for _, test in splitter.split(gsm.emb)]
    return list(zip(subject_folds(mmlu.groups, args.folds, args.seed), gsm_tests, strict=True))


def cross_validate(
    mmlu: Bench, gsm: Bench, args: argparse.Namespace
) -> tuple[F64, F64, list[dict[str, Any]]]:
    """Out-of-sample routing scores for every MMLU and GSM8K prompt.

    The MMLU group is scored by a model that saw all of GSM8K, and the GSM8K fold by
    one that saw all of MMLU, so both benches get as much training data as possible.
    """
    oof_m, oof_g = np.zeros(len(mmlu.weak)), np.zeros(len(gsm.weak))
    all_m, all_g = np.arange(len(mmlu.weak)), np.arange(len(gsm.weak))
    per_fold: list[dict[str, Any]] = []
    for test_m, test_g in folds(mmlu, gsm, args):
        p = fit_on([(mmlu, np.setdiff1d(all_m, test_m)), (gsm, all_g)], args)
        oof_m[test_m] = routing_score(p, mmlu.emb[test_m], mmlu.feats[test_m])
        p = fit_on([(mmlu, all_m), (gsm, np.setdiff1d(all_g, test_g))], args)
        oof_g[test_g] = routing_score(p, gsm.emb[test_g], gsm.feats[test_g])
        w, s = mmlu.weak[test_m], mmlu.strong[test_m]
        fold: dict[str, Any] = {"subjects": len(set(mmlu.groups[test_m].tolist()))}
        fold.update(rows=len(test_m), gap=round(float(s.mean() - w.mean()), 4))
        # PGR is meaningless when the strong model is barely (or not) better on the fold.
        if fold["gap"] >= MIN_FOLD_GAP:
            fold.update(summary(oof_m[test_m], w, s))
        per_fold.append(fold)
    return oof_m, oof_g, per_fold


def calibrate(scores: F64, weak: F64, strong: F64) -> tuple[float, float]:
    """Sigmoid mapping (slope, intercept) of a routing score to P(weak >= strong)."""
    label = (weak >= strong).astype(int)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(scores.reshape(-1, 1), label)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def rules_scores(prompts: list[str]) -> tuple[F64, npt.NDArray[np.bool_]]:
    """The rule classifier's score, negated (higher = easier), and its complex tier."""
    classifier = RuleClassifier()
    scores, complex_tier = [], []
    for text in prompts:
        body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": text}]})
        decision = classifier.classify(parse_request("chat", body.encode()))
        scores.append(-decision.score)
        complex_tier.append(decision.tier == "complex")
    return np.array(scores), np.array(complex_tier)


def report(mmlu: Bench, gsm: Bench, oof_m: F64, oof_g: F64, args: argparse.Namespace) -> None:
    for bench, oof in ((mmlu, oof_m), (gsm, oof_g)):
        w, s = bench.weak, bench.strong
        base: dict[str, Any] = {"bench": bench.name, "rows": len(w)}
        split = "group_kfold_by_subject" if bench.name == "mmlu" else "kfold"
        rules, rules_complex = rules_scores(bench.prompts)
        # as served: the rules' complex tier is a floor (those prompts go strong first)
        served = oof - 1e3 * rules_complex
        print(json.dumps({**base, "router": "learned", "split": split, **summary(served, w, s)}))
        print(json.dumps({**base, "router": "learned_no_floor", **summary(oof, w, s)}))
        # random routing, in expectation: one constant score (ties are averaged)
        print(json.dumps({**base, "router": "random", **summary(np.zeros(len(w)), w, s)}))
        print(json.dumps({**base, "router": "rules", **summary(rules, w, s)}))
        length = -bench.feats[:, LENGTH_FEATURE]
        print(json.dumps({**base, "router": "length_only", **summary(length, w, s)}))
        print(json.dumps({**base, "router": "oracle", **summary(w - s, w, s)}))


def save(
    path: Path,
    mmlu: Bench,
    gsm: Bench,
    oof: tuple[F64, F64],
    tokens: TokenVectors,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Fit on ``mmlu`` + ``gsm`` and save; the calibration and curves come from ``oof``.

    The regression's embedding weights are folded into the token table (its logits are
    linear in the mean token vector), so serving needs three numbers per token.
    """
    weak, strong = np.r_[mmlu.weak, gsm.weak], np.r_[mmlu.strong, gsm.strong]
    oof_all = np.r_[oof[0], oof[1]]
    slope, intercept = calibrate(oof_all, weak, strong)
    _, quality = routed_quality_curve(oof_all, weak, strong, CURVE_POINTS)
    everything = [(mmlu, np.arange(len(mmlu.weak))), (gsm, np.arange(len(gsm.weak)))]
    final = fit_on(everything, args)
    emb, feats = np.vstack([mmlu.emb, gsm.emb]), np.vstack([mmlu.feats, gsm.feats])
    dim = emb.shape[1]
    prob = 1.0 / (1.0 + np.exp(-(slope * routing_score(final, emb, feats) + intercept)))
    path.parent.mkdir(parents=True, exist_ok=True)
    RouterWeights(
        format_version=FORMAT_VERSION,
        feature_names=list(FEATURE_NAMES),
        vocabulary=tokens.vocabulary,
        token_scores=(tokens.vectors @ final.coef[:, :dim].T).astype("<f4").tobytes(),
        prior_scores=(final.coef[:, :dim] @ tokens.prior).tolist(),
        prior_tokens=float(args.prior_tokens),
        coef_text=final.coef[:, dim:].tolist(),
        intercept=final.intercept.tolist(),
        gain_mean=final.gain_mean,
        gain_std=final.gain_std,
        length_mean=final.length_mean,
        length_std=final.length_std,
        length_weight=final.length_weight,
        calib_slope=slope,
        calib_intercept=intercept,
        quantiles=np.quantile(prob, np.linspace(0, 1, QUANTILE_LEVELS)).tolist(),
        quality_curve=(quality / quality[-1]).tolist(),
        token_chars=args.token_chars,
        trained_on=f"routellm_evals mmlu+gsm8k, contaminated rows dropped; C={args.C}, "
        f"seed={args.seed}",
    ).save(path)
    # The packaged inference path must reproduce the vectorised training scores.
    router = LearnedRouter.load(str(path))
    texts = mmlu.prompts + gsm.prompts
    probe = [0, len(mmlu.weak) // 2, len(mmlu.weak) + 1]
    got = np.array([router.predict_weak_ok(texts[i]) for i in probe])
    if not np.allclose(got, prob[probe], atol=1e-6):  # the table is float32
        raise SystemExit(f"inference mismatch: {got} vs {prob[probe]}")
    return {"saved": str(path), "bytes": path.stat().st_size, "train_rows": len(texts)}


def export_fold(mmlu: Bench, gsm: Bench, tokens: TokenVectors, args: argparse.Namespace) -> None:
    """Weights trained without fold K, and fold K's rows as CSV, for the eval command."""
    test_m, test_g = folds(mmlu, gsm, args)[args.export_fold]
    train_m = np.setdiff1d(np.arange(len(mmlu.weak)), test_m)
    train_g = np.setdiff1d(np.arange(len(gsm.weak)), test_g)
    sub_m, sub_g = subset(mmlu, train_m), subset(gsm, train_g)
    oof_m, oof_g, _ = cross_validate(sub_m, sub_g, args)
    out = args.export_dir
    weights = out / f"weights_fold{args.export_fold}.msgpack.gz"
    info = save(weights, sub_m, sub_g, (oof_m, oof_g), tokens, args)
    for bench, test in ((mmlu, test_m), (gsm, test_g)):
        target = out / f"{bench.name}_heldout_fold{args.export_fold}.csv"
        with target.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(bench.rows[0]))
            writer.writeheader()
            writer.writerows(bench.rows[i] for i in test)
        info[f"{bench.name}_heldout"] = str(target)
    info["heldout_subjects"] = sorted(set(mmlu.groups[test_m].tolist()))
    print(json.dumps({"export_fold": args.export_fold, **info}))


def subset(bench: Bench, idx: npt.NDArray[np.intp]) -> Bench:
    return replace(
        bench,
        rows=[bench.rows[i] for i in idx],
        prompts=[bench.prompts[i] for i in idx],
        weak=bench.weak[idx],
        strong=bench.strong[idx],
        groups=bench.groups[idx],
        emb=bench.emb[idx],
        feats=bench.feats[idx],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("/work/shared/data/routellm_evals"))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/optiroute_router_cache"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=0.001, help="inverse L2 strength")
    ap.add_argument("--length-weight", type=float, default=1.0)
    ap.add_argument("--token-chars", type=int, default=DEFAULT_TOKEN_CHARS)
    ap.add_argument(
        "--prior-tokens",
        type=float,
        default=DEFAULT_PRIOR_TOKENS,
        help="pseudo-tokens of the corpus mean added to every prompt (short prompts)",
    )
    ap.add_argument(
        "--model-dir",
        type=Path,
        default=os.environ.get("OPTIROUTE_EMBED_MODEL_PATH"),
        help="embedding model folder (model.onnx, tokenizer.json)",
    )
    ap.add_argument("--export-fold", type=int, help="also export fold K for the eval command")
    ap.add_argument("--export-dir", type=Path, default=Path("/tmp/optiroute_router_folds"))
    ap.add_argument("--no-save", action="store_true", help="print the figures only")
    args = ap.parse_args(argv)

    if args.model_dir is None:
        ap.error("--model-dir or OPTIROUTE_EMBED_MODEL_PATH: the embedding model's folder")
    tokens = token_vectors(Path(args.model_dir), args.cache_dir)
    mmlu, gsm, tokens = load_bench(args.data_dir, tokens, args)
    oof_m, oof_g, per_fold = cross_validate(mmlu, gsm, args)
    report(mmlu, gsm, oof_m, oof_g, args)
    for i, fold in enumerate(per_fold):
        print(json.dumps({"bench": "mmlu", "router": "learned", "fold": i, **fold}))
    if not args.no_save:
        print(json.dumps(save(args.out, mmlu, gsm, (oof_m, oof_g), tokens, args)))
    if args.export_fold is not None:
        export_fold(mmlu, gsm, tokens, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
