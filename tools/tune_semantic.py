"""Research harness for the semantic cache: threshold x look-alike guard sweeps.

Embeds the labelled pair sets once (vectors cached outside the repository, in
``$OPTIROUTE_TUNE_CACHE`` or ``/tmp/optiroute_tune_cache``), then prints one JSON line per
(dataset, threshold, guard on/off)::

    {"dataset", "threshold", "guard", "pairs", "precision", "recall", "false_hit_rate", "f1",
     "positives", "hits", "false_hits"}

A pair counts as a cache hit when cosine >= threshold (and, with the guard, when
``LookalikeGuard.accepts(cached, new)``).  ``precision`` = correct hits / hits,
``recall`` = hits among positives, ``false_hit_rate`` = hits among negatives.

Data sets (``$OPTIROUTE_DATA_DIR``, default /work/shared/data; evaluation only, never copied):
qqp (Quora duplicates), medical (doctor-written hard pairs), banking77 and clinc150 (same vs
different intent; clinc positives differ in slots, so read its recall loosely) and paraphrases
(GPTCache's positives plus, as negatives, each origin against another row's paraphrase).

Embedding is slow on a small CPU, so it runs in resumable chunks: ``--budget-seconds``
stops after the current chunk once the budget is spent (exit code 3); run it again to continue.

Examples::

    OPTIROUTE_EMBED_MODEL_PATH=/work/shared/models/all-MiniLM-L6-v2-onnx \
        .venv/bin/python tools/tune_semantic.py --embed-only --budget-seconds 240
    .venv/bin/python tools/tune_semantic.py --thresholds 0.80:0.96:0.01
    .venv/bin/python tools/tune_semantic.py --dataset qqp --thresholds 0.89 --reasons
    .venv/bin/python tools/tune_semantic.py --dataset qqp --thresholds 0.89 --errors 30
    .venv/bin/python tools/tune_semantic.py --bench --bench-sizes 10000,100000
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from optiroute_mw.cache.guard import LookalikeGuard  # noqa: E402

DATA_DIR = Path(os.environ.get("OPTIROUTE_DATA_DIR", "/work/shared/data"))
CACHE_DIR = Path(os.environ.get("OPTIROUTE_TUNE_CACHE", "/tmp/optiroute_tune_cache"))
DEFAULT_MODEL_PATH = "/work/shared/models/all-MiniLM-L6-v2-onnx"
CHUNK = 2048

Pair = tuple[str, str, int]


@dataclass(frozen=True)
class Dataset:
    name: str
    loader: Callable[[], list[Pair]]
    note: str = ""


def _rows(path: Path) -> Iterable[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def load_qqp() -> list[Pair]:
    return [
        (r["question1"], r["question2"], int(r["is_duplicate"]))
        for r in _rows(DATA_DIR / "qqp_gptcache" / "qqp_pairs.csv")
    ]


def load_medical() -> list[Pair]:
    return [
        (r["question1"], r["question2"], int(r["label"]))
        for r in _rows(DATA_DIR / "medical_question_pairs" / "mqp.csv")
    ]


def _intent_pairs(folder: str, filename: str) -> list[Pair]:
    return [
        (r["query1"], r["query2"], int(r["same_intent"]))
        for r in _rows(DATA_DIR / folder / filename)
    ]


def load_banking() -> list[Pair]:
    return _intent_pairs("banking77", "banking77_intent_pairs.csv")


def load_clinc() -> list[Pair]:
    return _intent_pairs("clinc150", "clinc150_intent_pairs.csv")


def load_paraphrases() -> list[Pair]:
    rows = list(_rows(DATA_DIR / "gptcache_mock_paraphrases" / "paraphrase_pairs.csv"))
    pairs: list[Pair] = [(r["origin"], r["similar"], 1) for r in rows]
    # Negatives as the folder README suggests: origin i with another row's paraphrase.
    rng = random.Random(999)
    for i, r in enumerate(rows):
        j = rng.randrange(len(rows) - 1)
        j = j + 1 if j >= i else j
        pairs.append((r["origin"], rows[j]["similar"], 0))
    return pairs


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset("qqp", load_qqp),
        Dataset("medical", load_medical),
        Dataset("banking77", load_banking),
        Dataset("clinc150", load_clinc, "positives are same-intent only (slots differ)"),
        Dataset("paraphrases", load_paraphrases, "negatives are random other-row pairings"),
    )
}


# --------------------------------------------------------------------------- embeddings


def _model_path() -> str:
    return os.environ.get("OPTIROUTE_EMBED_MODEL_PATH") or DEFAULT_MODEL_PATH


class EmbeddingCache:
    """Vectors for a dataset's distinct texts, stored chunk by chunk under CACHE_DIR."""

    def __init__(self, dataset: str, texts: list[str]) -> None:
        self.texts = texts
        model_key = hashlib.sha1(_model_path().encode()).hexdigest()[:10]
        digest = hashlib.sha1("\x00".join(texts).encode()).hexdigest()[:12]
        self.dir = CACHE_DIR / model_key / f"{dataset}-{digest}"
        self.n_chunks = (len(texts) + CHUNK - 1) // CHUNK

    def _chunk_path(self, i: int) -> Path:
        return self.dir / f"chunk{i:04d}.npy"

    def missing(self) -> list[int]:
        return [i for i in range(self.n_chunks) if not self._chunk_path(i).exists()]

    def fill(self, deadline: float) -> bool:
        """Embed missing chunks until done or past the deadline; True when complete."""
        todo = self.missing()
        if not todo:
            return True
        os.environ.setdefault("OPTIROUTE_EMBED_MODEL_PATH", _model_path())
        from optiroute_mw.embedding import Embedder

        embedder = Embedder.from_env()
        self.dir.mkdir(parents=True, exist_ok=True)
        for i in todo:
            if time.monotonic() > deadline:
                return False
            vecs = embedder.embed(self.texts[i * CHUNK : (i + 1) * CHUNK])
            tmp = self.dir / f"chunk{i:04d}.tmp.npy"
            np.save(tmp, vecs.astype(np.float32))
            tmp.replace(self._chunk_path(i))
            print(f"# embedded {self.dir.name} chunk {i + 1}/{self.n_chunks}", file=sys.stderr)
        return True

    def load(self) -> npt.NDArray[np.float32]:
        parts = [np.load(self._chunk_path(i)) for i in range(self.n_chunks)]
        return np.concatenate(parts).astype(np.float32)


