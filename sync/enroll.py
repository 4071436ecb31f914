"""Creating the configured CAs and issuing certificates for configured names, into the store."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from sqlalchemy.orm import Session

from sync import ca, policy
from sync.config import CertificateConfig, Config
from sync.errors import CertsyncError, PolicyError, StoreError
from sync.store import Authority, Certificate, Store


@dataclass(frozen=True)
class CAStatus:
    name: str
    created: bool
    subject: str
    not_after: datetime


def init_cas(config: Config, store: Store, *, now: datetime | None = None) -> list[CAStatus]:
    """Create every configured CA that the store does not have yet, parents first (idempotent)."""
    statuses: list[CAStatus] = []
    with store.session() as session:
        for name in _parents_first(config):
            existing = store.authority(session, name)
            if existing is not None:
                statuses.append(CAStatus(name, False, existing.subject, existing.not_after))
                continue
            row = _create_authority(config, store, session, name, now)
            statuses.append(CAStatus(name, True, row.subject, row.not_after))
    return statuses


def _parents_first(config: Config) -> list[str]:
    ordered: list[str] = []
    for name in config.ca:
        for ancestor in reversed(config.chain_of(name)):
            if ancestor not in ordered:
                ordered.append(ancestor)
    return ordered


def _create_authority(config: Config, store: Store, session: Session, name: str,
                      now: datetime | None) -> Authority:
    spec = config.ca[name]
    parent_row = store.authority(session, spec.parent) if spec.parent else None
    parent = None
    if parent_row is not None:
        parent_spec = config.ca[spec.parent]
        parent = store.issuer(parent_row, parent_spec.crl_url, parent_spec.ocsp_url)
    key = ca.generate_key(spec.key)
    cert = ca.create_ca(spec.subject, key, spec.validity, parent=parent, path_length=spec.path_length, now=now)
    return store.add_authority(session, name, cert, key, spec.key, parent_row)


def issuer_for(config: Config, store: Store, session: Session, ca_name: str) -> tuple[Authority, ca.Issuer]:
    row = store.authority(session, ca_name)
    if row is None:
        raise StoreError(f"CA {ca_name!r} is not in the store: run `certsync init`")
    spec = config.ca[ca_name]
    return row, store.issuer(row, spec.crl_url, spec.ocsp_url)


def requested_names(spec: CertificateConfig) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) as they will appear in the SAN, the CN included."""
    return _names_of(general_names(spec))


def general_names(spec: CertificateConfig) -> tuple[x509.GeneralName, ...]:
    """ca.subject_alt_names for a configured certificate; computed once per run for the plan and
    the issuance alike (the objects are immutable)."""
    return _general_names(spec.common_name, tuple(spec.dns_names), tuple(spec.ip_addresses))


@functools.lru_cache(maxsize=32768)
def _general_names(common_name, dns_names: tuple, ip_addresses: tuple) -> tuple[x509.GeneralName, ...]:
    return tuple(ca.subject_alt_names(common_name, dns_names, ip_addresses))


def _names_of(sans) -> tuple[list[str], list[str]]:
    dns = [n.value for n in sans if isinstance(n, x509.DNSName)]
    ips = [str(n.value) for n in sans if isinstance(n, x509.IPAddress)]
    return dns, ips


def san_list(spec: CertificateConfig) -> list[str]:
    return san_strings(*requested_names(spec))


def san_strings(dns_names, ip_addresses) -> list[str]:
    """SANs as the store records them: DNS:name, then IP:address."""
    return [f"DNS:{d}" for d in dns_names] + [f"IP:{i}" for i in ip_addresses]


def issue(config: Config, store: Store, session: Session, name: str, *, previous: Certificate | None = None,
          reuse_key: bool | None = None, now: datetime | None = None) -> Certificate:
    """Issue a new version of certificate `name` as configured, and record it.

    With a previous version and key_rotation = "reuse" (or reuse_key=True) the key is kept;
    otherwise a fresh key is made. The previous version stays valid (superseded, not revoked).
    """
    spec = config.certificate[name]
    profile = config.profile[spec.profile]
    key_type = spec.key or profile.key
    validity = spec.validity or profile.validity
    dns, ips = requested_names(spec)
    policy.check_request(spec.profile, profile, dns_names=dns, ip_addresses=ips, key_type=key_type,
                         validity=validity)
    authority, issuer = issuer_for(config, store, session, profile.ca)
    if reuse_key is None:
        reuse_key = profile.key_rotation == "reuse"
    key = None
    if reuse_key and previous is not None and previous.key_enc is not None and previous.key_type == key_type:
        key = store.bundle(previous).private_key
    if key is None:
        key = ca.generate_key(key_type)
    cert = ca.issue_leaf(issuer, key.public_key(), common_name=spec.common_name, dns_names=spec.dns_names,
                         ip_addresses=spec.ip_addresses, usages=profile.usages, validity=validity, now=now)
    return store.add_certificate(session, name=name, profile=spec.profile, authority=authority, cert=cert,
                                 key=key, key_type=key_type, sans=san_list(spec))


