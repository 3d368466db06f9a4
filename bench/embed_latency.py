"""How long one embedding takes (batch 1), the way the gateway asks for it.

Wall time of ``Embedder.embed_one`` per text length, p50/p99 in milliseconds, for:

* ``embed_one``: ``Embedder.embed_one`` (fastembed's ``embed`` on a one-item list);
* ``session.run``: the onnxruntime call alone on pre-made inputs: the floor, the model
  (what is left between the two is fastembed's tokenizer and batch machinery, about
  0.1 to 0.2 ms: too little to be worth bypassing the library);

each with 1 and 2 intra-op threads (``--threads``).  The variants take turns call by call,
in a shuffled order, so a neighbour's load on the box hits them alike.  ``--busy 0.5``
keeps another process busy half of the time (2 ms slices) during the timings: the second
core that a gateway's event loop or a neighbour would take.  Then the cosine between the
1-thread and 2-thread vectors over about 200 varied texts (short, long, past the
256-token cut, unicode, code, empty).  Numbers only: nothing is asserted.

    .venv/bin/python bench/embed_latency.py [--calls 200] [--threads 1,2]
        [--lengths 20,60,120,256,1000,2000] [--busy 0.5] [--model-path DIR]

``--model-path`` defaults to ``OPTIROUTE_EMBED_MODEL_PATH``, else the shared model folder
beside the checkout (``../shared/models/all-MiniLM-L6-v2-onnx``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime  # before anything that may import usearch: the other order crashes
from prompt_text import PROSE, SHARED_MODEL, text_of

from optiroute_mw.embedding import Embedder


def session_only(embedder: Embedder, text: str) -> Callable[[str], Any]:
    """onnxruntime alone on inputs made beforehand (what no Python code can go under)."""
    inner = embedder._model.model
    ids = np.array([inner.tokenizer.encode(text).ids], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids}
    output = [inner.model.get_outputs()[0].name]
    return lambda _text: inner.model.run(output, feeds)


def measure(
    variants: dict[str, Callable[[str], Any]], text: str, calls: int
) -> dict[str, list[float]]:
    for fn in variants.values():  # warm-up
        for _ in range(5):
            fn(text)
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(calls):
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            variants[name](text)
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def burn(duty: float, stop: Any) -> None:
    """Keep a core busy ``duty`` of the time, in 2 ms periods."""
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < 0.002 * duty:
            pass
        time.sleep(0.002 * (1 - duty))


def varied_texts() -> list[str]:
    """About 200 texts: short, long, past 256 tokens, unicode, code, odd whitespace."""
    rng = random.Random(7)
    words = PROSE.split()
    texts = [
        "",
        " ",
        "hi",
        "?",
        "ok 👍",
        "Wie setze ich mein Passwort zurück?",
        "如何重置我的网上银行密码\uff1f",
        "Как сбросить пароль?",
        "パスワードを忘れました。どうすればいいですか\uff1f",
        "¿Cuál es la capital de Francia?",
        "def f(x):\n    return x ** 2  # square\n",
        "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 1;",
        "\t\n  spaced   out \n\n text\t",
        "🙂" * 300,
        "a" * 5000,
        "word " * 600,
    ]
    for i in range(184):
        n = rng.choice([3, 8, 15, 30, 60, 120, 250, 400])
        chunk = [rng.choice(words) for _ in range(n)]
        if i % 5 == 0:
            chunk.insert(rng.randrange(len(chunk)), rng.choice(["naïve", "Zürich", "東京", "😀"]))
        texts.append(" ".join(chunk))
    return texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=200, help="calls per variant and length")
    p.add_argument("--threads", default="1,2", help="intra-op thread counts to compare")
    p.add_argument("--lengths", default="20,60,120,256,1000,2000", help="text lengths (chars)")
    p.add_argument("--busy", type=float, default=0.0, help="share of a core another process takes")
    p.add_argument("--model-path", default=None)
    args = p.parse_args()
    path = args.model_path or os.environ.get("OPTIROUTE_EMBED_MODEL_PATH") or str(SHARED_MODEL)
    threads = [int(t) for t in args.threads.split(",")]
    lengths = [int(n) for n in args.lengths.split(",")]

    import fastembed

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"onnxruntime {onnxruntime.__version__}, fastembed {fastembed.__version__}, "
        f"model {path}"
    )
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    embedders = {t: Embedder("local", path, t) for t in threads}
    for embedder in embedders.values():
        embedder.load()

    stop = multiprocessing.get_context("spawn").Event()
    burner = None
    if args.busy > 0:
        burner = multiprocessing.get_context("spawn").Process(
            target=burn, args=(min(args.busy, 1.0), stop)
        )
        burner.start()
        print(f"# another process keeps a core {min(args.busy, 1.0):.0%} busy")

    print(f"\n{'chars':>5} {'tokens':>6}  {'variant':<24} {'p50 ms':>7} {'p99 ms':>7}")
    tokenizer = next(iter(embedders.values()))._model.model.tokenizer
    for chars in lengths:
        text = text_of(chars)
        variants: dict[str, Callable[[str], Any]] = {}
        for t, embedder in embedders.items():
            variants[f"embed_one, {t} thr"] = embedder.embed_one
            variants[f"session.run, {t} thr"] = session_only(embedder, text)
        calls = args.calls if chars <= 256 else max(20, args.calls // 4)
        times = measure(variants, text, calls)
        tokens = len(tokenizer.encode(text).ids)
        for name, ts in times.items():
            p50, p99 = np.percentile(ts, 50), np.percentile(ts, 99)
            print(f"{chars:>5} {tokens:>6}  {name:<24} {p50:>7.2f} {p99:>7.2f}")
        print()

    stop.set()
    if burner is not None:
        burner.join()
    print(f"# load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    texts = varied_texts()
    if len(embedders) > 1:
        first, *rest = embedders.values()
        for other in rest:
            cos = [float(first.embed_one(x) @ other.embed_one(x)) for x in texts]
            print(
                f"cosine {first.threads} thr vs {other.threads} thr: min {min(cos):.7f} "
                f"(same vectors whatever the thread count)"
            )


if __name__ == "__main__":
    main()