def pair_cosines(name: str, pairs: list[Pair], deadline: float) -> npt.NDArray[np.float32] | None:
    texts = sorted({t for a, b, _ in pairs for t in (a, b)})
    cache = EmbeddingCache(name, texts)
    if not cache.fill(deadline):
        left = len(cache.missing())
        print(f"# {name}: {left}/{cache.n_chunks} chunks left to embed; run again", file=sys.stderr)
        return None
    vecs = cache.load()
    index = {t: i for i, t in enumerate(texts)}
    a = vecs[[index[p[0]] for p in pairs]]
    b = vecs[[index[p[1]] for p in pairs]]
    cosines: npt.NDArray[np.float32] = np.sum(a * b, axis=1, dtype=np.float32)
    return cosines


# --------------------------------------------------------------------------- metrics


def metrics(hit: npt.NDArray[np.bool_], label: npt.NDArray[np.bool_]) -> dict[str, float | int]:
    tp = int(np.sum(hit & label))
    fp = int(np.sum(hit & ~label))
    pos = int(np.sum(label))
    neg = int(label.size - pos)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / pos if pos else 0.0
    fhr = fp / neg if neg else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "pairs": int(label.size),
        "positives": pos,
        "hits": tp + fp,
        "false_hits": fp,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "false_hit_rate": round(fhr, 4),
        "f1": round(f1, 4),
    }


def parse_thresholds(spec: str) -> list[float]:
    out: list[float] = []
    for part in spec.split(","):
        if ":" in part:
            lo, hi, step = (float(x) for x in part.split(":"))
            n = round((hi - lo) / step)
            out.extend(round(lo + k * step, 4) for k in range(n + 1))
        else:
            out.append(float(part))
    return out


# --------------------------------------------------------------------------- benchmarks


def _timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(wall, CPU) microseconds per call; CPU time is steadier on a shared machine."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w0) / n * 1e6, (time.process_time() - c0) / n * 1e6


