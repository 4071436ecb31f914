"""Certificate versions in the store: every version of every certificate, its state and sealed key.

A new version is written through `new_version` (column values) and `add_many` (one multi-row
INSERT, predecessors superseded, integrity tags computed): the batch issuance and a CSR enrollment
take the same path. `bundle` (what is pushed and exported) checks the tags of the leaf and of
every CA certificate in its chain.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast
from collections.abc import Callable, Iterable, Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.orm import Session

from sync.clock import utcnow
from sync.pki.bundle import Bundle
from sync.pki.certs import PrivateKey, spki_sha256
from sync.errors import StoreError
from sync.store.authorities import Authorities
from sync.store.integrity import check_tag, signed_by
from sync.store.keyring import MasterKey
from sync.store.queries import chunks
from sync.store.models import Authority, Certificate, CompromisedKey


def key_context(name: str, version: int) -> str:
    """The associated data a version's key is sealed with: a blob copied to another row fails."""
    return f"certificate:{name}:{version}"


def tag_context(name: str, version: int, authority_id: int) -> str:
    """The row identity a version's certificate is tagged with (its issuer link included)."""
    return f"certificate:{name}:{version}:authority={authority_id}"


class Certificates:
    def __init__(
        self, session: Session, master_key: Callable[[], MasterKey], authorities: Authorities | None = None
    ) -> None:
        self.session = session
        self._master_key = master_key
        self._authorities = authorities or Authorities(session, master_key)

    # -- reading -----------------------------------------------------------------------------------
    def current(self, name: str) -> Certificate | None:
        """The newest version in force (active), if any."""
        return self.session.scalars(
            select(Certificate)
            .where(Certificate.name == name, Certificate.state == "active")
            .order_by(Certificate.version.desc())
        ).first()

    def current_enrollments(self) -> list[Certificate]:
        """The newest active version of every CSR enrollment (certificates whose key the client holds)."""
        rows = self.session.scalars(
            select(Certificate)
            .where(Certificate.source == "csr", Certificate.state == "active")
            .order_by(Certificate.name, Certificate.version.desc())
        )
        newest: dict[str, Certificate] = {}
        for row in rows:
            newest.setdefault(row.name, row)
        return list(newest.values())

    def current_many(self, names: Iterable[str]) -> dict[str, Certificate]:
        """`current` for many names, one query per 500: name -> newest active version."""
        found: dict[str, Certificate] = {}
        for chunk in chunks(names):
            for row in self.session.scalars(
                select(Certificate)
                .where(Certificate.name.in_(chunk), Certificate.state == "active")
                .order_by(Certificate.name, Certificate.version.desc())
            ):
                found.setdefault(row.name, row)
        return found

    def versions_of(self, name: str) -> list[Certificate]:
        """Every version of one certificate, newest first."""
        return list(
            self.session.scalars(
                select(Certificate).where(Certificate.name == name).order_by(Certificate.version.desc())
            )
        )

    def _newest(self):
        return (
            select(Certificate.name, func.max(Certificate.version).label("version"))
            .group_by(Certificate.name)
            .subquery()
        )

    def latest_versions(self) -> list[Certificate]:
        """The newest version of every certificate, by name: one query, older versions not loaded."""
        newest = self._newest()
        return list(
            self.session.scalars(
                select(Certificate)
                .join(newest, (Certificate.name == newest.c.name) & (Certificate.version == newest.c.version))
                .order_by(Certificate.name)
            )
        )

    def latest_summaries(self):
        """The newest version of every certificate, by name, as plain rows (no ORM objects, no DER,
        no key): id, name, version, state, serial, profile, ca (the authority's name), not_before,
        not_after. What `certsync list` and the dashboard show, quick at thousands of rows."""
        newest = self._newest()
        return self.session.execute(
            select(
                Certificate.id,
                Certificate.name,
                Certificate.version,
                Certificate.state,
                Certificate.serial,
                Certificate.profile,
                Authority.name.label("ca"),
                Certificate.not_before,
                Certificate.not_after,
            )
            .join(newest, (Certificate.name == newest.c.name) & (Certificate.version == newest.c.version))
            .join(Authority, Authority.id == Certificate.authority_id)
            .order_by(Certificate.name)
        ).all()

    def latest_page(
        self,
        profile: str,
        *,
        after: str | None = None,
        limit: int = 100,
        state: str | None = None,
        expiring_before: datetime | None = None,
    ) -> list[Certificate]:
        """The newest version of each certificate of `profile`, by name after `after` (keyset
        paging: stable while certificates are added), at most `limit`, optionally only in `state`
        or ending before `expiring_before`."""
        newest = self._newest()
        query = (
            select(Certificate)
            .join(newest, (Certificate.name == newest.c.name) & (Certificate.version == newest.c.version))
            .where(Certificate.profile == profile)
            .order_by(Certificate.name)
            .limit(limit)
        )
        if after is not None:
            query = query.where(Certificate.name > after)
        if state is not None:
            query = query.where(Certificate.state == state)
        if expiring_before is not None:
            query = query.where(Certificate.not_after <= expiring_before)
        return list(self.session.scalars(query))

    def latest_facts(self, *, chunk: int = 1000):
        """What a plan needs of the newest version of every certificate, by name, streamed in
        chunks as plain rows (no ORM objects, no key material): name, version, state, source,
        authority_id, sans, key_type, not_before, not_after, cert_der, has_key."""
        newest = self._newest()
        stmt = (
            select(
                Certificate.name,
                Certificate.version,
                Certificate.state,
                Certificate.source,
                Certificate.authority_id,
                Certificate.sans,
                Certificate.key_type,
                Certificate.not_before,
                Certificate.not_after,
                Certificate.cert_der,
                Certificate.key_enc.is_not(None).label("has_key"),
            )
            .join(newest, (Certificate.name == newest.c.name) & (Certificate.version == newest.c.version))
            .order_by(Certificate.name)
        )
        return self.session.execute(stmt.execution_options(yield_per=chunk))

    def csr_names(self) -> set[str]:
        """Certificates whose newest version is a CSR enrollment (one query)."""
        newest = self._newest()
        return set(
            self.session.scalars(
                select(Certificate.name)
                .join(newest, (Certificate.name == newest.c.name) & (Certificate.version == newest.c.version))
                .where(Certificate.source == "csr")
            )
        )

    def version_numbers(self, names: Iterable[str]) -> dict[str, int]:
        """Highest version number (any state) per name, for the names that have one."""
        found: dict[str, int] = {}
        for chunk in chunks(names):
            found.update(
                self.session.execute(
                    select(Certificate.name, func.max(Certificate.version))
                    .where(Certificate.name.in_(chunk))
                    .group_by(Certificate.name)
                ).all()
            )
        return found

    def version_index(self) -> Iterator[tuple[int, str, int, str]]:
        """(id, name, version, state) of every version: plain rows, no certificates parsed."""
        yield from self.session.execute(
            select(Certificate.id, Certificate.name, Certificate.version, Certificate.state)
        )

    def lock_name(self, name: str) -> None:
        """Hold `name` until the transaction ends, so that two enrollments of one name (two server
        replicas, EST re-enrollment racing a REST renewal) number their versions one after the other
        instead of colliding. PostgreSQL: a transaction-scoped advisory lock on the name's hash;
        SQLite: nothing to do in a serialized transaction (BEGIN IMMEDIATE already holds the database)."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 7411))"), {"name": name})

    def by_serial(self, serial: int) -> Certificate | None:
        return self.session.scalars(select(Certificate).where(Certificate.serial == format(serial, "x"))).first()

    def revoked_by(self, authority: Authority, now: datetime) -> list[Certificate]:
        """Revoked certificates of one CA that have not expired yet (expired ones leave the CRL)."""
        return list(
            self.session.scalars(
                select(Certificate)
                .where(
                    Certificate.authority_id == authority.id,
                    Certificate.state == "revoked",
                    Certificate.not_after > now,
                )
                .order_by(Certificate.id)
            )
        )

    # -- keys and bundles --------------------------------------------------------------------------
    def private_key(self, row: Certificate) -> PrivateKey | None:
        if row.key_enc is None:
            return None
        return self._master_key().open_private_key(row.key_enc, key_context(row.name, row.version))

    def seal_keys(self, keys: Iterable[tuple[PrivateKey, str, int]]) -> list[bytes]:
        """Seal many (key, name, version) at once."""
        return self._master_key().seal_private_keys((key, key_context(name, version)) for key, name, version in keys)

    def bundle(self, row: Certificate) -> Bundle:
        """What a payload is rendered from: leaf, key (opened), intermediates, root; each
        certificate's integrity tag checked (StoreError, one line, if one does not match)."""
        leaf = self.checked(row)
        intermediates, root = self._authorities.checked_chain(row.authority)
        return Bundle(row.name, row.version, leaf, self.private_key(row), intermediates, root)

    def checked(self, row: Certificate) -> x509.Certificate:
        """The version's certificate once its integrity tag matches. A row from before the tags
        (revision 0004) is tagged here if its certificate has the row's serial and is signed by
        its (checked) CA; otherwise it is refused."""
        what = f"certificate {row.name!r} version {row.version}"

        def genuine(cert: x509.Certificate) -> bool:
            issuer = self._authorities.checked(row.authority)  # the CA first: its refusal names it
            return format(cert.serial_number, "x") == row.serial and signed_by(cert, issuer)

        return check_tag(row, what, tag_context(row.name, row.version, row.authority_id), self._master_key(), genuine)

    def reseal(self, new: MasterKey, *, chunk: int = 500) -> int:
        """Master key rotation: every version's key sealed again and its certificate re-tagged
        under `new`. Tagged rows are checked under the current key first (an altered row stops
        the rotation); untagged ones stay untagged and are checked at first use, as before."""
        old = self._master_key()
        ids = list(self.session.scalars(select(Certificate.id).order_by(Certificate.id)))
        for part in chunks(ids, chunk):
            for row in self.session.scalars(select(Certificate).where(Certificate.id.in_(part))):
                if row.cert_tag is not None:
                    self.checked(row)
                    row.cert_tag = new.tag(row.cert_der, tag_context(row.name, row.version, row.authority_id))
                if row.key_enc is not None:
                    row.key_enc = old.reseal(row.key_enc, key_context(row.name, row.version), new)
            self.session.flush()
        return len(ids)

    def tag_untagged(self, *, chunk: int = 500) -> list[str]:
        """Tag every version from before the tags that checks (see `checked`); the refusals, one line each."""
        refused = []
        ids = list(
            self.session.scalars(select(Certificate.id).where(Certificate.cert_tag.is_(None)).order_by(Certificate.id))
        )
        for part in chunks(ids, chunk):
            for row in self.session.scalars(select(Certificate).where(Certificate.id.in_(part))):
                try:
                    self.checked(row)
                except StoreError as exc:
                    refused.append(str(exc))
            self.session.flush()
        return refused

    # -- writing -----------------------------------------------------------------------------------
    @staticmethod
    def new_version(
        *,
        name: str,
        version: int,
        profile: str,
        authority_id: int,
        cert: x509.Certificate,
        key_type: str,
        sans: list[str],
        key_enc: bytes | None = None,
        source: str = "config",
        common_name: str | None = None,
    ) -> dict:
        """The column values of a new active version (for add_many)."""
        return dict(
            name=name,
            version=version,
            profile=profile,
            authority_id=authority_id,
            serial=format(cert.serial_number, "x"),
            common_name=common_name,
            sans=sans,
            key_type=key_type,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            state="active",
            cert_der=cert.public_bytes(serialization.Encoding.DER),
            key_enc=key_enc,
            source=source,
            created_at=utcnow(),
            revoked_at=None,
            revocation_reason=None,
        )

    def add_many(self, values: list[dict]) -> None:
        """Record many new versions (distinct names) in this transaction: their active versions
        become superseded, then one multi-row INSERT. A version 1 has no predecessor."""
        successors = [v["name"] for v in values if v["version"] > 1]
        for chunk in chunks(successors):
            self.session.execute(
                update(Certificate)
                .where(Certificate.name.in_(chunk), Certificate.state == "active")
                .values(state="superseded")
                .execution_options(synchronize_session=False)
            )
        if values:
            tag = self._master_key().tag
            for v in values:
                v["cert_tag"] = tag(v["cert_der"], tag_context(v["name"], v["version"], v["authority_id"]))
            self.session.execute(insert(cast(Table, Certificate.__table__)), values)  # Core: one executemany

    def revoke(self, row: Certificate, reason: str, at: datetime) -> None:
        row.state, row.revoked_at, row.revocation_reason = "revoked", at, reason
        self.session.flush()

    # -- compromised keys --------------------------------------------------------------------------
    def compromised(self, spki_hash: str) -> CompromisedKey | None:
        """The record of a key revoked for keyCompromise, by the SHA-256 of its SPKI."""
        return self.session.get(CompromisedKey, spki_hash)

    def is_compromised(self, spki_hash: str) -> bool:
        return self.compromised(spki_hash) is not None

    def compromised_among(self, spki_hashes: Iterable[str]) -> set[str]:
        """Which of these keys are recorded as compromised (one query per 500)."""
        found: set[str] = set()
        for chunk in chunks(spki_hashes):
            found.update(
                self.session.scalars(select(CompromisedKey.spki_sha256).where(CompromisedKey.spki_sha256.in_(chunk)))
            )
        return found

    def record_compromised(self, spki_hash: str, reason: str, at: datetime, row: Certificate) -> None:
        """Keep the key as compromised (the first record stays when it is found again)."""
        if self.compromised(spki_hash) is None:
            self.session.add(
                CompromisedKey(
                    spki_sha256=spki_hash, reason=reason, compromised_at=at, cert_name=row.name, serial=row.serial
                )
            )
            self.session.flush()

    def holding_key(self, spki_hash: str, now: datetime, *, chunk: int = 1000) -> list[Certificate]:
        """Every unexpired, unrevoked version of any certificate whose public key is this one
        (a key reused across versions, or enrolled under another name through a CSR)."""
        ids = [
            row.id
            for row in self.session.execute(
                select(Certificate.id, Certificate.cert_der)
                .where(Certificate.state != "revoked", Certificate.not_after > now)
                .execution_options(yield_per=chunk)
            )
            if spki_sha256(x509.load_der_x509_certificate(row.cert_der).public_key()) == spki_hash
        ]
        found: list[Certificate] = []
        for part in chunks(ids):
            found.extend(
                self.session.scalars(
                    select(Certificate).where(Certificate.id.in_(part)).order_by(Certificate.name, Certificate.version)
                )
            )
        return found

    def retire(self, name: str) -> None:
        """The active version of a certificate removed everywhere becomes retired (history stays)."""
        self.retire_many([name])

    def retire_many(self, names: Iterable[str]) -> None:
        """`retire` for many names: one UPDATE per 500 (only active versions are retired)."""
        for chunk in chunks(names):
            self.session.execute(
                update(Certificate)
                .where(Certificate.name.in_(chunk), Certificate.state == "active")
                .values(state="retired")
                .execution_options(synchronize_session=False)
            )

    def expiring_facts(self, horizon: datetime):
        """The newest version of each certificate when it is active and ends by `horizon`, as plain
        rows (name, state, version, not_after): one query, no certificate or key loaded."""
        newest = self._newest()
        return self.session.execute(
            select(Certificate.name, Certificate.state, Certificate.version, Certificate.not_after)
            .join(newest, (Certificate.name == newest.c.name) & (Certificate.version == newest.c.version))
            .where(Certificate.state == "active", Certificate.not_after <= horizon)
            .order_by(Certificate.name)
        ).all()
