"""The certificate store: CAs, certificate versions, copies in the clouds, keys sealed at rest.

`Store` opens it; `store.transaction()` gives the repositories; `RunLock` keeps one writer at a
time. Nothing outside this package touches the tables."""

from sync.store.database import Store, Transaction, redact_url
from sync.store.discovery import Found, ScanSummary, Sighting
from sync.store.lock import RunLock
from sync.store.models import Authority, Certificate  # rows the repositories return: read, change via them

__all__ = [
    "Authority",
    "Certificate",
    "Found",
    "RunLock",
    "ScanSummary",
    "Sighting",
    "Store",
    "Transaction",
    "redact_url",
]
