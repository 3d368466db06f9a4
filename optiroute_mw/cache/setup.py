"""The cache stage's parts, chosen from settings: the store and the semantic layer.

* Store: :class:`~.redis_store.RedisStore` when ``OPTIROUTE_REDIS_URL`` is set (replicas
  share entries), else the in-memory LRU.
* Semantic layer: on unless ``OPTIROUTE_SEMANTIC=false``; it needs the embedding model
  (``OPTIROUTE_EMBED_MODEL_PATH``, or fastembed's own download), loaded in a thread at
  start-up; it turns itself off with one log line when the model cannot load.  Its index
  is saved under ``OPTIROUTE_SEMANTIC_PATH`` (default ``<data dir>/semantic-cache``) and,
  with Redis, shared through a stream (:mod:`.semantic_log`).
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import msgspec
import structlog

from ..observe.metrics import Metrics
from ..settings import Settings
from .store import CacheStore, MemoryStore

if TYPE_CHECKING:
    from .semantic import SemanticCache
    from .semantic_model import TextEmbedder

logger = structlog.get_logger(__name__)
# What a saved answer depends on besides the request: a snapshot made under other values
# is discarded at start-up (the registry file's bytes count too).
ANSWER_SETTINGS = (
    "config",
    "routes",
    "forward",
    "default_mode",
    "strict_models",
    "baseline_model",
    "local_model",
    "local_model_path",
    "local_url",
    "local_model_name",
    "openai_base_url",
    "anthropic_base_url",
)


def build_store(settings: Settings) -> CacheStore:
    if settings.redis_url:
        from .redis_store import RedisStore

        return RedisStore(settings.redis_url, settings.cache_max_entries)
    return MemoryStore(settings.cache_max_entries)


def build_semantic(
    settings: Settings,
    store: CacheStore,
    *,
    metrics: Metrics | None = None,
    embedder: TextEmbedder | None = None,
) -> SemanticCache | None:
    """The semantic layer (not started yet), or None when it is off or cannot exist."""
    if not settings.semantic or not settings.cache:
        return None
    try:
        from .redis_store import RedisStore
        from .semantic import SemanticCache
        from .semantic_log import SemanticLog
        from .semantic_model import shared_embedder
    except ImportError as exc:  # numpy, usearch or fastembed not installed
        logger.warning("semantic_cache_off", reason=f"{exc}", hint="install optiroute-mw[semantic]")
        return None
    embedder = embedder or shared_embedder(settings.embed_model_path)
    model = model_id(embedder)
    log = None
    if isinstance(store, RedisStore):  # vectors of one model only ever meet their own kind
        log = SemanticLog(store, settings.cache_max_entries, f"optiroute:semantic:{model}:log")
    return SemanticCache(
        store,
        embedder,
        threshold=settings.semantic_threshold,
        max_entries=settings.cache_max_entries,
        path=settings.data_file(settings.semantic_path, "semantic-cache"),
        log=log,
        sync_s=settings.semantic_sync_s,
        metrics=metrics,
        fingerprint=model + ":" + settings_fingerprint(settings),
    )


def model_id(embedder: object) -> str:
    """Names the embedding model: its name and its folder's name (not where it sits)."""
    name = str(getattr(embedder, "model_name", type(embedder).__name__))
    path = getattr(embedder, "model_path", None)
    ident = name + "|" + (os.path.basename(os.path.normpath(path)) if path else "")
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def settings_fingerprint(settings: Settings) -> str:
    digest = hashlib.sha256(
        msgspec.json.encode({name: getattr(settings, name) for name in ANSWER_SETTINGS})
    )
    if settings.config:
        try:
            with open(settings.config, "rb") as fh:
                digest.update(fh.read())
        except OSError:
            pass
    return digest.hexdigest()[:16]


async def close_store(store: CacheStore) -> None:
    close = getattr(store, "aclose", None)
    if close is not None:
        await close()
