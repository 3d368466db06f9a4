"""How fast the cache answers, measured in-process (no sockets), with a bare-app baseline.

The same chat request goes straight into ASGI apps, one call after another:

* ``bare``: a terminal app that answers a canned completion (the floor);
* ``exact hit``: the cache stage in front of it, the answer already stored (memory LRU);
* ``exact hit, ingress + cache``: the same behind the ingress stage (parse, controls,
  response headers, metrics), as a caller of the stack sees it;
* ``exact hit, redis``: the exact hit from a real redis-server (when installed);
* ``semantic hit``: a paraphrase of the stored question, embedding included (the real
  model from ``OPTIROUTE_EMBED_MODEL_PATH``), index search, guard, answer from the store;
* ``semantic miss + store``: a new question each call: exact miss, embedding, search,
  the terminal's answer, then stored in both layers (what the semantic layer adds to a miss).

Prints per-call latency to the last response byte (p50/p99/mean, milliseconds).  Numbers
only: nothing is asserted.

    OPTIROUTE_EMBED_MODEL_PATH=../shared/models/all-MiniLM-L6-v2-onnx \\
        .venv/bin/python bench/cache_latency.py [--calls 20000] [--semantic-calls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingress_overhead import start_redis

from optiroute_mw.cache.middleware import CacheMiddleware
from optiroute_mw.cache.store import CacheStore, MemoryStore
from optiroute_mw.exchange import get_exchange
from optiroute_mw.ingress.middleware import IngressMiddleware
from optiroute_mw.observe.metrics import Metrics
from optiroute_mw.registry import ModelSpec
from optiroute_mw.wire import encode

QUESTION = "How do I reset my online banking password?"
PARAPHRASE = "How can I reset my online banking password?"
MODEL = ModelSpec(name="m", backend="b")
ANSWER = (
    b'{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"Open settings."},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}'
)


def body(text: str) -> bytes:
    return encode({"model": "m", "messages": [{"role": "user", "content": text}]})


async def terminal(scope: Any, receive: Any, send: Any) -> None:
    exchange = get_exchange(scope)
    if exchange is not None:
        exchange.model = MODEL
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER, "more_body": False})


async def measure(app: Any, bodies: list[bytes], calls: int, expect: str | None) -> list[float]:
    """Seconds from the call to its last response byte, for ``calls`` calls."""
    seen: list[str] = []
    answered = [0.0]

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", ()))
            seen.append(headers.get(b"x-optiroute-cache", b"").decode())
        elif not message.get("more_body", False):
            answered[0] = time.perf_counter()

    samples: list[float] = []
    for i in range(calls):
        payload = bodies[i % len(bodies)]

        async def receive(payload: bytes = payload) -> dict[str, Any]:
            return {"type": "http.request", "body": payload, "more_body": False}

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [(b"content-type", b"application/json")],
            "state": {},
        }
        started = time.perf_counter()
        await app(scope, receive, send)
        samples.append(answered[0] - started)
    if expect is not None and {s for s in seen} != {expect}:
        raise SystemExit(f"expected every call to be {expect}, saw {sorted(set(seen))}")
    return samples


async def prime(app: Any, text: str) -> None:
    await measure(app, [body(text)], 1, None)


async def run(calls: int, semantic_calls: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    one = [body(QUESTION)]
    results["bare"] = await measure(terminal, one, calls, None)

    memory = MemoryStore()
    exact = CacheMiddleware(terminal, store=memory)
    await prime(exact, QUESTION)
    results["exact hit"] = await measure(exact, one, calls, None)
    staged = IngressMiddleware(CacheMiddleware(terminal, store=MemoryStore()), metrics=Metrics())
    await prime(staged, QUESTION)
    results["exact hit, ingress + cache"] = await measure(staged, one, calls, "hit-exact")

    folder = tempfile.mkdtemp(prefix="optiroute-bench-")
    redis = start_redis(folder)
    try:
        if redis is not None:
            from optiroute_mw.cache.redis_store import RedisStore

            store: CacheStore = RedisStore(redis[1])
            on_redis = CacheMiddleware(terminal, store=store)
            await prime(on_redis, QUESTION)
            results["exact hit, redis"] = await measure(on_redis, one, calls // 4, None)
            await store.aclose()  # type: ignore[attr-defined]
    finally:
        if redis is not None:
            redis[0].terminate()
            redis[0].wait(5)
        shutil.rmtree(folder, ignore_errors=True)

    from optiroute_mw.cache.semantic import SemanticCache
    from optiroute_mw.cache.semantic_model import shared_embedder

    store = MemoryStore(max_entries=100_000)
    semantic = SemanticCache(store, shared_embedder(), max_entries=100_000)
    semantic.start()
    if not await semantic.wait_ready(60):
        print("# no embedding model (OPTIROUTE_EMBED_MODEL_PATH): semantic rows skipped")
        return results
    layered = IngressMiddleware(
        CacheMiddleware(terminal, store=store, semantic=semantic), metrics=Metrics()
    )
    await prime(layered, QUESTION)
    await measure(layered, [body(PARAPHRASE)], 20, "hit-semantic")  # warm-up
    results["semantic hit (ingress + cache)"] = await measure(
        layered, [body(PARAPHRASE)], semantic_calls, "hit-semantic"
    )
    fresh = [
        body(f"Question number {i}: how do I reset my password?") for i in range(semantic_calls)
    ]
    results["semantic miss + store"] = await measure(layered, fresh, semantic_calls, "miss")
    await semantic.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--semantic-calls", type=int, default=500)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    results = asyncio.run(run(args.calls, args.semantic_calls))

    def ms(samples: list[float], q: float) -> float:
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    print("in-process, one event loop; milliseconds to the last response byte")
    print(f"{'variant':<34}{'calls':>7}{'p50':>9}{'p99':>9}{'mean':>9}")
    for name, samples in results.items():
        print(
            f"{name:<34}{len(samples):>7}{ms(samples, 0.5):>9.3f}{ms(samples, 0.99):>9.3f}"
            f"{statistics.fmean(samples) * 1e3:>9.3f}"
        )


if __name__ == "__main__":
    main()
