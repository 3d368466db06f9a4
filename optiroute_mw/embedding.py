"""Local sentence embeddings for the semantic cache (and the router's training script).

fastembed runs the ONNX model on the CPU.  ``OPTIROUTE_EMBED_MODEL_PATH`` points at
a local model folder (no download); otherwise fastembed's normal download of
``OPTIROUTE_EMBED_MODEL`` is used.  Embedding is CPU-bound, so the async entry
point runs it in a worker thread and never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL_ALIAS = "local/all-MiniLM-L6-v2-int8"
DIM = 384

Vector = npt.NDArray[np.float32]


class EmbeddingUnavailable(RuntimeError):
    """The embedding model could not be loaded; callers fall back to what needs none."""


class Embedder:
    """A lazily loaded fastembed model returning L2-normalised float32 vectors."""

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        model_path: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.model_name = model_name
        self.model_path = model_path
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> Embedder:
        path = os.environ.get("OPTIROUTE_EMBED_MODEL_PATH") or None
        name = os.environ.get("OPTIROUTE_EMBED_MODEL", DEFAULT_MODEL)
        threads_env = os.environ.get("OPTIROUTE_EMBED_THREADS")
        return cls(name, path, int(threads_env) if threads_env else None)

    def load(self) -> None:
        """Load the model now; raises EmbeddingUnavailable with the reason."""
        with self._lock:
            if self._model is not None:
                return
            try:
                self._model = self._build()
            except Exception as exc:  # any failure means "no semantic features"
                raise EmbeddingUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _build(self) -> Any:
        from fastembed import TextEmbedding

        if not self.model_path:
            return TextEmbedding(model_name=self.model_name, threads=self.threads)
        from fastembed.common.model_description import ModelSource, PoolingType

        # A custom name: the built-in name is already registered and would clash.
        known = {m["model"].lower() for m in TextEmbedding.list_supported_models()}
        if LOCAL_ALIAS.lower() not in known:
            TextEmbedding.add_custom_model(
                model=LOCAL_ALIAS,
                pooling=PoolingType.MEAN,
                normalization=True,
                sources=ModelSource(hf=DEFAULT_MODEL),  # required field, never contacted
                dim=DIM,
                model_file="model.onnx",
                license="apache-2.0",
            )
        return TextEmbedding(
            model_name=LOCAL_ALIAS, specific_model_path=self.model_path, threads=self.threads
        )

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed a batch synchronously: shape (len(texts), DIM)."""
        if self._model is None:
            self.load()
        vectors = list(self._model.embed(list(texts), batch_size=max(1, min(len(texts), 64))))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def embed_one(self, text: str) -> Vector:
        vector: Vector = self.embed([text])[0]
        return vector

    async def aembed_one(self, text: str) -> Vector:
        """Embed in a worker thread so the event loop keeps serving."""
        return await asyncio.to_thread(self.embed_one, text)
