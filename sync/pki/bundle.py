"""A certificate bundle (leaf, key, chain) and the check that it is what consumers need.

Wrong pairing or order is what makes consumers like Envoy fail with a key/cert mismatch, so a
bundle is refused unless its key matches the leaf and each certificate is signed by the next.
A chain in order is not yet a valid one: the path is then validated as a relying party would
(RFC 5280 6.1, at a fixed validation time): basicConstraints, pathLen, keyCertSign, validity and
name constraints, by our own check (which also covers Ed25519, an algorithm cryptography's
WebPKI verifier refuses) and by cryptography's `x509.verification` wherever its policy applies.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from sync.clock import utcnow
from sync.errors import PolicyError, VerifyError
from sync.pki import policy
from sync.pki.certs import PrivateKey

_E = TypeVar("_E", bound=x509.ExtensionType)


@dataclass(frozen=True)
class Bundle:
    """What a payload is rendered from: leaf, its key, intermediates (leaf-side first), root."""

    name: str
    version: int
    certificate: x509.Certificate
    private_key: PrivateKey | None
    intermediates: list[x509.Certificate]
    root: x509.Certificate


def check_bundle(bundle: Bundle, now: datetime | None = None) -> None:
    """Raise VerifyError (one line naming the certificate) unless the key pairs with the leaf, the
    chain is in order, and the path validates at `now` (default: the current time)."""
    if bundle.private_key is not None and bundle.private_key.public_key() != bundle.certificate.public_key():
        raise VerifyError(f"certificate {bundle.name!r} version {bundle.version}: private key does not match")
    chain = [bundle.certificate, *bundle.intermediates, bundle.root]
    for child, parent in itertools.pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise VerifyError(
                f"certificate {bundle.name!r}: chain out of order at {child.subject.rfc4514_string()!r}"
            ) from None
    now = now or utcnow()
    _check_path(bundle, chain, now)
    if not any(isinstance(c.public_key(), ed25519.Ed25519PublicKey) for c in chain):
        _relying_party(bundle, now)


def _subject(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string())


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _check_path(bundle: Bundle, chain: list[x509.Certificate], now: datetime) -> None:
    """RFC 5280 path rules for a chain already known to be signed in order (leaf first, root last)."""
    where = f"certificate {bundle.name!r}"
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise VerifyError(
                f"{where}: {_subject(cert)} is not valid at {now:%Y-%m-%dT%H:%M:%SZ} "
                f"(valid {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to "
                f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})"
            )
    leaf_constraints = _extension(bundle.certificate, x509.BasicConstraints)
    if leaf_constraints is not None and leaf_constraints.ca:
        raise VerifyError(f"{where}: the leaf {_subject(bundle.certificate)} is a CA certificate")
    sans = _extension(bundle.certificate, x509.SubjectAlternativeName)
    dns = sans.get_values_for_type(x509.DNSName) if sans is not None else []
    ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] if sans is not None else []
    for below, ca in enumerate(chain[1:]):  # `below`: CA certificates between this CA and the leaf
        constraints = _extension(ca, x509.BasicConstraints)
        if constraints is None or not constraints.ca:
            raise VerifyError(f"{where}: {_subject(ca)} signs certificates but is not a CA (basicConstraints)")
        if constraints.path_length is not None and below > constraints.path_length:
            raise VerifyError(
                f"{where}: {_subject(ca)} has pathLen {constraints.path_length} but {below} CA "
                f"certificate{'s' if below > 1 else ''} follow{'' if below > 1 else 's'} it in the chain"
            )
        usage = _extension(ca, x509.KeyUsage)
        if usage is not None and not usage.key_cert_sign:
            raise VerifyError(f"{where}: {_subject(ca)} signs certificates but its keyUsage lacks keyCertSign")
        names = _extension(ca, x509.NameConstraints)
        if names is not None:
            try:
                policy.check_name_constraints(f"CA {_subject(ca)}", names, dns, ips)
            except PolicyError as exc:
                raise VerifyError(f"{where}: {exc}") from None


def _relying_party(bundle: Bundle, now: datetime) -> None:
    """cryptography's path validation (WebPKI policy): the root as the only trust anchor, the
    intermediates untrusted; a server verifier for a serverAuth leaf, a client verifier otherwise."""
    leaf = bundle.certificate
    builder = verification.PolicyBuilder().store(verification.Store([bundle.root])).time(now)
    eku = _extension(leaf, x509.ExtendedKeyUsage)
    sans = _extension(leaf, x509.SubjectAlternativeName)
    try:
        subject = _server_subject(sans) if eku is not None and ExtendedKeyUsageOID.SERVER_AUTH in eku else None
        if subject is not None:
            builder.build_server_verifier(subject).verify(leaf, bundle.intermediates)
        else:
            builder.build_client_verifier().verify(leaf, bundle.intermediates)
    except (verification.VerificationError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise VerifyError(
            f"certificate {bundle.name!r}: the chain from {_subject(leaf)} to {_subject(bundle.root)} "
            f"does not validate (RFC 5280): {reason}"
        ) from None


def _server_subject(sans: x509.SubjectAlternativeName | None) -> verification.Subject | None:
    """A name the leaf is valid for, as a TLS client would ask for it (a wildcard: one label under it)."""
    if sans is None:
        return None
    for name in sans.get_values_for_type(x509.DNSName):
        return verification.DNSName("certsync-verify" + name[1:] if name.startswith("*.") else name)
    for address in sans.get_values_for_type(x509.IPAddress):
        return verification.IPAddress(ipaddress.ip_address(str(address)))
    return None
