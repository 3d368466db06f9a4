"""``optiroute-mw keys create|list|revoke``: API keys from the command line.

It works on the same SQLite key file as the sidecar (``OPTIROUTE_KEYS_DB``); a
running sidecar sees the change within a second.  The new key is printed once.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from ..settings import Settings
from .keys import MODES, KeyRecord, KeySpecError, KeyStore


def add_keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    keys.set_defaults(host=None, port=None)  # the serve options main() reads
    actions = keys.add_subparsers(dest="keys_command", required=True)

    create = actions.add_parser("create", help="issue a key (printed once, stored as a hash)")
    create.add_argument("name", help="a label for the key")
    create.add_argument("--tenant", help="tenant id for logs and the ledger (default: the name)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--budget", type=float, help="hard monthly budget, USD (402 above it)")
    create.add_argument(
        "--soft-budget", type=float, help="soft monthly budget, USD (mode 'cost' above it)"
    )
    create.add_argument("--models", help="comma-separated models it may request ('auto' too)")
    create.add_argument("--mode", choices=sorted(MODES), help="default routing mode")
    create.add_argument("--json", action="store_true", help="print JSON")

    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--active", action="store_true", help="leave revoked keys out")
    listing.add_argument("--json", action="store_true", help="print JSON")

    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")


def run_keys(args: argparse.Namespace, settings: Settings) -> int:
    store = KeyStore(settings.data_file(settings.keys_db, "keys.db"))
    try:
        if args.keys_command == "create":
            return _create(store, args)
        if args.keys_command == "list":
            return _list(store, args)
        record = store.revoke(args.key_id)
        if record is None:
            print(f"optiroute-mw: no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {record.id} ({record.name})")
        return 0
    finally:
        store.close()


def _create(store: KeyStore, args: argparse.Namespace) -> int:
    try:
        key, record = store.create(
            args.name,
            tenant=args.tenant,
            rpm=args.rpm,
            tpm=args.tpm,
            budget_usd=args.budget,
            soft_budget_usd=args.soft_budget,
            allowed_models=args.models.split(",") if args.models else None,
            default_mode=args.mode,
        )
    except KeySpecError as exc:
        print(f"optiroute-mw: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"key": key, **record.public()}))
    else:
        print(f"created key {record.id} for tenant {record.tenant!r}; it is shown only once:")
        print(key)
    return 0


def _list(store: KeyStore, args: argparse.Namespace) -> int:
    records = store.records(include_revoked=not args.active)
    if args.json:
        print(json.dumps([r.public() for r in records]))
        return 0
    print(f"{'id':<12}  {'name':<16}  {'tenant':<16}  {'status':<7}  {'created (UTC)':<16}  limits")
    for r in records:
        print(
            f"{r.id:<12}  {r.name[:16]:<16}  {r.tenant[:16]:<16}  "
            f"{'revoked' if r.revoked else 'active':<7}  {_when(r.created_at):<16}  {_limits(r)}"
        )
    return 0


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _limits(r: KeyRecord) -> str:
    parts = [
        f"{label}={value}"
        for label, value in (
            ("rpm", r.rpm),
            ("tpm", r.tpm),
            ("budget", r.budget_usd),
            ("soft", r.soft_budget_usd),
            ("mode", r.default_mode),
            ("models", ",".join(r.allowed_models or ()) or None),
        )
        if value is not None
    ]
    return " ".join(parts) or "-"