def bench(sizes: list[int]) -> None:
    """Guard cost per call and index search latency (random unit vectors)."""
    pairs: list[tuple[str, str]] = [
        ("How do I install Docker on Ubuntu 22.04?", "How can I install Docker on Ubuntu 24.04?"),
        ("What is the capital of France?", "What's the capital city of France?"),
        ("Why is the sky blue?", "How is the sky blue?"),
        ("Is it safe to take ibuprofen while pregnant?", "Is it not safe to take ibuprofen?"),
    ] * 1000
    source = "examples"
    if (DATA_DIR / "qqp_gptcache" / "qqp_pairs.csv").exists():
        pairs, source = [(a, b) for a, b, _ in load_qqp()[:5000]], "qqp"
    cold = LookalikeGuard(memo_size=0)
    warm = LookalikeGuard(memo_size=2 * len(pairs) + 1)
    for a, _ in pairs:  # the cached side was analysed when it was stored
        warm.features(a)
    for label, guard in (("both texts analysed", cold), ("cached text memoised", warm)):

        def run(guard: LookalikeGuard = guard) -> None:
            for a, b in pairs:
                guard.accepts(a, b)

        wall, cpu = _timed(run, len(pairs))
        print(
            json.dumps(
                {
                    "bench": "LookalikeGuard.accepts",
                    "pairs": f"{len(pairs)} {source}",
                    "case": label,
                    "us_per_call_wall": round(wall, 1),
                    "us_per_call_cpu": round(cpu, 1),
                }
            ),
            flush=True,
        )

    from optiroute_mw.cache.semantic_index import SemanticIndex

    rng = np.random.default_rng(0)
    for size in sizes:
        vecs = rng.standard_normal((size, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        layouts = (
            (("1 partition", 1), ("8 partitions", 8)) if size <= 20_000 else (("1 partition", 1),)
        )
        for layout, parts in layouts:
            idx = SemanticIndex(max_entries=size + 1)
            w0 = time.perf_counter()
            idx.add_many(
                [f"p{i % parts}" for i in range(size)],
                vecs,
                [f"e{i}" for i in range(size)],
                [""] * size,
            )
            build = time.perf_counter() - w0
            # Queries near a stored prompt (cosine ~0.96), as in a cache lookup.
            picks = rng.integers(0, size, 500)
            queries = vecs[picks] + 0.015 * rng.standard_normal((500, 384)).astype(np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)

            def run_search(
                idx: SemanticIndex = idx, queries: npt.NDArray[np.float32] = queries
            ) -> None:
                for q in queries:
                    idx.search("p0", q, k=4)

            wall, cpu = _timed(run_search, len(queries))
            own = [int(p) for p in picks if int(p) % parts == 0]
            top1 = sum(
                idx.search("p0", queries[i], k=1)[0].entry_id == f"e{int(picks[i])}"
                for i in range(len(picks))
                if int(picks[i]) % parts == 0
            ) / max(1, len(own))
            print(
                json.dumps(
                    {
                        "bench": "SemanticIndex.search",
                        "entries": size,
                        "layout": layout,
                        "k": 4,
                        "ms_per_search_wall": round(wall / 1000, 3),
                        "ms_per_search_cpu": round(cpu / 1000, 3),
                        "top1_is_source": round(top1, 3),
                        "build_s": round(build, 1),
                    }
                ),
                flush=True,
            )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", action="append", choices=sorted(DATASETS), help="repeatable")
    ap.add_argument("--thresholds", default="0.80:0.96:0.01", help="lo:hi:step and/or a,b,c")
    ap.add_argument("--guard", choices=["both", "on", "off"], default="both")
    ap.add_argument("--budget-seconds", type=float, default=240.0, help="embedding time budget")
    ap.add_argument("--embed-only", action="store_true")
    ap.add_argument(
        "--errors",
        type=int,
        default=0,
        help="print N false hits and N missed "
        "positives (with the guard) at the first threshold, to stderr",
    )
    ap.add_argument(
        "--reasons",
        action="store_true",
        help="count guard rejection reasons above the first threshold",
    )
    ap.add_argument("--bench", action="store_true", help="guard cost and index latency only")
    ap.add_argument("--bench-sizes", default="10000,100000", help="index sizes for --bench")
    args = ap.parse_args(argv)

    if args.bench:
        bench([int(x) for x in args.bench_sizes.split(",")])
        return 0

    names = args.dataset or list(DATASETS)
    thresholds = parse_thresholds(args.thresholds)
    deadline = time.monotonic() + args.budget_seconds
    guard = LookalikeGuard()
    complete = True
    for name in names:
        pairs = DATASETS[name].loader()
        cos = pair_cosines(name, pairs, deadline)
        if cos is None:
            complete = False
            continue
        if args.embed_only:
            continue
        label = np.array([p[2] == 1 for p in pairs])
        reasons = [guard.reason(a, b) for a, b, _ in pairs]
        accepted = np.array([r is None for r in reasons])
        modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.guard]
        for t in thresholds:
            near = cos >= t
            for use_guard in modes:
                hit = near & accepted if use_guard else near
                row: dict[str, object] = {"dataset": name, "threshold": t, "guard": use_guard}
                row.update(metrics(hit, label))
                print(json.dumps(row), flush=True)
        t0 = thresholds[0]
        if args.reasons:
            near = cos >= t0
            for lab, tag in ((False, "negatives"), (True, "positives")):
                c = Counter(
                    r for r, n, y in zip(reasons, near, label, strict=True) if n and y == lab and r
                )
                print(
                    json.dumps(
                        {
                            "dataset": name,
                            "threshold": t0,
                            "rejected": tag,
                            "by_reason": dict(c.most_common()),
                        }
                    ),
                    flush=True,
                )
        if args.errors:
            hit = (cos >= t0) & accepted
            fps = [i for i in np.argsort(-cos) if hit[i] and not label[i]][: args.errors]
            fns = [i for i in np.argsort(-cos) if cos[i] >= t0 and label[i] and not accepted[i]]
            print(f"## {name} false hits at {t0} with guard", file=sys.stderr)
            for i in fps:
                print(f"{cos[i]:.3f} | {pairs[i][0]} || {pairs[i][1]}", file=sys.stderr)
            print(f"## {name} positives rejected by the guard at {t0}", file=sys.stderr)
            for i in fns[: args.errors]:
                print(
                    f"{cos[i]:.3f} [{reasons[i]}] | {pairs[i][0]} || {pairs[i][1]}", file=sys.stderr
                )
    return 0 if complete else 3


if __name__ == "__main__":
    raise SystemExit(main())
