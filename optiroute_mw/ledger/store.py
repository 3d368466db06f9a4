"""The ledger's SQLite file: one row per call.

WAL mode lets the CLI and the admin API read while the sidecar writes.  Rows go in
by batches (one transaction each) from a worker thread, never from the event loop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

T = TypeVar("T")


class LedgerRow(NamedTuple):
    ts: float  # unix time the call started
    request_id: str
    tenant: str
    key_id: str | None
    route: str  # chat | completions
    requested_model: str
    model: str | None  # the model that answered (from the cache too), else the last tried
    backend: str | None  # "cache" for a cache hit
    tier: str | None
    mode: str
    cache: str  # hit-exact, hit-semantic, hit-inflight, miss, refresh, bypass, off
    stream: bool
    status: int
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool  # no usage from the backend: counted, and marked so
    cost_usd: float
    baseline_cost_usd: float  # what the requested (or baseline) model would have cost
    latency_ms: float
    attempts: int
    fallback: bool  # answered by a deployment other than the selector's first choice


COLUMNS = LedgerRow._fields
SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key_id TEXT,
    route TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    model TEXT,
    backend TEXT,
    tier TEXT,
    mode TEXT NOT NULL,
    cache TEXT NOT NULL,
    stream INTEGER NOT NULL,
    status INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    tokens_estimated INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    baseline_cost_usd REAL NOT NULL,
    latency_ms REAL NOT NULL,
    attempts INTEGER NOT NULL,
    fallback INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_ts ON calls (ts);
CREATE INDEX IF NOT EXISTS calls_key_ts ON calls (key_id, ts);
"""
INSERT = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
# what budgets count against: the key, else the tenant (see ingress.tenants.Tenant.subject)
SUBJECT = "CASE WHEN key_id IS NOT NULL THEN 'key:' || key_id ELSE 'tenant:' || tenant END"


class LedgerDB:
    """One connection, used from worker threads one at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.executescript(SCHEMA)

    def insert(self, rows: Sequence[LedgerRow]) -> None:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                conn.executemany(INSERT, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return query(self._conn)

    def spend_since(self, since: float) -> dict[str, float]:
        """Spend per budget subject since ``since`` (unix seconds)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {SUBJECT}, SUM(cost_usd) FROM calls WHERE ts >= ? GROUP BY 1", (since,)
            ).fetchall()
        return {str(subject): float(total or 0.0) for subject, total in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def read_rows(path: str, where: str = "1", params: Sequence[object] = ()) -> list[LedgerRow]:
    """Rows straight from a ledger file, oldest first (for tools and tests)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM calls WHERE {where} ORDER BY id", params
        )
        return [typed_row(row) for row in cursor.fetchall()]
    finally:
        conn.close()


def typed_row(row: Sequence[object]) -> LedgerRow:
    values = dict(zip(COLUMNS, row, strict=True))
    for name in ("stream", "tokens_estimated", "fallback"):
        values[name] = bool(values[name])
    return LedgerRow(**values)  # type: ignore[arg-type]
