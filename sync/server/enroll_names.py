"""The store name of a certificate enrolled over EST or ACME, where the client names none.

The name is made from the CSR's first name (api.example.internal -> api-example-internal). It is
reused only by this profile's CSR enrollment of exactly these names (a client renewal); taken
otherwise (another profile, other names, a configured certificate), the next free NAME-2, NAME-3,
... is used, so an enrollment never becomes a version of a certificate it does not own.
"""

from __future__ import annotations

from sync.config import Config
from sync.errors import PolicyError
from sync.pki import csr as csr_checks, names
from sync.store import Transaction

MAX_TRIES = 100


def store_name(config: Config, tx: Transaction, profile: str, csr_der: bytes) -> str:
    request = csr_checks.check_csr(csr_checks.load_csr(csr_der), profile, config.profile[profile])
    base = names.store_name(request.common_name, request.dns_names)
    sans = set(names.san_strings(request.dns_names, request.ip_addresses))
    for n in range(1, MAX_TRIES + 1):
        suffix = f"-{n}" if n > 1 else ""
        name = base[: 63 - len(suffix)].rstrip("-") + suffix
        if name in config.certificate:
            continue
        tx.certificates.lock_name(name)  # held to commit: a racing enrollment sees our choice
        existing = tx.certificates.versions_of(name)
        if not existing:
            return name
        newest = existing[0]
        if newest.profile == profile and newest.source == "csr" and set(newest.sans or []) == sans:
            return name
    raise PolicyError(f"no free store name for these names after {base}-{MAX_TRIES}")
