"""The CAs in the store: every generation of each, its certificate, its sealed key, its CRL."""
from __future__ import annotations

from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.clock import utcnow
from sync.pki.certs import Issuer, PrivateKey
from sync.store.keyring import MasterKey
from sync.store.models import Authority


def _key_context(name: str, generation: int) -> str:
    return f"authority:{name}:{generation}"


class Authorities:
    def __init__(self, session: Session, master_key: Callable[[], MasterKey]) -> None:
        self.session = session
        self._master_key = master_key

    def active(self, name: str) -> Authority | None:
        """The newest active generation of CA `name`."""
        return self.session.scalars(select(Authority).where(Authority.name == name, Authority.state == "active")
                                    .order_by(Authority.generation.desc())).first()

    def get(self, authority_id: int) -> Authority | None:
        return self.session.get(Authority, authority_id)

    def add(self, name: str, cert: x509.Certificate, key: PrivateKey, key_type: str,
            parent: Authority | None) -> Authority:
        generation = 1 + max((a.generation for a in self.session.scalars(
            select(Authority).where(Authority.name == name))), default=0)
        row = Authority(name=name, generation=generation, parent_id=parent.id if parent else None,
                        subject=cert.subject.rfc4514_string(), key_type=key_type,
                        serial=format(cert.serial_number, "x"), not_before=cert.not_valid_before_utc,
                        not_after=cert.not_valid_after_utc, cert_der=cert.public_bytes(serialization.Encoding.DER),
                        key_enc=self._master_key().seal_private_key(key, _key_context(name, generation)),
                        state="active", created_at=utcnow())
        self.session.add(row)
        self.session.flush()
        return row

    def issuer(self, authority: Authority, crl_url: str | None, ocsp_url: str | None) -> Issuer:
        """The CA as a signer: its certificate and its key, opened with the master key."""
        key = self._master_key().open_private_key(authority.key_enc,
                                                  _key_context(authority.name, authority.generation))
        return Issuer(authority.certificate, key, crl_url, ocsp_url)

    @staticmethod
    def chain(authority: Authority) -> tuple[list[x509.Certificate], x509.Certificate]:
        """(intermediates from `authority` upwards, root)."""
        certs = []
        node: Authority | None = authority
        while node is not None:
            certs.append(node.certificate)
            node = node.parent
        return certs[:-1], certs[-1]

    def record_crl(self, authority: Authority, number: int, crl_der: bytes) -> None:
        """Keep a newly signed CRL as the CA's current one."""
        authority.crl_number, authority.crl_der = number, crl_der

    def lock_for_crl(self, authority: Authority) -> None:
        """Hold the CA's row until the transaction ends and read it afresh (PostgreSQL: SELECT ...
        FOR UPDATE), so two publishers cannot both sign the same CRL number. SQLite has no row
        locks: there the transaction must be a serialized one (BEGIN IMMEDIATE, Store.transaction)."""
        self.session.refresh(authority, with_for_update=True)
