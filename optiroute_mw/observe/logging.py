"""structlog set-up: JSON lines in production, console rendering on a TTY.

structlog's own events (the one line per request among them) are rendered and
written straight to the stream, without a detour through a stdlib LogRecord;
standard-library logging (uvicorn, httpx, …) is routed through the same
processors by a ``ProcessorFormatter``, so both come out alike.  A redaction
processor masks anything that looks like a secret, in keys, values, nested
mappings and formatted tracebacks.  Prompt text is never logged unless
``OPTIROUTE_LOG_PROMPTS`` asks for it, and then only an excerpt.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import msgspec
import structlog

from .request_line import JsonLines

SECRET_KEYS = re.compile(
    r"(authorization|api[-_]?key|secret|token|password|passwd|cookie|credential)s?$", re.I
)
SECRET_VALUES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}"  # OpenAI, Anthropic (sk-ant-), our own keys (sk-or-)
    r"|(?:Bearer|Basic)\s+[A-Za-z0-9_\-.=+/]{8,}"
    r"|hf_[A-Za-z0-9]{16,}"  # Hugging Face
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|AIza[0-9A-Za-z_\-]{30,}"  # Google
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|xox[abposr]-[A-Za-z0-9\-]{10,})"  # Slack
)
# usage counters are called tokens but are not secrets
NOT_SECRET = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "max_tokens",
        "input_tokens",
        "output_tokens",
        "tokens",
    }
)
MASK = "[redacted]"
# fields the gateway fills from closed sets (configured names, its own vocabulary):
# no regex pass over their values, which are most of the one line per request
TRUSTED_FIELDS = frozenset(
    {
        "level",
        "timestamp",
        "tenant",
        "route",
        "model",
        "backend",
        "tier",
        "mode",
        "cache",
        "stream",
        "status",
        "attempts",
    }
)
_TRUSTED, _SECRET, _CHECK = 0, 1, 2
_key_kinds: dict[str, int] = {}


def _key_kind(key: str) -> int:
    kind = _key_kinds.get(key)
    if kind is None:
        if key in TRUSTED_FIELDS:
            kind = _TRUSTED
        elif key not in NOT_SECRET and SECRET_KEYS.search(key) is not None:
            kind = _SECRET
        else:
            kind = _CHECK
        if len(_key_kinds) < 4096:  # field names are few; never grow without bound
            _key_kinds[key] = kind
    return kind


def _is_secret_key(key: str) -> bool:
    return _key_kind(key) == _SECRET


def _clean(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return mask(value)
    if depth > 3:
        return value
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and _is_secret_key(k) else _clean(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_clean(v, depth + 1) for v in value]
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask secret-named fields and secret-looking text anywhere in the event."""
    for key, value in event.items():
        kind = _key_kind(key)
        if kind == _TRUSTED:
            continue
        if kind == _SECRET:
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = mask(value)
        elif isinstance(value, (Mapping, list, tuple)):
            event[key] = _clean(value, 1)
    return event


def mask(text: str) -> str:
    """``text`` with anything that looks like a secret replaced."""
    return SECRET_VALUES.sub(MASK, text) if SECRET_VALUES.search(text) else text


_encoder = msgspec.json.Encoder(enc_hook=repr)


def configure(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, *, cache: bool = True
) -> None:
    """Configure structlog and stdlib logging once, at process start (the CLI calls it).

    ``cache=False`` keeps loggers from binding to this set-up for good (for tests
    that configure and then restore the defaults).
    """
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # tracebacks become text before redaction, so a secret in one is masked too
        structlog.processors.format_exc_info,
        redact,
    ]
    level_number = logging.getLevelName(level.upper())
    # JSON lines: msgspec (several times quicker than json.dumps); the request line
    # takes a faster path through the same object (see .request_line)
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else JsonLines(out, level_number, _encoder, mask)
    )
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=structlog.WriteLoggerFactory(out),
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
