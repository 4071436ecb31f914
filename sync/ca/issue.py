"""Issuing certificates into the store: configured certificates in batches, and client CSRs.

One path writes versions (Certificates.new_version + add_many), whether a batch of thousands
from `apply` or one CSR enrollment.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple
from collections.abc import Callable, Iterable, Iterator

from sync.ca.hierarchy import check_name_constraints, issuer_for
from sync.errors import CertsyncError, NotFound, PolicyError, StoreError
from sync.pki import certs, names, policy, workers
from sync.pki import csr as csr_checks
from sync.store import Certificate, Store, Transaction

if TYPE_CHECKING:
    from sync.config import CertificateConfig, Config

BATCH_SIZE = 500  # rows per transaction: amortises the commit (an fsync) over many certificates


class IssueRequest(NamedTuple):  # tuples: thousands are made per run, cheaply
    name: str
    reuse_key: bool | None = None  # None: as the profile's key_rotation says


class Issued(NamedTuple):
    name: str
    version: int
    serial: str
    not_after: datetime


def general_names(spec: CertificateConfig):
    """The SAN of a configured certificate (the CN included), as issued and as planned."""
    return names.general_names(spec.common_name, tuple(spec.dns_names), tuple(spec.ip_addresses))


def san_list(spec: CertificateConfig) -> list[str]:
    """The SAN of a configured certificate as the store records it."""
    return names.san_strings(*names.split(general_names(spec)))


def issue_many(
    config: Config,
    store: Store,
    requests: Iterable[IssueRequest],
    now: datetime,
    *,
    batch_size: int = BATCH_SIZE,
    before_write: Callable[[], None] | None = None,
    until: Callable[[], bool] | None = None,
) -> Iterator[tuple[IssueRequest, Issued | CertsyncError]]:
    """Issue new versions of configured certificates: yields (request, Issued or the
    CertsyncError that failed it), in request order, batch by batch. One transaction per batch
    (one query for the version numbers, one UPDATE, one multi-row INSERT); each CA key is
    decrypted once per call; keys are sealed in bulk. A policy (or other CertsyncError) failure
    fails only its certificate: everything is checked and signed before the batch is written.
    Should the write itself fail, the batch is retried one certificate per transaction, so a
    store error too stays with the certificate it belongs to.

    With a previous version and key_rotation = "reuse" (or reuse_key=True) the key is kept, unless
    it was revoked for keyCompromise; otherwise a fresh key is made. The previous version stays
    valid (superseded, not revoked). before_write is called before each batch's transaction (the
    run lock's check: an exception from it ends the issuance). When `until` returns True before
    a batch, issuance stops there: the requests not answered yet were not started."""
    issuers: dict[str, tuple[int, certs.Issuer] | CertsyncError] = {}
    requests = list(requests)
    keys = workers.Keys(_fresh_key_type(config, r) for r in requests)  # RSA keys made ahead, in parallel
    try:
        batch: list[IssueRequest] = []
        seen: set[str] = set()  # a name at most once per batch (versions are per batch)
        start = 0
        for request in requests:
            if len(batch) >= batch_size or request.name in seen:
                if until is not None and until():
                    return
                keys.prefetch(start + 2 * batch_size)  # this batch's keys and the next one's
                yield from _issue_isolated(config, store, batch, issuers, now, before_write, keys)
                start += len(batch)
                batch, seen = [], set()
            batch.append(request)
            seen.add(request.name)
        if batch and not (until is not None and until()):
            keys.prefetch(start + 2 * batch_size)
            yield from _issue_isolated(config, store, batch, issuers, now, before_write, keys)
    finally:
        keys.close()


def _fresh_key_type(config: Config, request: IssueRequest) -> str | None:
    """The key type a request will make a new key of (None: it may reuse its key, or is invalid)."""
    spec = config.certificate.get(request.name)
    if spec is None or spec.profile not in config.profile or _reuses_key(config, request):
        return None
    return spec.key or config.profile[spec.profile].key


def _issue_isolated(
    config: Config,
    store: Store,
    batch: list[IssueRequest],
    issuers: dict,
    now: datetime,
    before_write: Callable[[], None] | None,
    keys: workers.Keys,
):
    if before_write is not None:
        before_write()
    try:
        outcomes = _issue_batch(config, store, batch, issuers, now, keys)
    except StoreError as exc:
        if len(batch) == 1:
            yield batch[0], exc
            return
        for request in batch:  # isolate the certificate the store refused
            yield from _issue_isolated(config, store, [request], issuers, now, before_write, keys)
        return
    yield from zip(batch, outcomes, strict=True)


def _issue_batch(
    config: Config, store: Store, batch: list[IssueRequest], issuers: dict, now: datetime, keys: workers.Keys
) -> list[Issued | CertsyncError]:
    """One transaction; raises StoreError (nothing written) when the store refuses the batch."""
    outcomes: list = [None] * len(batch)
    with store.transaction() as tx:
        versions = tx.certificates.version_numbers(r.name for r in batch)
        reusing = [r.name for r in batch if _reuses_key(config, r)]
        previous = tx.certificates.current_many(reusing) if reusing else {}
        key_ids = {name: certs.spki_sha256(row.certificate.public_key()) for name, row in previous.items()}
        compromised = tx.certificates.compromised_among(key_ids.values()) if key_ids else set()
        previous = {name: row for name, row in previous.items() if key_ids[name] not in compromised}
        pending: list[tuple[int, dict, certs.PrivateKey]] = []  # (index, column values, key)
        for i, request in enumerate(batch):
            try:
                values, key = _sign_one(
                    config,
                    tx,
                    request,
                    previous.get(request.name),
                    versions.get(request.name, 0) + 1,
                    issuers,
                    now,
                    keys.make,
                )
                pending.append((i, values, key))
            except CertsyncError as exc:
                outcomes[i] = exc
            except (ValueError, TypeError) as exc:  # cryptography refusing a value: this cert only
                outcomes[i] = CertsyncError(f"cannot issue {request.name!r}: {str(exc).splitlines()[0]}")
        sealed = tx.certificates.seal_keys((key, values["name"], values["version"]) for _, values, key in pending)
        for (i, values, _), key_enc in zip(pending, sealed, strict=True):
            values["key_enc"] = key_enc
            outcomes[i] = Issued(values["name"], values["version"], values["serial"], values["not_after"])
        tx.certificates.add_many([values for _, values, _ in pending])
    return outcomes


def _reuses_key(config: Config, request: IssueRequest) -> bool:
    spec = config.certificate.get(request.name)
    if spec is None or spec.profile not in config.profile:
        return False
    reuse = request.reuse_key
    return config.profile[spec.profile].key_rotation == "reuse" if reuse is None else reuse


def _issuer(config: Config, tx: Transaction, ca_name: str, issuers: dict, now: datetime) -> tuple[int, certs.Issuer]:
    """The CA's (row id, signer), decrypted once per run; a CA that failed fails every request."""
    found = issuers.get(ca_name)
    if found is None:
        try:  # plain values: ORM rows would expire if a batch rolls back
            authority, issuer = issuer_for(config, tx, ca_name)
            found = issuers[ca_name] = (authority.id, issuer)
        except CertsyncError as exc:
            found = issuers[ca_name] = exc
    if isinstance(found, CertsyncError):
        raise found.__class__(found.message)
    ends = found[1].certificate.not_valid_after_utc
    if ends <= now:
        raise CertsyncError(
            f"CA {ca_name!r} expired on {ends:%Y-%m-%d}: add a new issuing CA and move the profile to it"
        )
    return found


