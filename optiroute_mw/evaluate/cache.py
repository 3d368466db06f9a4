"""``optiroute-mw eval cache``: the cache's precision and recall on labelled question pairs.

Every pair goes through the live cache stage: a :class:`~optiroute_mw.cache.middleware.
CacheMiddleware` with its semantic layer (partition, embedding, index search, threshold,
look-alike guard, answer read back from the store).  The question in column ``--a`` is
sent as a chat request and answered by a stub backend, so the stage stores the answer;
then the question in column ``--b`` is sent, and a served hit (``hit-exact`` or
``hit-semantic``) counts as a true hit when the label is 1 and a false hit when it is 0.
Each pair has a partition of its own (its own tenant) and its entries are removed after
it, so pairs never see each other.

A sweep costs one pass: the layer runs at the lowest threshold asked for and each hit's
similarity is kept; with one entry per partition, a hit at a higher threshold ``T`` is
exactly a hit whose similarity is at least ``T``.

Embeddings are computed up front in batches by the same model the layer uses and handed
to it through a lookup table (``--embed-cache DIR`` keeps them between runs, in the layout
of ``tools/tune_semantic.py``).

Output: one JSON object per threshold, the configured default
(``OPTIROUTE_SEMANTIC_THRESHOLD``) last:
``{"threshold", "pairs", "precision", "recall", "false_hit_rate", "f1"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import sys
import time
from typing import Any

from ..settings import Settings

SWEEP = tuple(round(0.80 + 0.01 * i, 2) for i in range(19))  # 0.80 … 0.98


def add_parser(kinds: Any) -> None:
    p = kinds.add_parser("cache", help="precision/recall of the cache on labelled pairs")
    p.add_argument("--pairs", required=True, help="CSV file, one question pair per row")
    p.add_argument("--a", default="question1", help="the question whose answer is stored")
    p.add_argument("--b", default="question2", help="the question looked up")
    p.add_argument(
        "--label",
        default="is_duplicate",
        help="1: the same answer serves both ('none': every row is a positive)",
    )
    p.add_argument(
        "--mismatched",
        action="store_true",
        help="add a negative per row: its --a question with another row's --b question",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, help="one similarity threshold")
    group.add_argument("--sweep", action="store_true", help="thresholds 0.80 to 0.98")
    p.add_argument("--limit", type=int, help="a seeded random sample of N pairs")
    p.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    p.add_argument("--embed-cache", help="a folder that keeps the embeddings between runs")


Pair = tuple[str, str, int]


def label_of(value: str | None) -> int | None:
    text = (value or "").strip().lower()
    if text in ("true", "yes"):
        return 1
    if text in ("false", "no"):
        return 0
    try:
        return 1 if float(text) >= 0.5 else 0
    except ValueError:
        return None


def read_pairs(args: argparse.Namespace) -> tuple[list[Pair], int]:
    csv.field_size_limit(1 << 26)
    pairs: list[Pair] = []
    skipped = 0
    with open(args.pairs, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        wanted = [args.a, args.b] + ([] if args.label == "none" else [args.label])
        missing = [c for c in wanted if c not in (reader.fieldnames or ())]
        if missing:
            raise SystemExit(f"optiroute-mw eval cache: no column {', '.join(missing)}")
        for row in reader:
            label = 1 if args.label == "none" else label_of(row[args.label])
            if label is None:
                skipped += 1
                continue
            pairs.append((row[args.a] or "", row[args.b] or "", label))
    if args.mismatched and len(pairs) > 1:
        rng = random.Random(args.seed)
        rows = list(pairs)
        for i, (a, _, _) in enumerate(rows):
            j = rng.randrange(len(rows) - 1)
            pairs.append((a, rows[j + (j >= i)][1], 0))
    return pairs, skipped


def score(sims: list[float], labels: list[int], threshold: float) -> dict[str, Any]:
    tp = sum(1 for s, y in zip(sims, labels, strict=True) if s >= threshold and y)
    fp = sum(1 for s, y in zip(sims, labels, strict=True) if s >= threshold and not y)
    positives = sum(labels)
    negatives = len(labels) - positives
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": threshold,
        "pairs": len(labels),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "false_hit_rate": round(fp / negatives if negatives else 0.0, 4),
        "f1": round(f1, 4),
    }


def run(args: argparse.Namespace, settings: Settings) -> int:
    pairs, skipped = read_pairs(args)
    all_texts = [t for a, b, _ in pairs for t in (a, b)]
    if args.limit and args.limit < len(pairs):
        pairs = random.Random(args.seed).sample(pairs, args.limit)
    if not pairs:
        raise SystemExit("optiroute-mw eval cache: no labelled pairs")
    default = settings.semantic_threshold
    thresholds = list(SWEEP) if args.sweep else []
    if args.threshold is not None:
        thresholds = [args.threshold]
    thresholds = [t for t in thresholds if t != default] + [default]

    from ..embedding import EmbeddingUnavailable
    from .cache_run import embed_table, similarities
    from .router import logs_on_stderr

    started = time.perf_counter()
    needed = [t for a, b, _ in pairs for t in (a, b)]
    with logs_on_stderr():  # stdout is for the results
        try:
            table = embed_table(settings, all_texts, needed, args)
        except EmbeddingUnavailable as exc:
            raise SystemExit(
                f"optiroute-mw eval cache: the embedding model did not load ({exc}); "
                "set OPTIROUTE_EMBED_MODEL_PATH to a local model folder"
            ) from None
        sims = asyncio.run(similarities(settings, pairs, table, min(thresholds)))
    labels = [y for _, _, y in pairs]
    print(
        f"# {len(pairs)} pairs ({skipped} unlabelled skipped) in "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    for threshold in thresholds:
        print(json.dumps(score(sims, labels, threshold)), flush=True)
    return 0
