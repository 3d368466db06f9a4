"""The cost ledger: one row per call, written off the request path, and its analytics."""

from .store import LedgerDB, LedgerRow
from .writer import Ledger

__all__ = ["Ledger", "LedgerDB", "LedgerRow"]