def _sign_one(
    config: Config,
    tx: Transaction,
    request: IssueRequest,
    previous: Certificate | None,
    version: int,
    issuers: dict,
    now: datetime,
    make_key: Callable[[str], certs.PrivateKey] = certs.generate_key,
) -> tuple[dict, certs.PrivateKey]:
    """Policy, issuer, key, signature: the column values of the new version, and its key."""
    spec = config.certificate[request.name]
    profile = config.profile[spec.profile]
    key_type = spec.key or profile.key
    validity = spec.validity or profile.validity
    sans = general_names(spec)
    dns, ips = names.split(sans)
    policy.check_request(spec.profile, profile, dns_names=dns, ip_addresses=ips, key_type=key_type, validity=validity)
    check_name_constraints(config, profile.ca, dns, ips)
    authority_id, issuer = _issuer(config, tx, profile.ca, issuers, now)
    key = None
    if _reuses_key(config, request) and previous is not None and previous.key_type == key_type:
        key = tx.certificates.private_key(previous)
    if key is None:
        key = make_key(key_type)
    cert = certs.issue_leaf(
        issuer,
        key.public_key(),
        common_name=spec.common_name,
        dns_names=spec.dns_names,
        ip_addresses=spec.ip_addresses,
        usages=profile.usages,
        validity=validity,
        now=now,
        sans=list(sans),
    )
    values = tx.certificates.new_version(
        name=request.name,
        version=version,
        profile=spec.profile,
        authority_id=authority_id,
        cert=cert,
        key_type=key_type,
        sans=names.san_strings(dns, ips),
        common_name=spec.common_name or None,
    )
    return values, key


