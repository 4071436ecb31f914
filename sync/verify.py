"""Checks that a bundle is what consumers need before it leaves, and that the cloud kept it.

Wrong pairing or order is what makes consumers like Envoy fail with a key/cert mismatch, so a
bundle is refused unless its key matches the leaf and each certificate is signed by the next.
"""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature

from providers.base import RemoteSecret
from sync.errors import CertsyncError
from sync.store import Bundle


class VerifyError(CertsyncError):
    pass


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


def check_written(remote: RemoteSecret, fingerprint: str, body: str | None = None) -> None:
    """The write response (or a read) must show our fingerprint, a version, and our value."""
    if remote.fingerprint is not None and remote.fingerprint != fingerprint:
        raise VerifyError(f"verify after write: {remote.name!r} carries fingerprint {remote.fingerprint}, "
                          f"expected {fingerprint}")
    if not remote.version:
        raise VerifyError(f"verify after write: the cloud reported no version for {remote.name!r}")
    if body is not None and remote.value is not None:
        value = remote.value.decode() if isinstance(remote.value, bytes) else remote.value
        if value != body:
            raise VerifyError(f"verify after write: the value read back from {remote.name!r} differs")
