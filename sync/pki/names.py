"""Subject alternative names as certsync computes, stores and names them. Pure functions."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from cryptography import x509

from sync.pki import certs


@functools.lru_cache(maxsize=32768)
def general_names(
    common_name: str | None, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]
) -> tuple[x509.GeneralName, ...]:
    """certs.subject_alt_names, cached: a plan and an issuance of the same names share the
    (immutable) objects."""
    return tuple(certs.subject_alt_names(common_name, dns_names, ip_addresses))


def split(sans: Iterable[x509.GeneralName]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of a SAN list."""
    sans = list(sans)
    dns = [n.value for n in sans if isinstance(n, x509.DNSName)]
    ips = [str(n.value) for n in sans if isinstance(n, x509.IPAddress)]
    return dns, ips


def san_strings(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[str]:
    """SANs as the store records them: DNS:name, then IP:address."""
    return [f"DNS:{d}" for d in dns_names] + [f"IP:{i}" for i in ip_addresses]


def store_name(common_name: str | None, dns_names: Sequence[str]) -> str:
    """A store name for a CSR enrollment when none is given: the first name, as a label; a
    wildcard is told from its apex (*.x.internal -> wildcard-x-internal, x.internal -> x-internal).
    Different names can still meet here (x_y / x-y, cut at 63 characters): the enrollment checks
    that a generated name it reuses holds the same names."""
    base = (common_name or (dns_names[0] if dns_names else "csr")).lower()
    prefix = ""
    if base.startswith("*."):
        prefix, base = "wildcard-", base[2:]
    label = re.sub(r"[^a-z0-9-]+", "-", base).strip("-") or "csr"
    return (prefix + label)[:63].strip("-")
