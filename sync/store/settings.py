"""Small named values the store keeps: the master key's verifier, when an alert was last sent."""
from __future__ import annotations

from sqlalchemy.orm import Session

from sync.store.models import Setting


class Settings:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, key: str) -> bytes | None:
        row = self.session.get(Setting, key)
        return row.value if row else None

    def put(self, key: str, value: bytes) -> None:
        self.session.merge(Setting(key=key, value=value))
