"""Integrity tags on stored certificates, checked once for CA rows and version rows alike."""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from sync.errors import StoreError
from sync.store.keyring import MasterKey
from sync.store.models import Authority, Certificate

ALTERED = "stored certificate does not match its integrity tag (altered in the database?)"
UNTAGGED = (
    "stored certificate has no integrity tag and does not match its sealed key or its issuer's "
    "signature (altered in the database?)"
)


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_tag(
    row: Authority | Certificate,
    what: str,
    context: str,
    master_key: MasterKey,
    genuine: Callable[[x509.Certificate], bool],
) -> x509.Certificate:
    """The row's certificate once its tag matches (StoreError, one line, if not). A row from
    before the tags (revision 0004) is tagged here when `genuine(cert)` holds, else refused."""
    if row.cert_tag is None:
        try:
            cert = row.certificate
        except ValueError:
            raise StoreError(f"{what}: {UNTAGGED}") from None
        if not genuine(cert):
            raise StoreError(f"{what}: {UNTAGGED}")
        row.cert_tag = master_key.tag(row.cert_der, context)
    elif not master_key.tag_matches(row.cert_tag, row.cert_der, context):
        raise StoreError(f"{what}: {ALTERED}")
    return row.certificate
