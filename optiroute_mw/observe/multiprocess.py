"""``optiroute-mw serve --workers N``: several uvicorn worker processes, one set of metrics.

prometheus-client's multiprocess mode keeps each worker's values in files under
``PROMETHEUS_MULTIPROC_DIR``; ``/metrics``, whichever worker answers, sums them
(see :mod:`.metrics`).  The variable must be set before a worker first imports
prometheus-client, so the supervisor sets it (a fresh temporary folder unless one
was given, emptied first either way) and the workers, spawned afresh, inherit it.

Each worker is a whole gateway: its own cache, circuits and rate-limit buckets.
Give them ``OPTIROUTE_REDIS_URL`` to share limits, budgets and the cache; the
ledger is one SQLite file they all write.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import tempfile

from starlette.types import ASGIApp

from ..settings import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_dir() -> tuple[str, bool]:
    """The metrics folder for this run, emptied; and whether it is ours to remove."""
    given = os.environ.get(ENV) or os.environ.get(ENV.lower())
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)  # values of an earlier run would be added to this one's
        os.environ[ENV] = given
        return given, False
    folder = tempfile.mkdtemp(prefix="optiroute-metrics-")
    os.environ[ENV] = folder
    return folder, True


def worker_app() -> ASGIApp:
    """The sidecar of one worker process (uvicorn's app factory): settings from the env."""
    from prometheus_client import multiprocess

    from ..server import create_app
    from .logging import configure

    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    # a live gauge of a worker that is gone must not count any more
    atexit.register(multiprocess.mark_process_dead, os.getpid())
    return create_app(settings)


def serve_workers(settings: Settings, workers: int) -> int:
    import uvicorn

    folder, ours = prepare_dir()
    try:
        uvicorn.run(
            f"{__name__}:worker_app",
            factory=True,
            workers=workers,
            host=settings.host,
            port=settings.port,
            lifespan="on",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=int(settings.shutdown_grace_s),
            server_header=False,
        )
    finally:
        if ours:
            shutil.rmtree(folder, ignore_errors=True)
    return 0