BATCH_SIZE = 500          # rows per transaction: amortises the commit (an fsync) over many certificates


class IssueRequest(NamedTuple):      # tuples: thousands are made per run, cheaply
    name: str
    reuse_key: bool | None = None      # None: as the profile's key_rotation says


class Issued(NamedTuple):
    name: str
    version: int
    serial: str
    not_after: datetime


def issue_many(config: Config, store: Store, requests, *, now: datetime | None = None,
               batch_size: int = BATCH_SIZE):
    """`issue` for many certificates: yields (request, Issued or the CertsyncError that failed
    it), in request order, batch by batch. One transaction per batch (one query for the version
    numbers, one UPDATE, one multi-row INSERT); each CA key is decrypted once per call; keys
    are sealed in bulk. A policy (or other CertsyncError) failure fails only its certificate:
    everything is checked and signed before the batch is written. Should the write itself fail,
    the batch is retried one certificate per transaction, so a store error too stays with the
    certificate it belongs to."""
    issuers: dict[str, tuple[int, ca.Issuer] | CertsyncError] = {}
    batch: list[IssueRequest] = []
    names: set[str] = set()                  # a name at most once per batch (versions are per batch)
    for request in requests:
        if len(batch) >= batch_size or request.name in names:
            yield from _issue_isolated(config, store, batch, issuers, now)
            batch, names = [], set()
        batch.append(request)
        names.add(request.name)
    if batch:
        yield from _issue_isolated(config, store, batch, issuers, now)


def _issue_isolated(config: Config, store: Store, batch: list[IssueRequest], issuers: dict, now: datetime | None):
    try:
        outcomes = _issue_batch(config, store, batch, issuers, now)
    except StoreError as exc:
        if len(batch) == 1:
            yield batch[0], exc
            return
        for request in batch:                     # isolate the certificate the store refused
            yield from _issue_isolated(config, store, [request], issuers, now)
        return
    yield from zip(batch, outcomes)


def _issue_batch(config: Config, store: Store, batch: list[IssueRequest], issuers: dict,
                 now: datetime | None) -> list[Issued | CertsyncError]:
    """One transaction; raises StoreError (nothing written) when the store refuses the batch."""
    outcomes: list = [None] * len(batch)
    with store.session() as session:
        versions = store.version_numbers(session, [r.name for r in batch])
        reusing = [r.name for r in batch if _reuses_key(config, r)]
        previous = store.current_many(session, reusing) if reusing else {}
        pending: list[tuple[int, dict, object]] = []          # (index, column values, key)
        for i, request in enumerate(batch):
            try:
                values, key = _sign_one(config, store, session, request, previous.get(request.name),
                                        versions.get(request.name, 0) + 1, issuers, now)
                pending.append((i, values, key))
            except CertsyncError as exc:
                outcomes[i] = exc
            except (ValueError, TypeError) as exc:  # cryptography refusing a value: this cert only
                outcomes[i] = CertsyncError(f"cannot issue {request.name!r}: {str(exc).splitlines()[0]}")
        sealed = store._key().seal_private_keys(
            (key, f"certificate:{values['name']}:{values['version']}") for _, values, key in pending)
        for (i, values, _), key_enc in zip(pending, sealed):
            values["key_enc"] = key_enc
            outcomes[i] = Issued(values["name"], values["version"], values["serial"], values["not_after"])
        store.add_certificates(session, [values for _, values, _ in pending])
    return outcomes


def _reuses_key(config: Config, request: IssueRequest) -> bool:
    spec = config.certificate.get(request.name)
    if spec is None or spec.profile not in config.profile:
        return False
    reuse = request.reuse_key
    return config.profile[spec.profile].key_rotation == "reuse" if reuse is None else reuse


