"""Local sentence embeddings shared by the semantic cache and the learned router.

fastembed loads the ONNX model (CPU).  ``OPTIROUTE_EMBED_MODEL_PATH`` points at a local
model folder (no download); otherwise fastembed's normal download of
``OPTIROUTE_EMBED_MODEL`` is used.  Embedding is CPU-bound, so the async entry point runs
it in a worker thread and never on the event loop.

One text at a time (the gateway's case) skips fastembed's batch machinery: the text is
tokenized with fastembed's own tokenizer and run on fastembed's own onnxruntime session,
then mean-pooled and L2-normalised as fastembed does, so the vectors are the same.  That
path is taken only for a model whose set-up it knows (mean pooling, normalisation, the
usual BERT inputs, float output, no fixed padding) and that gives fastembed's vector on a
probe text at load; anything else, and batches, go through fastembed's ``embed``.

What an embedding costs is the model, not the code around it: on a 2-vCPU EPYC the int8
MiniLM takes about 1 ms plus 0.19 ms per token on one thread.  A second intra-op thread
(``OPTIROUTE_EMBED_THREADS=2``) cuts that by a third when the other core is idle, and
makes it slower when the other core is busy (the event loop, another request).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL_ALIAS = "local/all-MiniLM-L6-v2-int8"
DIM = 384

Vector = npt.NDArray[np.float32]

logger = structlog.get_logger(__name__)

_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})
_PROBE = "Wie setze ich mein Passwort zurück? How do I reset my password 🔑 in 2 steps?"


class EmbeddingUnavailable(RuntimeError):
    """The embedding model could not be loaded; callers fall back to what needs none."""


class _SingleText:
    """One text through fastembed's tokenizer and onnxruntime session, no batch machinery.

    Built only by :meth:`attach`, which checks the model is one it knows how to run.
    """

    def __init__(self, session: Any, tokenizer: Any, output: str, inputs: frozenset[str]):
        self.session = session
        self.tokenizer = tokenizer
        self.output = [output]
        self.mask = "attention_mask" in inputs
        self.types = "token_type_ids" in inputs
        # Read-only views of these are the attention mask (no padding: all ones) and the
        # token type ids (all zeros, as fastembed passes them) of every call.
        length = int(tokenizer.truncation["max_length"])
        self.ones = np.ones((1, length), dtype=np.int64)
        self.zeros = np.zeros((1, length), dtype=np.int64)
        self.ones.flags.writeable = self.zeros.flags.writeable = False

    @classmethod
    def attach(cls, model: Any) -> _SingleText | None:
        """The fast path for a loaded ``TextEmbedding``, or None when its set-up is unusual."""
        try:
            fast = cls._build(model)
        except Exception as exc:  # an unexpected fastembed internal: use its own embed
            logger.info("embedding.single_text_path_off", reason=f"{type(exc).__name__}: {exc}")
            return None
        if fast is None:
            return None
        # the same vector as fastembed on a probe text, or not used at all
        try:
            expected = np.asarray(next(iter(model.embed([_PROBE], batch_size=1))), np.float32)
            got = fast(_PROBE)
            same = got.shape == expected.shape and float(np.abs(got - expected).max()) < 1e-5
        except Exception as exc:
            logger.info("embedding.single_text_path_off", reason=f"{type(exc).__name__}: {exc}")
            return None
        if not same:
            logger.info("embedding.single_text_path_off", reason="probe vector differs")
            return None
        return fast

    @classmethod
    def _build(cls, model: Any) -> _SingleText | None:
        import onnxruntime as ort
        from fastembed.common.model_description import PoolingType
        from fastembed.text.custom_text_embedding import CustomTextEmbedding
        from fastembed.text.pooled_normalized_embedding import PooledNormalizedEmbedding
        from tokenizers import Tokenizer

        inner = model.model
        kind = type(inner)  # exact classes: a subclass may pre- or post-process differently
        if kind is CustomTextEmbedding:
            config = CustomTextEmbedding.POSTPROCESSING_MAPPING[inner.model_description.model]
            if not (
                config.pooling == PoolingType.MEAN
                and config.normalization
                and config.output_name is None
            ):
                return None
        elif kind is not PooledNormalizedEmbedding:
            return None
        session, tokenizer = inner.model, inner.tokenizer
        if not isinstance(session, ort.InferenceSession) or not isinstance(tokenizer, Tokenizer):
            return None
        inputs = {i.name: i.type for i in session.get_inputs()}
        if "input_ids" not in inputs or not set(inputs) <= _INPUTS:
            return None
        if any(dtype != "tensor(int64)" for dtype in inputs.values()):
            return None
        output = session.get_outputs()[0]
        if output.type != "tensor(float)" or len(output.shape) != 3:
            return None
        # One text must come back unpadded and truncated (fastembed: batch-longest padding)
        padding, truncation = tokenizer.padding, tokenizer.truncation
        if padding is not None and (padding["length"] or (padding["pad_to_multiple_of"] or 1) > 1):
            return None
        if truncation is None or int(truncation["max_length"]) <= 0:
            return None
        return cls(session, tokenizer, output.name, frozenset(inputs))

    def __call__(self, text: str) -> Vector:
        ids = self.tokenizer.encode(text).ids
        n = len(ids)
        if n <= self.ones.shape[1]:
            ones, zeros = self.ones[:, :n], self.zeros[:, :n]
        else:  # a tokenizer that truncates later than it said
            ones, zeros = np.ones((1, n), np.int64), np.zeros((1, n), np.int64)
        feeds = {"input_ids": np.array(ids, dtype=np.int64).reshape(1, n)}
        if self.mask:
            feeds["attention_mask"] = ones
        if self.types:
            feeds["token_type_ids"] = zeros
        hidden = self.session.run(self.output, feeds)[0]
        # mean over the tokens (all real: no padding), then L2, in float64 like fastembed
        pooled = hidden[0].sum(axis=0, dtype=np.float64)
        pooled /= max(n, 1)
        pooled /= max(math.sqrt(float(pooled @ pooled)), 1e-12)
        vector: Vector = pooled.astype(np.float32)
        return vector


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
        self._single: _SingleText | None = None
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
                model = self._build()
            except Exception as exc:  # any failure means "no semantic features"
                raise EmbeddingUnavailable(f"{type(exc).__name__}: {exc}") from exc
            self._single = _SingleText.attach(model)
            self._model = model

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
        if len(texts) == 1 and self._single is not None:
            return self._one(texts[0]).reshape(1, -1)
        vectors = list(self._model.embed(list(texts), batch_size=max(1, min(len(texts), 64))))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def embed_one(self, text: str) -> Vector:
        if self._model is None:
            self.load()
        if self._single is not None:
            return self._one(text)
        vector: Vector = self.embed([text])[0]
        return vector

    def _one(self, text: str) -> Vector:
        single = self._single
        if single is not None:
            try:
                return single(text)
            except Exception as exc:  # never again; fastembed answers from now on
                self._single = None
                logger.warning(
                    "embedding.single_text_path_failed", error=f"{type(exc).__name__}: {exc}"
                )
        vectors = list(self._model.embed([text], batch_size=1))
        vector: Vector = np.asarray(vectors, dtype=np.float32).reshape(1, -1)[0]
        return vector

    async def aembed_one(self, text: str) -> Vector:
        """Embed in a worker thread so the event loop keeps serving."""
        return await asyncio.to_thread(self.embed_one, text)
