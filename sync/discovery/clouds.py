"""Cloud secret stores as a discovery source.

Each destination's secrets are all listed (names and labels, no values), each one is read once
(`get`, which does not care who owns a secret) and its value searched for certificates: PEM
bundles, certsync's json format, JSON with a certificate field, base64 PFX (tried without a
password, then with the destination's pkcs12_password_env and [discovery]'s password). Listing
pages and reads are paced under the cloud's read quota per quota domain (the same token bucket
as `apply`'s writes, with the descriptor's read budget). A scan never writes to a cloud.

Privacy: a value lives only in the loop that parses it. Nothing here logs, stores or returns a
value or a password; errors are the adapters' one-line messages, which never carry a value.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Iterable, Iterator

from providers.base import CERT_LABEL, RemoteSecret
from sync.config import Config
from sync.discovery import parse
from sync.clock import rfc3339
from sync.discovery.record import Observation, record
from sync.errors import UsageError, one_line
from sync.pki.facts import fingerprint
from sync.reconcile.destinations import ProviderFactory
from sync.reconcile.pacing import TokenBucket, read_quota_of
from sync.store import ScanSummary, Store, Transaction

LIST_PAGE = 25  # secrets a listing page is charged for when the adapter does not say


@dataclass
class DestinationScan:
    destination: str
    kind: str
    observations: list[Observation] = field(default_factory=list)  # secrets holding a certificate
    errors: list[str] = field(default_factory=list)  # one line each
    failed: set[str] = field(default_factory=set)  # locations that could not be read
    listed: int = 0
    without_certificate: int = 0
    listing_failed: bool = False

    @property
    def prefix(self) -> str:
        return f"{self.kind}:{self.destination}/"


def chosen_destinations(config: Config, requested: Iterable[str] | None) -> list[str]:
    """--destination names (checked), else [discovery.clouds] destinations, else every destination."""
    names = list(requested or [])
    if not names and config.discovery is not None and config.discovery.clouds.destinations is not None:
        names = list(config.discovery.clouds.destinations)
    elif not names:
        names = sorted(config.destination)
    for name in names:
        if name not in config.destination:
            raise UsageError(
                f"--destination: unknown destination {name!r} "
                f"(defined: {', '.join(sorted(config.destination)) or 'none'})"
            )
    return list(dict.fromkeys(names))


def scan(config: Config, providers: ProviderFactory, destinations: list[str]) -> list[DestinationScan]:
    """Inspect every secret of each destination; destinations in parallel, one bucket per quota domain."""
    override = config.discovery.clouds.max_reads_per_second if config.discovery else None
    buckets: dict[str, TokenBucket] = {}
    lock = threading.Lock()

    def bucket_of(name: str) -> tuple[TokenBucket, float]:
        quota = read_quota_of(config.destination[name], override)
        with lock:
            bucket = buckets.setdefault(quota.domain, TokenBucket(quota.reads_per_second))
        return bucket, quota.calls_per_read

    def one(name: str) -> DestinationScan:
        bucket, per_read = bucket_of(name)
        return scan_destination(config, providers, name, bucket, per_read)

    if not destinations:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(destinations))) as pool:
        return list(pool.map(one, destinations))


def scan_destination(
    config: Config, providers: ProviderFactory, name: str, bucket: TokenBucket, per_read: float
) -> DestinationScan:
    dest = config.destination[name]
    result = DestinationScan(name, dest.provider)
    passwords = pfx_passwords(config, name)
    try:
        provider = providers(name)
        secrets = list(_paced_listing(provider.list_all(), bucket, getattr(provider, "page_size", None)))
    except Exception as exc:  # the whole destination: nothing under it is marked gone
        result.listing_failed = True
        result.errors.append(f"{result.prefix}: listing failed: {one_line(exc)}")
        return result
    result.listed = len(secrets)
    for listed in secrets:
        location = result.prefix + listed.name
        try:
            observation = _inspect(provider, listed, location, dest.provider, bucket, per_read, passwords)
        except Exception as exc:  # one secret: reported, the scan goes on
            observation = Observation(dest.provider, location, error=one_line(exc))
        if observation is None:
            result.without_certificate += 1
        elif observation.error is not None:
            result.failed.add(location)
            result.errors.append(f"{location}: {observation.error}")
        else:
            result.observations.append(observation)
    return result


def _inspect(
    provider,
    listed: RemoteSecret,
    location: str,
    kind: str,
    bucket: TokenBucket,
    per_read: float,
    passwords: list[bytes | None],
) -> Observation | None:
    """The secret's certificates (None: it holds none). Its value goes out of scope here."""
    if not listed.enabled:
        return Observation(kind, location, error="disabled: its value cannot be read")
    bucket.take(per_read)
    secret = provider.get(listed.name)
    if secret is None:
        return None  # deleted (or scheduled for deletion) since the listing
    if secret.value is None:
        return None  # no readable current value (no version, or the latest is disabled)
    found = parse.certificates(secret.value, passwords=passwords)
    if not found:
        return None
    labels = secret.labels or listed.labels
    details = {
        "managed_secret": secret.managed,
        "certsync_cert": labels.get(CERT_LABEL),
        "content_type": secret.content_type or listed.content_type,
        "secret": listed.name,
    }
    return Observation(kind, location, found, details)


