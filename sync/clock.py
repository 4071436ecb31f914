"""Time as certsync reads and writes it: aware UTC datetimes inside, RFC 3339 at the edges."""

from __future__ import annotations

from datetime import datetime, UTC

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """2026-12-01T21:48:18Z: whole seconds, UTC, the form every document and label uses."""
    return moment.astimezone(UTC).strftime(RFC3339)


def parse_rfc3339(text: str) -> datetime:
    return datetime.strptime(text, RFC3339).replace(tzinfo=UTC)
