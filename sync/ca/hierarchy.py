"""The configured CA hierarchy in the store: creating CAs (parents first) and signing with them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509

from sync.errors import ConfigError, StoreError
from sync.pki import certs, policy
from sync.store import Authority, Transaction

if TYPE_CHECKING:
    from sync.config import Config


@dataclass(frozen=True)
class CAStatus:
    name: str
    created: bool
    subject: str
    not_after: datetime


def init_cas(config: Config, tx: Transaction, now: datetime) -> list[CAStatus]:
    """Create every configured CA that the store does not have yet, parents first (idempotent)."""
    statuses: list[CAStatus] = []
    for name in parents_first(config):
        existing = tx.authorities.active(name)
        if existing is not None:
            statuses.append(CAStatus(name, False, existing.subject, existing.not_after))
            continue
        row = _create(config, tx, name, now)
        statuses.append(CAStatus(name, True, row.subject, row.not_after))
    return statuses


def parents_first(config: Config) -> list[str]:
    ordered: list[str] = []
    for name in config.ca:
        for ancestor in reversed(config.chain_of(name)):
            if ancestor not in ordered:
                ordered.append(ancestor)
    return ordered


def _create(config: Config, tx: Transaction, name: str, now: datetime) -> Authority:
    spec = config.ca[name]
    parent_row = tx.authorities.active(spec.parent) if spec.parent else None
    parent = None
    if parent_row is not None and spec.parent is not None:
        parent = tx.authorities.issuer(parent_row, config.crl_url_of(spec.parent), config.ocsp_url_of(spec.parent))
    if parent_row is not None:
        _check_room_below(config, parent_row, name)
    key = certs.generate_key(spec.key)
    cert = certs.create_ca(
        spec.subject,
        key,
        spec.validity,
        parent=parent,
        path_length=config.path_length_of(name),
        name_constraints=spec.name_constraints.extension() if spec.name_constraints else None,
        now=now,
    )
    return tx.authorities.add(name, cert, key, spec.key, parent_row)


def _check_room_below(config: Config, parent_row: Authority, name: str) -> None:
    """CAs made earlier with a smaller pathLen (an older hierarchy) cannot take this CA below them."""
    needed = config.levels_below(name)[0] + 1  # this CA and the deepest chain declared below it
    row: Authority | None = parent_row
    while row is not None:
        limit = row.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        if limit is not None and limit < needed:
            level = f"{needed} CA level{'s' if needed > 1 else ''}"
            raise ConfigError(
                f"ca.{name}: cannot be created under {config.ca[name].parent!r}: the certificate of CA "
                f"{row.name!r} has pathLen {limit}, but the declared hierarchy puts {level} below it; "
                f"give {name!r} another parent, or replace {row.name!r}"
            )
        needed += 1
        row = row.parent


def check_name_constraints(config: Config, ca_name: str, dns_names, ip_addresses) -> None:
    """Refuse names outside the name constraints of `ca_name` or of any CA above it (PolicyError)."""
    for name in config.chain_of(ca_name):
        constraints = config.ca[name].name_constraints
        if constraints is not None:
            policy.check_name_constraints(f"CA {name!r}", constraints.extension(), dns_names, ip_addresses)


def issuer_for(config: Config, tx: Transaction, ca_name: str) -> tuple[Authority, certs.Issuer]:
    """The CA's store row and its signer (the key opened with the master key)."""
    row = tx.authorities.active(ca_name)
    if row is None:
        raise StoreError(f"CA {ca_name!r} is not in the store: run `certsync init`")
    return row, tx.authorities.issuer(row, config.crl_url_of(ca_name), config.ocsp_url_of(ca_name))
