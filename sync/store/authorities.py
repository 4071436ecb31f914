"""The CAs in the store: every generation of each, its certificate, its sealed key, its CRL.

A CA's certificate carries an integrity tag (keyring.MasterKey.tag) bound to the row: name,
generation and parent. It is checked wherever the certificate goes out with or next to a private
key (a chain pushed or exported, a CA signing), that is, where the master key is loaded anyway;
reading for plan, list and metrics needs no key and checks nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.clock import utcnow
from sync.errors import StoreError
from sync.pki.certs import Issuer, PrivateKey
from sync.store.integrity import check_tag, signed_by
from sync.store.keyring import MasterKey
from sync.store.models import Authority


def _key_context(name: str, generation: int) -> str:
    return f"authority:{name}:{generation}"


def _tag_context(name: str, generation: int, parent_id: int | None) -> str:
    return f"authority:{name}:{generation}:parent={parent_id or ''}"


class Authorities:
    def __init__(self, session: Session, master_key: Callable[[], MasterKey]) -> None:
        self.session = session
        self._master_key = master_key
        self._checked: set[int] = set()  # ids whose tag was checked in this transaction

    def active(self, name: str) -> Authority | None:
        """The newest active generation of CA `name`."""
        return self.session.scalars(
            select(Authority)
            .where(Authority.name == name, Authority.state == "active")
            .order_by(Authority.generation.desc())
        ).first()

    def all(self) -> list[Authority]:
        """Every CA generation the store holds (facts only: no key opened, no tag checked)."""
        return list(self.session.scalars(select(Authority).order_by(Authority.id)))

    def get(self, authority_id: int) -> Authority | None:
        return self.session.get(Authority, authority_id)

    def add(
        self, name: str, cert: x509.Certificate, key: PrivateKey, key_type: str, parent: Authority | None
    ) -> Authority:
        generation = 1 + max(
            (a.generation for a in self.session.scalars(select(Authority).where(Authority.name == name))), default=0
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        parent_id = parent.id if parent else None
        master_key = self._master_key()
        row = Authority(
            name=name,
            generation=generation,
            parent_id=parent_id,
            subject=cert.subject.rfc4514_string(),
            key_type=key_type,
            serial=format(cert.serial_number, "x"),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            cert_der=der,
            cert_tag=master_key.tag(der, _tag_context(name, generation, parent_id)),
            key_enc=master_key.seal_private_key(key, _key_context(name, generation)),
            state="active",
            created_at=utcnow(),
        )
        self.session.add(row)
        self.session.flush()
        self._checked.add(row.id)
        return row

    def _open_key(self, authority: Authority) -> PrivateKey:
        return self._master_key().open_private_key(
            authority.key_enc, _key_context(authority.name, authority.generation)
        )

    def issuer(self, authority: Authority, crl_url: str | None, ocsp_url: str | None) -> Issuer:
        """The CA as a signer: its certificate (integrity checked) and its key, opened with the master key."""
        return Issuer(self.checked(authority), self._open_key(authority), crl_url, ocsp_url)

    def checked(self, authority: Authority) -> x509.Certificate:
        """The CA's certificate once its integrity tag matches; StoreError (one line) if not.
        A row from before the tags (revision 0004) is tagged here if its certificate carries the
        public key of its sealed private key and is signed by its (checked) parent, or by itself
        for a root; otherwise it is refused."""
        what = f"CA {authority.name!r} generation {authority.generation}"
        if authority.id in self._checked:
            return authority.certificate

        def genuine(cert: x509.Certificate) -> bool:
            issuer = self.checked(authority.parent) if authority.parent is not None else cert
            return cert.public_key() == self._open_key(authority).public_key() and signed_by(cert, issuer)

        cert = check_tag(
            authority,
            what,
            _tag_context(authority.name, authority.generation, authority.parent_id),
            self._master_key(),
            genuine,
        )
        self._checked.add(authority.id)
        return cert

    def reseal(self, new: MasterKey) -> int:
        """Master key rotation: every CA's key sealed again and its certificate re-tagged under
        `new`, each checked under the current key first (an altered row stops the rotation)."""
        old = self._master_key()
        rows = list(self.session.scalars(select(Authority).order_by(Authority.id)))
        for row in rows:
            self.checked(row)
            row.key_enc = old.reseal(row.key_enc, _key_context(row.name, row.generation), new)
            row.cert_tag = new.tag(row.cert_der, _tag_context(row.name, row.generation, row.parent_id))
        return len(rows)

    def tag_untagged(self) -> list[str]:
        """Tag every CA row from before the tags that checks (see `checked`); the refusals, one line each."""
        refused = []
        for row in self.session.scalars(select(Authority).where(Authority.cert_tag.is_(None)).order_by(Authority.id)):
            try:
                self.checked(row)
            except StoreError as exc:
                refused.append(str(exc))
        return refused

    @staticmethod
    def chain(authority: Authority) -> tuple[list[x509.Certificate], x509.Certificate]:
        """(intermediates from `authority` upwards, root), unchecked: for fingerprints in a plan,
        which runs without the master key. What goes out uses `checked_chain`."""
        certs = []
        node: Authority | None = authority
        while node is not None:
            certs.append(node.certificate)
            node = node.parent
        return certs[:-1], certs[-1]

    def checked_chain(self, authority: Authority) -> tuple[list[x509.Certificate], x509.Certificate]:
        """`chain` with every certificate's integrity tag checked (StoreError if one does not match)."""
        certs = []
        node: Authority | None = authority
        while node is not None:
            certs.append(self.checked(node))
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
