"""The semantic cache's embedding model: one per process, loaded off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Protocol

from ..embedding import Embedder, Vector

EMBED_THREADS = 1  # one prompt at a time: a second intra-op thread only adds contention


class TextEmbedder(Protocol):
    def load(self) -> None: ...
    def embed_one(self, text: str) -> Vector: ...


_shared: dict[tuple[str, str | None], Embedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(model_path: str | None = None) -> Embedder:
    """One model per process, whichever stack or tool asks (``OPTIROUTE_EMBED_*`` apply)."""
    base = Embedder.from_env()
    key = (base.model_name, model_path or base.model_path)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Embedder(key[0], key[1], base.threads or EMBED_THREADS)
        return _shared[key]


async def in_daemon_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a daemon thread: a model download that hangs never holds up exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        if not done.done():
            done.set_exception(exc) if exc is not None else done.set_result(None)

    def work() -> None:
        error: BaseException | None = None
        try:
            fn()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=work, name="optiroute-embed-load", daemon=True).start()
    await done