def _sign_one(config: Config, store: Store, session: Session, request: IssueRequest, previous: Certificate | None,
              version: int, issuers: dict, now: datetime | None) -> tuple[dict, object]:
    """What `issue` does up to the store write: policy, issuer, key, signature."""
    spec = config.certificate[request.name]
    profile = config.profile[spec.profile]
    key_type = spec.key or profile.key
    validity = spec.validity or profile.validity
    sans_general = general_names(spec)
    dns, ips = _names_of(sans_general)
    policy.check_request(spec.profile, profile, dns_names=dns, ip_addresses=ips, key_type=key_type,
                         validity=validity)
    found = issuers.get(profile.ca)
    if found is None:
        try:                        # plain values: ORM rows would expire if a batch rolls back
            authority, issuer = issuer_for(config, store, session, profile.ca)
            found = issuers[profile.ca] = (authority.id, issuer)
        except CertsyncError as exc:
            found = issuers[profile.ca] = exc
    if isinstance(found, CertsyncError):
        raise found.__class__(found.message)
    authority_id, issuer = found
    if issuer.certificate.not_valid_after_utc <= (now or ca.utcnow()):
        raise CertsyncError(f"CA {profile.ca!r} expired on {issuer.certificate.not_valid_after_utc:%Y-%m-%d}: "
                            "add a new issuing CA and move the profile to it")
    key = None
    if _reuses_key(config, request) and previous is not None and previous.key_enc is not None \
            and previous.key_type == key_type:
        key = store._key().open_private_key(previous.key_enc, f"certificate:{previous.name}:{previous.version}")
    if key is None:
        key = ca.generate_key(key_type)
    cert = ca.issue_leaf(issuer, key.public_key(), common_name=spec.common_name, dns_names=spec.dns_names,
                         ip_addresses=spec.ip_addresses, usages=profile.usages, validity=validity, now=now,
                         sans=list(sans_general))
    sans = san_strings(dns, ips)
    values = store.certificate_values(name=request.name, version=version, profile=spec.profile,
                                      authority_id=authority_id, cert=cert, key_enc=None, key_type=key_type,
                                      sans=sans, common_name=spec.common_name or None)
    return values, key


def issue_from_csr(config: Config, store: Store, session: Session, name: str | None, profile_name: str,
                   csr_data: bytes, *, validity=None, now: datetime | None = None) -> Certificate:
    """Enroll a client's CSR under `profile_name`: the signature, key and names are checked by
    the profile, the subject and SANs come from policy, and no private key is stored.
    Without a name, the certificate is stored under its first name (api.example.internal ->
    api-example-internal); enrolling the same name again makes a new version (client renewal)."""
    from sync import csr as csr_mod
    profile = config.profile.get(profile_name)
    if profile is None:
        raise PolicyError(f"--profile: unknown profile {profile_name!r} (defined: {', '.join(sorted(config.profile))})")
    request = csr_mod.check_csr(csr_mod.load_csr(csr_data), profile_name, profile)
    name = name or csr_name(request.common_name, request.dns_names)
    if name in config.certificate:
        raise PolicyError(f"--name: {name!r} is a configured certificate (certsync makes its key); "
                          "choose another name for a CSR enrollment")
    existing = store.latest_versions_of(session, name)
    if existing and existing[0].source != "csr":
        raise PolicyError(f"--name: {name!r} is already used by a certificate certsync made the key for")
    validity = validity or profile.validity
    policy.check_request(profile_name, profile, dns_names=request.dns_names, ip_addresses=request.ip_addresses,
                         key_type=request.key_type, validity=validity)
    authority, issuer = issuer_for(config, store, session, profile.ca)
    cert = ca.issue_leaf(issuer, request.public_key, common_name=request.common_name,
                         dns_names=request.dns_names, ip_addresses=request.ip_addresses,
                         usages=profile.usages, validity=validity, now=now)
    sans = san_strings(request.dns_names, request.ip_addresses)
    return store.add_certificate(session, name=name, profile=profile_name, authority=authority, cert=cert,
                                 key=None, key_type=request.key_type, sans=sans, source="csr")


def csr_name(common_name: str | None, dns_names) -> str:
    """A store name for a CSR enrollment when none is given: the first name, as a label."""
    base = (common_name or (dns_names[0] if dns_names else "csr")).lower().lstrip("*.")
    return (re.sub(r"[^a-z0-9-]+", "-", base).strip("-") or "csr")[:63].strip("-")
