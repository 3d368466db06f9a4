"""structlog set-up: JSON lines in production, console rendering on a TTY.

Standard-library logging (uvicorn, httpx, …) is routed through the same
processors.  A redaction processor masks anything that looks like a secret.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = re.compile(r"(authorization|api[-_]?key|secret|token|password)$", re.I)
SECRET_VALUES = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9_\-.=]{8,})")
# usage counters are called tokens but are not secrets
NOT_SECRET = frozenset({"prompt_tokens", "completion_tokens", "total_tokens", "max_tokens"})


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key not in NOT_SECRET and SECRET_KEYS.search(key):
            event[key] = "[redacted]"
        elif isinstance(value, str) and SECRET_VALUES.search(value):
            event[key] = SECRET_VALUES.sub("[redacted]", value)
    return event


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and stdlib logging once, at process start (the CLI calls it)."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    if not console:  # the console renderer prints tracebacks itself
        shared.append(structlog.processors.format_exc_info)
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
