"""The work behind ``eval cache``: embeddings up front, then each pair through the cache stage."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Receive, Scope, Send

from ..errors import send_json
from ..exchange import STATE_KEY, Exchange, get_exchange
from ..registry import ModelSpec
from ..settings import Settings
from ..wire import encode, parse_request

if TYPE_CHECKING:
    from ..embedding import Embedder, Vector

CHUNK = 2048  # texts per saved file, as tools/tune_semantic.py writes them
MODEL = ModelSpec(name="eval", backend="eval")
ANSWER = encode(
    {
        "id": "chatcmpl-eval",
        "object": "chat.completion",
        "created": 0,
        "model": "eval",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)


def _digest(texts: list[str]) -> str:
    return hashlib.sha1("\x00".join(texts).encode()).hexdigest()[:12]


class VectorFolder:
    """Vectors of a sorted text list, saved chunk by chunk (resumable) under one folder."""

    def __init__(self, folder: Path, texts: list[str]) -> None:
        self.folder = folder
        self.texts = texts
        self.chunks = (len(texts) + CHUNK - 1) // CHUNK

    def path(self, i: int) -> Path:
        return self.folder / f"chunk{i:04d}.npy"

    def complete(self) -> bool:
        return all(self.path(i).exists() for i in range(self.chunks))

    def fill(self, embedder: Embedder) -> None:
        import numpy as np

        self.folder.mkdir(parents=True, exist_ok=True)
        for i in range(self.chunks):
            if not self.path(i).exists():
                vectors = embedder.embed(self.texts[i * CHUNK : (i + 1) * CHUNK])
                tmp = self.folder / f"chunk{i:04d}.tmp.npy"
                np.save(tmp, vectors.astype(np.float32))
                tmp.replace(self.path(i))
                print(f"# embedded chunk {i + 1}/{self.chunks}", file=sys.stderr)

    def load(self) -> Any:
        import numpy as np

        return np.concatenate([np.load(self.path(i)) for i in range(self.chunks)])


def embed_table(
    settings: Settings, all_texts: list[str], needed: list[str], args: argparse.Namespace
) -> dict[str, Vector]:
    """A vector for every needed text: from the embedding cache, else computed in batches."""
    from ..cache.semantic_model import shared_embedder

    embedder = shared_embedder(settings.embed_model_path)
    texts = sorted(set(needed))
    vectors: Any = None
    if args.embed_cache:
        model_key = hashlib.sha1((embedder.model_path or embedder.model_name).encode()).hexdigest()[
            :10
        ]
        root = Path(args.embed_cache) / model_key
        every = sorted(set(all_texts))
        for folder in sorted(root.glob(f"*-{_digest(every)}")):  # the whole file's texts
            whole = VectorFolder(folder, every)
            if whole.complete():
                by_text = dict(zip(every, whole.load(), strict=True))
                return {t: by_text[t] for t in texts}
        own = VectorFolder(root / f"pairs-{_digest(texts)}", texts)
        own.fill(embedder)
        vectors = own.load()
    else:
        vectors = embedder.embed(texts)
    return dict(zip(texts, vectors, strict=True))


class TableEmbedder:
    """The semantic layer's embedder, answering from precomputed vectors of the same model."""

    def __init__(self, table: dict[str, Vector], model: Embedder) -> None:
        self.table = {text.strip(): v for text, v in table.items()}
        self.model = model

    def load(self) -> None:
        return None

    def embed_one(self, text: str) -> Vector:
        vector = self.table.get(text)
        return vector if vector is not None else self.model.embed_one(text)


class StubBackend:
    """Answers every request with one finished completion, as a backend would."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = get_exchange(scope)
        if exchange is not None:
            exchange.model = MODEL
        await send_json(send, 200, ANSWER)


def exchange_for(tenant: str, text: str) -> Exchange:
    body = encode({"model": "eval", "messages": [{"role": "user", "content": text}]})
    return Exchange(
        request_id="eval",
        kind="chat",
        path="/v1/chat/completions",
        body=body,
        request=parse_request("chat", body),
        tenant=tenant,
    )


async def _call(app: Any, exchange: Exchange) -> None:
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": exchange.path,
        "headers": [],
        "state": {STATE_KEY: exchange},
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": exchange.body, "more_body": False}

    async def send(message: Message) -> None:
        return None

    await app(scope, receive, send)


async def similarities(
    settings: Settings, pairs: list[tuple[str, str, int]], table: dict[str, Vector], floor: float
) -> list[float]:
    """Per pair: the similarity of the hit served for column b (1.0 exact), -1.0 for a miss."""
    from ..cache.keys import exact_key
    from ..cache.middleware import CacheMiddleware
    from ..cache.semantic import SemanticCache
    from ..cache.semantic_model import shared_embedder
    from ..cache.store import MemoryStore

    store = MemoryStore(max_entries=1024)
    embedder = TableEmbedder(table, shared_embedder(settings.embed_model_path))
    semantic = SemanticCache(store, embedder, threshold=floor, max_entries=1024, warm_up=False)
    semantic.start()
    await semantic.wait_ready()
    cache = CacheMiddleware(StubBackend(), store=store, ttl_s=3600.0, semantic=semantic)
    sims: list[float] = []
    try:
        for i, (a, b, _) in enumerate(pairs):
            tenant = f"pair-{i}"
            first, second = exchange_for(tenant, a), exchange_for(tenant, b)
            await _call(cache, first)
            await _call(cache, second)
            if second.cache_status == "hit-exact":
                sims.append(1.0)
            elif second.cache_status == "hit-semantic":
                sims.append(float(second.response_headers["x-optiroute-cache-similarity"]))
            else:
                sims.append(-1.0)
            for exchange in (first, second):
                key = exact_key(tenant, exchange.kind, exchange.raw())
                semantic.forget(key)
                await store.delete(key)
    finally:
        await semantic.stop()
    return sims
