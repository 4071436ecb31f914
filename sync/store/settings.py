"""Small named values the store keeps: the master key's verifier, when an alert was last sent."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from sync.store.queries import chunks

from sync.store.models import Setting


class Settings:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key: str) -> bytes | None:
        row = self.session.get(Setting, key)
        return row.value if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of those keys that are set: one query per 500 keys."""
        found: dict[str, bytes] = {}
        for chunk in chunks(keys):
            found.update(self.session.execute(select(Setting.key, Setting.value).where(Setting.key.in_(chunk))).all())
        return found

    def put(self, key: str, value: bytes) -> None:
        self.session.merge(Setting(key=key, value=value))

    def put_many(self, values: dict[str, bytes]) -> None:
        """Set many keys: one query per 500 to find those that exist, then one UPDATE or INSERT
        per kind (executemany)."""
        if not values:
            return
        existing = set(self.get_many(values))
        fresh = [{"key": k, "value": v} for k, v in values.items() if k not in existing]
        if fresh:
            self.session.execute(insert(Setting), fresh)
        changed = [{"key": k, "value": v} for k, v in values.items() if k in existing]
        if changed:
            self.session.execute(update(Setting), changed)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Unset those keys (absent ones are no error): one query per 500."""
        for chunk in chunks(keys):
            self.session.execute(delete(Setting).where(Setting.key.in_(chunk)))
