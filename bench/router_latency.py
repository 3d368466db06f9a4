"""How long the classify stage's decision takes, per prompt length: rules vs learned.

Each variant is the router object the classify stage runs (``RouterSetup.decide`` on an
Exchange), timed in-process, p50/p99 in milliseconds.  The variants take turns call by
call, in a shuffled order, so a neighbour's load on the box hits them alike.  With
``--embed`` the table also times one sentence embedding of the same text (what running
the transformer per request would add: the router before its token vectors were
distilled; needs the model in ``--model-path``).  Numbers only: nothing is asserted.

    .venv/bin/python bench/router_latency.py [--calls 300] [--lengths 10,60,280,1000,4000]
        [--embed] [--model-path DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prompt_text import SHARED_MODEL, text_of

from optiroute_mw.classify.setup import RouterSetup
from optiroute_mw.exchange import Exchange
from optiroute_mw.settings import Settings
from optiroute_mw.wire import parse_request


def exchange_for(text: str) -> Exchange:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": text}]})
    raw = body.encode()
    return Exchange("b", "chat", "/v1/chat/completions", raw, parse_request("chat", raw))


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--lengths", default="10,60,280,1000,4000")
    ap.add_argument("--embed", action="store_true", help="also time one embedding")
    ap.add_argument(
        "--model-path", default=os.environ.get("OPTIROUTE_EMBED_MODEL_PATH") or str(SHARED_MODEL)
    )
    args = ap.parse_args()

    routers: dict[str, RouterSetup] = {}
    for kind in ("rules", "learned"):
        setup = RouterSetup(Settings(router=kind))  # type: ignore[arg-type]
        await setup.start()
        if setup.active_kind != kind:
            raise SystemExit(f"the {kind} router did not start")
        routers[kind] = setup
    variants: dict[str, Callable[[str], Awaitable[Any]]] = {
        kind: (lambda text, s=setup: s.decide(exchange_for(text)))
        for kind, setup in routers.items()
    }
    if args.embed:
        import onnxruntime  # noqa: F401  (before usearch, which the embedder may pull in)

        from optiroute_mw.embedding import Embedder

        embedder = Embedder("local", args.model_path, 1)
        embedder.load()

        async def embed(text: str) -> Any:
            return embedder.embed_one(text)

        variants["embedding, 1 thread"] = embed

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{args.calls} calls a cell, p50 / p99 ms")  # fmt: skip
    print("| chars | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    for chars in (int(x) for x in args.lengths.split(",")):
        text = text_of(chars)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for call in variants.values():  # warm up
            await call(text)
        for _ in range(args.calls):
            order = list(variants.items())
            random.shuffle(order)
            for name, call in order:
                started = time.perf_counter()
                await call(text)
                times[name].append((time.perf_counter() - started) * 1e3)
        cells = []
        for name in variants:
            ts = sorted(times[name])
            p99 = ts[min(len(ts) - 1, int(0.99 * len(ts)))]
            cells.append(f"{statistics.median(ts):.3f} / {p99:.3f}")
        print(f"| {chars} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    asyncio.run(main())
