"""A certificate bundle (leaf, key, chain) and the check that it is what consumers need.

Wrong pairing or order is what makes consumers like Envoy fail with a key/cert mismatch, so a
bundle is refused unless its key matches the leaf and each certificate is signed by the next.
"""
from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from sync.errors import VerifyError


@dataclass(frozen=True)
class Bundle:
    """What a payload is rendered from: leaf, its key, intermediates (leaf-side first), root."""
    name: str
    version: int
    certificate: x509.Certificate
    private_key: object | None
    intermediates: list[x509.Certificate]
    root: x509.Certificate


def check_bundle(bundle: Bundle) -> None:
    if bundle.private_key is not None and bundle.private_key.public_key() != bundle.certificate.public_key():
        raise VerifyError(f"certificate {bundle.name!r} version {bundle.version}: private key does not match")
    chain = [bundle.certificate, *bundle.intermediates, bundle.root]
    for child, parent in zip(chain, chain[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise VerifyError(f"certificate {bundle.name!r}: chain out of order at "
                              f"{child.subject.rfc4514_string()!r}") from None
