"""API tokens of `certsync serve`: created once (the secret is shown then, and only its SHA-256
kept), looked up by that hash, revoked by name. A token is bound to one profile and a set of scopes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.errors import UsageError
from sync.store.models import ApiToken

PREFIX = "cst_"  # recognisable in a leak scanner; the rest is 256 random bits


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """A token's stored form. A plain SHA-256 is enough: the secret is 256 random bits, not a password."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Tokens:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(
        self, name: str, profile: str, scopes: list[str], now: datetime, expires_at: datetime | None
    ) -> tuple[ApiToken, str]:
        """(the row, the secret): the secret is returned this once and never stored."""
        if self.by_name(name) is not None:
            raise UsageError(f"token {name!r} exists (revoke it first, or choose another name)")
        secret = new_secret()
        row = ApiToken(
            name=name,
            secret_sha256=digest(secret),
            profile=profile,
            scopes=sorted(set(scopes)),
            created_at=now,
            expires_at=expires_at,
        )
        self.session.add(row)
        self.session.flush()
        return row, secret

    def by_name(self, name: str) -> ApiToken | None:
        return self.session.scalar(select(ApiToken).where(ApiToken.name == name))

    def by_secret(self, secret: str) -> ApiToken | None:
        """The token row whose secret this is (usable or not: the caller checks and says why)."""
        if not secret.startswith(PREFIX) or len(secret) > 256:
            return None
        return self.session.scalar(select(ApiToken).where(ApiToken.secret_sha256 == digest(secret)))

    def all(self) -> list[ApiToken]:
        return list(self.session.scalars(select(ApiToken).order_by(ApiToken.name)))

    def revoke(self, name: str, now: datetime) -> ApiToken:
        row = self.by_name(name)
        if row is None:
            raise UsageError(f"no token named {name!r}")
        if row.revoked_at is None:
            row.revoked_at = now
        return row

    def touch(self, row: ApiToken, now: datetime) -> None:
        row.last_used_at = now
