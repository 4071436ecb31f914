"""ACME state in the store (revision 0007): accounts, orders, authorizations, challenges, nonces
and External Account Binding keys. Everything a request needs lives here, not in a server
process, so any replica on the same store can answer any step of an order."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, cast
from collections.abc import Callable

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from sync.errors import UsageError
from sync.store.keyring import MasterKey
from sync.store.models import AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeEabKey, AcmeNonce, AcmeOrder

EAB_KEY_BYTES = 32


def new_id() -> str:
    return secrets.token_urlsafe(16)  # 128 random bits: URLs are not guessable


def eab_context(kid: str) -> str:
    return f"acme-eab:{kid}"


class Acme:
    def __init__(self, session: Session, master_key: Callable[[], MasterKey]) -> None:
        self.session = session
        self._master_key = master_key

    # -- nonces --------------------------------------------------------------------------------------
    def new_nonce(self, now: datetime, lifetime: timedelta) -> str:
        value = secrets.token_urlsafe(24)
        self.session.add(AcmeNonce(value=value, expires_at=now + lifetime))
        if secrets.randbelow(64) == 0:  # now and then, forget the nonces nobody used
            self.session.execute(delete(AcmeNonce).where(AcmeNonce.expires_at < now))
        return value

    def use_nonce(self, value: str, now: datetime) -> bool:
        """True once per issued, unexpired nonce: the DELETE is the claim, so two replicas racing
        on one nonce cannot both see a row."""
        if not value or len(value) > 64:
            return False
        statement = delete(AcmeNonce).where(AcmeNonce.value == value, AcmeNonce.expires_at > now)
        result = cast("CursorResult[Any]", self.session.execute(statement))  # DML: a CursorResult
        return result.rowcount == 1

    # -- accounts ------------------------------------------------------------------------------------
    def account(self, account_id: str) -> AcmeAccount | None:
        return self.session.get(AcmeAccount, account_id)

    def account_by_thumbprint(self, thumbprint: str) -> AcmeAccount | None:
        return self.session.scalar(select(AcmeAccount).where(AcmeAccount.thumbprint == thumbprint))

    def add_account(
        self, *, profile: str, thumbprint: str, jwk: dict, contact: list, eab_kid: str | None, now: datetime
    ) -> AcmeAccount:
        row = AcmeAccount(
            id=new_id(),
            profile=profile,
            thumbprint=thumbprint,
            jwk=jwk,
            status="valid",
            contact=contact,
            eab_kid=eab_kid,
            created_at=now,
        )
        self.session.add(row)
        self.session.flush()
        return row

    def orders_of(self, account_id: str) -> list[AcmeOrder]:
        return list(
            self.session.scalars(
                select(AcmeOrder).where(AcmeOrder.account_id == account_id).order_by(AcmeOrder.created_at)
            )
        )

    # -- orders, authorizations, challenges ----------------------------------------------------------
    def add_order(
        self, *, account_id: str, profile: str, identifiers: list[str], expires_at: datetime, now: datetime
    ) -> AcmeOrder:
        """The order, one authorization per name, and its challenges (http-01 and dns-01; a
        wildcard only dns-01, RFC 8555 7.1.3)."""
        order = AcmeOrder(
            id=new_id(),
            account_id=account_id,
            profile=profile,
            status="pending",
            identifiers=identifiers,
            expires_at=expires_at,
            created_at=now,
        )
        self.session.add(order)
        self.session.flush()
        for name in identifiers:
            wildcard = name.startswith("*.")
            authz = AcmeAuthorization(
                id=new_id(),
                order_id=order.id,
                identifier=name.removeprefix("*."),
                wildcard=wildcard,
                status="pending",
                expires_at=expires_at,
            )
            self.session.add(authz)
            self.session.flush()
            for kind in ("dns-01",) if wildcard else ("http-01", "dns-01"):
                self.session.add(
                    AcmeChallenge(
                        id=new_id(), authz_id=authz.id, type=kind, token=secrets.token_urlsafe(32), status="pending"
                    )
                )
        self.session.flush()
        return order

    def order(self, order_id: str, *, for_update: bool = False) -> AcmeOrder | None:
        query = select(AcmeOrder).where(AcmeOrder.id == order_id)
        return self.session.scalar(query.with_for_update() if for_update else query)

    def order_by_serial(self, serial: str) -> AcmeOrder | None:
        return self.session.scalar(select(AcmeOrder).where(AcmeOrder.certificate_serial == serial))

    def authorizations(self, order_id: str) -> list[AcmeAuthorization]:
        return list(
            self.session.scalars(
                select(AcmeAuthorization)
                .where(AcmeAuthorization.order_id == order_id)
                .order_by(AcmeAuthorization.identifier, AcmeAuthorization.id)
            )
        )

    def authorization(self, authz_id: str, *, for_update: bool = False) -> AcmeAuthorization | None:
        query = select(AcmeAuthorization).where(AcmeAuthorization.id == authz_id)
        return self.session.scalar(query.with_for_update() if for_update else query)

    def challenges(self, authz_id: str) -> list[AcmeChallenge]:
        return list(
            self.session.scalars(
                select(AcmeChallenge).where(AcmeChallenge.authz_id == authz_id).order_by(AcmeChallenge.type)
            )
        )

    def challenge(self, challenge_id: str, *, for_update: bool = False) -> AcmeChallenge | None:
        query = select(AcmeChallenge).where(AcmeChallenge.id == challenge_id)
        return self.session.scalar(query.with_for_update() if for_update else query)

    # -- External Account Binding keys ---------------------------------------------------------------
    def create_eab(self, kid: str, profile: str, now: datetime) -> bytes:
        """A new MAC key, returned this once; the store keeps it sealed under the master key."""
        if self.session.get(AcmeEabKey, kid) is not None:
            raise UsageError(f"EAB key id {kid!r} exists (choose another)")
        key = secrets.token_bytes(EAB_KEY_BYTES)
        self.session.add(
            AcmeEabKey(
                kid=kid, profile=profile, created_at=now, key_enc=self._master_key().encrypt(key, eab_context(kid))
            )
        )
        self.session.flush()
        return key

    def eab(self, kid: str) -> tuple[AcmeEabKey, bytes] | None:
        """(row, MAC key) for a key id, or None."""
        row = self.session.get(AcmeEabKey, kid) if kid and len(kid) <= 63 else None
        if row is None:
            return None
        return row, self._master_key().decrypt(row.key_enc, eab_context(kid))

    def eab_keys(self) -> list[AcmeEabKey]:
        return list(self.session.scalars(select(AcmeEabKey).order_by(AcmeEabKey.kid)))

    def reseal(self, new: MasterKey) -> int:
        """Seal every EAB key again under `new` (master key rotation)."""
        rows = self.eab_keys()
        for row in rows:
            row.key_enc = self._master_key().reseal(row.key_enc, eab_context(row.kid), new)
        return len(rows)