def issue_from_csr(
    config: Config,
    tx: Transaction,
    name: str | None,
    profile_name: str,
    csr_data: bytes,
    now: datetime,
    *,
    check_name: Callable[[str], None] | None = None,
) -> Certificate:
    """Enroll a client's CSR under `profile_name`: the signature, key and names are checked by
    the profile, the subject and SANs come from policy, and no private key is stored.
    Without a name, the certificate is stored under its first name (api.example.internal ->
    api-example-internal); enrolling the same name again makes a new version (client renewal)."""
    profile = config.profile.get(profile_name)
    if profile is None:
        raise PolicyError(f"--profile: unknown profile {profile_name!r} (defined: {', '.join(sorted(config.profile))})")
    request = csr_checks.check_csr(csr_checks.load_csr(csr_data), profile_name, profile)
    compromised = tx.certificates.compromised(certs.spki_sha256(request.public_key))
    if compromised is not None:
        raise PolicyError(
            f"CSR: its public key is compromised (revoked for {compromised.reason} with "
            f"certificate {compromised.cert_name!r} serial {compromised.serial} on "
            f"{compromised.compromised_at:%Y-%m-%d}); generate a new key"
        )
    generated = name is None
    name = name or names.store_name(request.common_name, request.dns_names)
    if name in config.certificate:
        raise PolicyError(
            f"--name: {name!r} is a configured certificate (certsync makes its key); "
            "choose another name for a CSR enrollment"
        )
    if check_name is not None:
        check_name(name)  # the caller's rules (e.g. where it will be pushed)
    tx.certificates.lock_name(name)  # the version number below is ours until commit
    existing = tx.certificates.versions_of(name)
    if existing and existing[0].source != "csr":
        raise PolicyError(f"--name: {name!r} is already used by a certificate certsync made the key for")
    sans = names.san_strings(request.dns_names, request.ip_addresses)
    if generated and existing and set(existing[0].sans or []) != set(sans):
        # a client renewal asks for the same names; other names under a name made from them would
        # silently become a new version of an unrelated certificate
        raise PolicyError(
            f"CSR: its generated name {name!r} already holds a certificate for other names "
            f"({', '.join(existing[0].sans or []) or 'none'}); choose a name with --name (that same "
            "name to make these names its next version)"
        )
    policy.check_request(
        profile_name,
        profile,
        dns_names=request.dns_names,
        ip_addresses=request.ip_addresses,
        key_type=request.key_type,
        validity=profile.validity,
    )
    check_name_constraints(config, profile.ca, request.dns_names, request.ip_addresses)
    authority, issuer = issuer_for(config, tx, profile.ca)
    cert = certs.issue_leaf(
        issuer,
        request.public_key,
        common_name=request.common_name,
        dns_names=request.dns_names,
        ip_addresses=request.ip_addresses,
        usages=profile.usages,
        validity=profile.validity,
        now=now,
    )
    version = (existing[0].version if existing else 0) + 1
    tx.certificates.add_many(
        [
            tx.certificates.new_version(
                name=name,
                version=version,
                profile=profile_name,
                authority_id=authority.id,
                cert=cert,
                key_type=request.key_type,
                sans=sans,
                source="csr",
                common_name=request.common_name,
            )
        ]
    )
    row = tx.certificates.current(name)
    assert row is not None and row.version == version
    return row


def new_key_request(
    config: Config,
    profile_name: str,
    *,
    common_name: str | None,
    dns_names: list[str],
    ip_addresses: list[str],
    key_type: str | None,
) -> tuple[certs.PrivateKey, bytes]:
    """CSR-less enrollment, first half (no store: a key can take a second to make): a fresh key
    of `key_type` (default: the profile's) and a PEM CSR for the names, signed with it. The
    second half is `issue_from_csr`, so the policy is exactly that of a client's CSR."""
    profile = config.profile.get(profile_name)
    if profile is None:
        raise PolicyError(f"unknown profile {profile_name!r}")
    key_type = key_type or profile.key
    allowed = profile.allowed_keys if profile.allowed_keys is not None else [profile.key]
    if key_type not in allowed:  # before making a key nobody may use (an RSA 4096 takes a while)
        raise PolicyError(
            f"profile {profile_name!r}: key type {key_type} is not allowed (allowed: {', '.join(allowed)})"
        )
    key = certs.generate_key(key_type)
    return key, csr_checks.build_csr(key, common_name=common_name, dns_names=dns_names, ip_addresses=ip_addresses)


def renew_from_csr(config: Config, tx: Transaction, name: str, csr_data: bytes, now: datetime) -> Certificate:
    """Client-driven renewal of a CSR enrollment: a new CSR (a new key: rekey) for exactly the
    names of the current version, issued as its next version under the same profile's policy."""
    versions = tx.certificates.versions_of(name)
    if not versions:
        raise NotFound(f"certificate {name!r} is not in the store")
    newest = versions[0]
    if newest.source != "csr":
        raise PolicyError(f"{name!r}: certsync holds its key; renew it with reuse_key instead of a CSR")
    profile = config.profile.get(newest.profile)
    if profile is None:
        raise PolicyError(f"{name!r}: its profile {newest.profile!r} is no longer configured")
    request = csr_checks.check_csr(csr_checks.load_csr(csr_data), newest.profile, profile)
    sans = names.san_strings(request.dns_names, request.ip_addresses)
    if set(sans) != set(newest.sans or []):
        raise PolicyError(
            f"CSR: renewal must ask for the same names as {name!r} "
            f"({', '.join(newest.sans or []) or 'none'}), not {', '.join(sans) or 'none'}"
        )
    if certs.spki_sha256(request.public_key) == certs.spki_sha256(newest.certificate.public_key()):
        raise PolicyError("CSR: carries the current key; renewal is a rekey: generate a new key")
    return issue_from_csr(config, tx, name, newest.profile, csr_data, now)
