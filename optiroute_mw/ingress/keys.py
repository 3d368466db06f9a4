"""API keys: issued once, stored only as a hash, checked in constant time.

A key reads ``sk-or-<id>_<secret>``: the id finds the row, the whole key is hashed
and compared with :func:`hmac.compare_digest`.  The ``sk-`` prefix is on purpose:
the log redaction masks anything shaped like that.  Plain SHA-256 is enough here
because a key carries 256 random bits; a slow password hash would only cost CPU on
every request without making a guess any likelier.

The store is a small SQLite file shared by the sidecar, the CLI and the admin API.
The sidecar serves lookups from memory and notices writes by other processes (a
key created or revoked from the CLI) within ``refresh_s`` through SQLite's
``data_version``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable

import msgspec

from .tenants import Tenant

PREFIX = "sk-or-"
ID_LENGTH = 12
MODES = frozenset({"cost", "balanced", "quality", "speed"})
_DOMAIN = b"optiroute-mw/api-key/v1\x00"
# compared against when the id is unknown, so a miss costs what a hit costs
_DUMMY_HASH = hashlib.sha256(_DOMAIN).hexdigest()

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    rpm INTEGER,
    tpm INTEGER,
    budget_usd REAL,
    soft_budget_usd REAL,
    allowed_models TEXT,
    default_mode TEXT
)
"""
COLUMNS = (
    "id, hash, name, tenant, created_at, revoked_at, rpm, tpm, budget_usd, "
    "soft_budget_usd, allowed_models, default_mode"
)


class KeySpecError(ValueError):
    """A key could not be created as asked; the message says why."""


class KeyRecord(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    name: str
    tenant: str
    created_at: float
    revoked_at: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    soft_budget_usd: float | None = None
    allowed_models: list[str] | None = None
    default_mode: str | None = None
    hash: str = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def public(self) -> dict[str, object]:
        """Everything but the hash, for listings."""
        out = msgspec.structs.asdict(self)
        del out["hash"]
        out["prefix"] = f"{PREFIX}{self.id}_…"
        return out

    def tenant_view(self) -> Tenant:
        return Tenant(
            id=self.tenant,
            key_id=self.id,
            rpm=self.rpm,
            tpm=self.tpm,
            budget_usd=self.budget_usd,
            soft_budget_usd=self.soft_budget_usd,
            allowed_models=frozenset(self.allowed_models) if self.allowed_models else None,
            default_mode=self.default_mode,
        )


def hash_key(key: str) -> str:
    return hashlib.sha256(_DOMAIN + key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    if len(key) < len(PREFIX) + ID_LENGTH + 2 or not key.startswith(PREFIX):
        return None
    if key[len(PREFIX) + ID_LENGTH] != "_":
        return None
    return key[len(PREFIX) : len(PREFIX) + ID_LENGTH]


class KeyStore:
    def __init__(
        self, path: str, *, refresh_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.refresh_s = refresh_s
        self.clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._records: dict[str, KeyRecord] = {}
        self._version: int | None = None
        self._checked = float("-inf")

    # -- storage ---------------------------------------------------------------

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is None:
            if not create and not os.path.exists(self.path):
                return None  # no file, no keys: do not litter the data dir
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute(SCHEMA)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _load(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(f"SELECT {COLUMNS} FROM api_keys").fetchall()
        self._records = {row[0]: _record(row) for row in rows}
        self._version = conn.execute("PRAGMA data_version").fetchone()[0]

    def refresh(self, force: bool = False) -> None:
        """Pick up keys written by another process; cheap enough to call per request."""
        now = self.clock()
        if not force and now - self._checked < self.refresh_s:
            return
        self._checked = now
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if force or version != self._version:
                self._load(conn)

    # -- queries -----------------------------------------------------------------

    @property
    def has_keys(self) -> bool:
        """Any key ever issued, revoked ones included: revoking the last key does not
        quietly open the gateway to everyone."""
        return bool(self._records)

    def verify(self, presented: str) -> KeyRecord | None:
        """The record of a presented key (revoked ones too), or None if it is not ours."""
        self.refresh()
        key_id = key_id_of(presented)
        record = self._records.get(key_id) if key_id else None
        expected = record.hash if record is not None else _DUMMY_HASH
        if hmac.compare_digest(hash_key(presented), expected) and record is not None:
            return record
        return None

    def records(self, include_revoked: bool = True) -> list[KeyRecord]:
        self.refresh(force=True)
        records = sorted(self._records.values(), key=lambda r: (r.created_at, r.id))
        return [r for r in records if include_revoked or not r.revoked]

    def get(self, key_id: str) -> KeyRecord | None:
        self.refresh(force=True)
        return self._records.get(key_id)

    # -- changes -------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        tenant: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_usd: float | None = None,
        soft_budget_usd: float | None = None,
        allowed_models: Iterable[str] | None = None,
        default_mode: str | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key; the plaintext is returned here once and never stored."""
        models = sorted({m.strip() for m in allowed_models or () if m.strip()}) or None
        _check(name, rpm, tpm, budget_usd, soft_budget_usd, default_mode)
        key_id = secrets.token_hex(ID_LENGTH // 2)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = KeyRecord(
            id=key_id,
            name=name,
            tenant=tenant or name,
            created_at=time.time(),
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget_usd,
            soft_budget_usd=soft_budget_usd,
            allowed_models=models,
            default_mode=default_mode,
            hash=hash_key(key),
        )
        with self._lock:
            conn = self._connect(create=True)
            assert conn is not None
            conn.execute(
                f"INSERT INTO api_keys ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                _row(record),
            )
            self._load(conn)
        return key, record

    def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke a key (idempotent); None when there is no such key."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return None
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            self._load(conn)
            return self._records.get(key_id)


def _check(
    name: str,
    rpm: int | None,
    tpm: int | None,
    budget: float | None,
    soft: float | None,
    mode: str | None,
) -> None:
    if not name or len(name) > 100:
        raise KeySpecError("name must be 1 to 100 characters")
    for label, limit in (("rpm", rpm), ("tpm", tpm)):
        if limit is not None and limit < 1:
            raise KeySpecError(f"{label} must be a positive number")
    for label, amount in (("budget_usd", budget), ("soft_budget_usd", soft)):
        if amount is not None and not amount >= 0:
            raise KeySpecError(f"{label} must be zero or more (USD)")
    if mode is not None and mode not in MODES:
        raise KeySpecError(f"default_mode must be one of {sorted(MODES)}")


def _record(row: tuple[object, ...]) -> KeyRecord:
    fields = dict(zip([c.strip() for c in COLUMNS.split(",")], row, strict=True))
    models = fields["allowed_models"]
    fields["allowed_models"] = msgspec.json.decode(models) if isinstance(models, str) else None
    return msgspec.convert(fields, KeyRecord)


def _row(record: KeyRecord) -> tuple[object, ...]:
    models = msgspec.json.encode(record.allowed_models).decode() if record.allowed_models else None
    return (
        record.id,
        record.hash,
        record.name,
        record.tenant,
        record.created_at,
        record.revoked_at,
        record.rpm,
        record.tpm,
        record.budget_usd,
        record.soft_budget_usd,
        models,
        record.default_mode,
    )