def _paced_listing(listing: Iterator[RemoteSecret], bucket: TokenBucket, page: int | None) -> Iterator[RemoteSecret]:
    """The listing, one read charged before each page (the SDKs page lazily as it is consumed)."""
    page = page or LIST_PAGE
    bucket.take(1)
    for count, secret in enumerate(listing, start=1):
        yield secret
        if count % page == 0:
            bucket.take(1)


def pfx_passwords(config: Config, destination: str) -> list[bytes | None]:
    """None first, then the destination's pkcs12_password_env and [discovery.files]' one, if set."""
    names = [config.destination[destination].pkcs12_password_env]
    names.append(config.discovery.files.pkcs12_password_env if config.discovery else None)
    found: list[bytes | None] = [None]
    for env in names:
        value = os.environ.get(env) if env else None
        if value and value.encode() not in found:
            found.append(value.encode())
    return found


def gone_scopes(results: list[DestinationScan], known: Iterable[str]) -> list[str]:
    """What a scan may mark gone: each destination's prefix; when some secrets could not be read,
    only the known locations under it that were read (an unreadable secret is not gone)."""
    known = sorted(set(known))
    scopes: list[str] = []
    for r in results:
        if r.listing_failed:
            continue
        if not r.failed:
            scopes.append(r.prefix)
            continue
        scopes += [
            loc
            for loc in known
            if loc.startswith(r.prefix) and loc not in r.failed and not any(f.startswith(loc) for f in r.failed)
        ]
    return scopes


@dataclass
class CloudDiscovery:
    destinations: list[DestinationScan]
    summary: ScanSummary
    found: list[dict]  # one per secret holding a certificate: location and the leaf's facts

    @property
    def errors(self) -> list[str]:
        return [e for r in self.destinations for e in r.errors]

    def as_dict(self) -> dict:
        return {
            "destinations": [
                {
                    "destination": r.destination,
                    "provider": r.kind,
                    "secrets": r.listed,
                    "with_certificates": len(r.observations),
                    "without_certificates": r.without_certificate,
                    "errors": r.errors,
                    "listing_failed": r.listing_failed,
                }
                for r in self.destinations
            ],
            "found": self.found,
            "summary": vars(self.summary),
            "errors": self.errors,
        }


def discover(
    config: Config, providers: ProviderFactory, store: Store, requested: Iterable[str] | None, now: datetime
) -> CloudDiscovery:
    """Scan, then record what was seen (facts only) in one transaction."""
    results = scan(config, providers, chosen_destinations(config, requested))
    observations = [o for r in results for o in r.observations]
    with store.transaction() as tx:
        known = [loc.location for f in tx.discovery.found(include_gone=True) for loc in f.locations]
        summary = record(tx, gone_scopes(results, known), observations, now)
        found = [_facts(tx, o) for o in observations]
    return CloudDiscovery(results, summary, found)


def _facts(tx: Transaction, observation: Observation) -> dict:
    leaf = fingerprint(observation.certificates[0])
    row = tx.discovery.lookup(leaf)
    cert = row.certificate if row is not None else None
    return {
        "location": observation.location,
        "fingerprint": leaf,
        "certificates": len(observation.certificates),
        "subject": cert.subject if cert else None,
        "sans": list(cert.sans or []) if cert else [],
        "not_after": rfc3339(cert.not_after) if cert else None,
        "managed": bool(cert and cert.managed),
        **observation.details,
    }
