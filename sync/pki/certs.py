"""The built-in CA: keys, CA certificates and leaf issuance with pyca/cryptography.

Profiles follow RFC 5280 and the CA/Browser Forum baseline profile where it applies to private TLS:
critical basicConstraints and keyUsage, SKI/AKI, SAN (critical when the subject is empty),
EKU from the profile, random 159-bit serials, CRL distribution point and OCSP when configured.
`now` is a parameter everywhere so tests control the clock instead of sleeping.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from collections.abc import Iterator, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sync.clock import utcnow

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
_PUBLIC_KEY_TYPES = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)
# What a certificate found out there (or a CSR) may carry.
AnyPublicKey = CertificatePublicKeyTypes
# The hashes the X.509 builders accept (None: Ed25519, which hashes internally).
SignatureHash = hashes.SHA256 | hashes.SHA384 | None

# Certificates are backdated slightly so that a relying party with a slow clock accepts them.
BACKDATE = timedelta(minutes=1)
EKU_OIDS = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}


def generate_key(key_type: str) -> PrivateKey:
    if key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}")


def spki_sha256(key: PrivateKey | AnyPublicKey) -> str:
    """SHA-256 (hex) of the SubjectPublicKeyInfo: one key's identity, whatever certifies it."""
    public = key.public_key() if isinstance(key, _PRIVATE_KEY_TYPES) else key
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def public_key_of(certificate: x509.Certificate) -> PublicKey:
    """The public key of a certificate certsync made (a CA's or a leaf's): one of the key types it issues."""
    key = certificate.public_key()
    if not isinstance(key, _PUBLIC_KEY_TYPES):
        raise ValueError(f"{certificate.subject.rfc4514_string()}: unsupported key {type(key).__name__}")
    return key


def key_type_of(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa-{key.key_size}"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(key.curve.name, f"ec-{key.curve.name}")
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    raise ValueError(f"unsupported key {type(key).__name__}")


def signature_hash(key: PrivateKey) -> SignatureHash:
    """The hash that goes with the signing key (None for Ed25519, which hashes internally)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


@dataclass(frozen=True)
class Issuer:
    """A CA that can sign: its certificate, key and the URLs it stamps on what it signs."""

    certificate: x509.Certificate
    key: PrivateKey
    crl_url: str | None = None
    ocsp_url: str | None = None

    @functools.cached_property
    def leaf_parts(self) -> _IssuerParts:
        """What every leaf it signs takes from it, computed once per Issuer (batch issuance)."""
        cert = self.certificate
        return _IssuerParts(
            cert.subject,
            cert.not_valid_after_utc,
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key_of(cert)),
            tuple(_revocation_pointers(self)),
            signature_hash(self.key),
        )


@dataclass(frozen=True)
class _IssuerParts:
    subject: x509.Name
    not_after: datetime
    authority_key_id: x509.AuthorityKeyIdentifier
    pointers: tuple[tuple[x509.ExtensionType, bool], ...]  # CRL distribution point, OCSP URL
    hash: SignatureHash


def create_ca(
    subject: str,
    key: PrivateKey,
    validity: timedelta,
    *,
    parent: Issuer | None = None,
    path_length: int | None = None,
    name_constraints: x509.NameConstraints | None = None,
    now: datetime | None = None,
) -> x509.Certificate:
    """A root (parent None, self-signed) or an intermediate signed by `parent`. path_length None:
    unconstrained (the config derives it from the hierarchy: Config.path_length_of)."""
    now = now or utcnow()
    name = x509.Name.from_rfc4514_string(subject)
    if parent is None:
        issuer_name, signer, issuer_public = name, key, key.public_key()
    else:
        issuer_name, signer = parent.certificate.subject, parent.key
        issuer_public = public_key_of(parent.certificate)
        # An intermediate may not outlive its parent.
        validity = min(validity, parent.certificate.not_valid_after_utc - now)
    builder = (
        _base_builder(name, issuer_name, key.public_key(), now, validity, issuer_public)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if name_constraints is not None:  # RFC 5280 4.2.1.10: MUST be critical
        builder = builder.add_extension(name_constraints, critical=True)
    if parent is not None:
        builder = _add_revocation_pointers(builder, parent)
    return builder.sign(signer, signature_hash(signer))


def issue_leaf(
    issuer: Issuer,
    public_key: PublicKey,
    *,
    common_name: str | None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    usages: Sequence[str] = ("serverAuth",),
    validity: timedelta,
    now: datetime | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """An end-entity certificate for `public_key`, signed by `issuer`.

    The validity is clipped so that the leaf never outlives its issuer. `sans`: the
    subject_alt_names(common_name, dns_names, ip_addresses) the caller already has.
    """
    now = now or utcnow()
    parts = issuer.leaf_parts
    validity = min(validity, parts.not_after - now)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    if sans is None:
        sans = subject_alt_names(common_name, dns_names, ip_addresses)
    builder = (
        _base_builder(subject, parts.subject, public_key, now, validity, None, authority_key_id=parts.authority_key_id)
        .add_extension(_LEAF_CONSTRAINTS, critical=True)
        .add_extension(_leaf_key_usage(public_key), critical=True)
        .add_extension(_extended_key_usage(tuple(usages)), critical=False)
        # RFC 5280 4.2.1.6: SAN is critical when the subject is empty.
        .add_extension(x509.SubjectAlternativeName(sans), critical=not common_name)
    )
    for extension, critical in parts.pointers:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer.key, parts.hash)


def subject_alt_names(
    common_name: str | None, dns_names: Sequence[str], ip_addresses: Sequence[str]
) -> list[x509.GeneralName]:
    """SANs in a stable order; the CN is always among them (CA/B BR 7.1.4.3)."""
    names: list[x509.GeneralName] = []
    ips = [ipaddress.ip_address(ip) for ip in ip_addresses]
    dns = list(dns_names)
    if common_name:
        try:
            if not _may_be_ip(common_name):  # skip the costly ValueError for the usual DNS name
                raise ValueError(common_name)
            cn_ip = ipaddress.ip_address(common_name)
            if cn_ip not in ips:
                ips.insert(0, cn_ip)
        except ValueError:
            if common_name.lower() not in (d.lower() for d in dns):
                dns.insert(0, common_name)
    names.extend(x509.DNSName(d) for d in dns)
    names.extend(x509.IPAddress(ip) for ip in ips)
    return names


@functools.lru_cache(maxsize=16)
def _extended_key_usage(usages: tuple[str, ...]) -> x509.ExtendedKeyUsage:
    return x509.ExtendedKeyUsage([EKU_OIDS[u] for u in usages])


def _may_be_ip(text: str) -> bool:
    """False only for text that ipaddress.ip_address would refuse: IPv6 has ':', IPv4 is digits and dots."""
    return ":" in text or text.replace(".", "").isdigit()


_LEAF_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    now: datetime,
    validity: timedelta,
    issuer_public: PublicKey | None,
    *,
    authority_key_id: x509.AuthorityKeyIdentifier | None = None,
) -> x509.CertificateBuilder:
    not_before = now - BACKDATE
    if authority_key_id is None:
        assert issuer_public is not None, "one of the two is given"
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_id, critical=False)
    )


def _leaf_key_usage(public_key: PublicKey) -> x509.KeyUsage:
    # RSA keys may also encipher keys (TLS 1.2 RSA key exchange); EC and EdDSA keys only sign.
    return _KEY_USAGES[isinstance(public_key, rsa.RSAPublicKey)]


_KEY_USAGES = {
    is_rsa: x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    for is_rsa in (False, True)
}


def _revocation_pointers(issuer: Issuer) -> Iterator[tuple[x509.ExtensionType, bool]]:
    """(extension, critical) for the CRL distribution point and OCSP URL the issuer stamps."""
    if issuer.crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(issuer.crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        yield x509.CRLDistributionPoints([point]), False
    if issuer.ocsp_url:
        access = x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(issuer.ocsp_url)
        )
        yield x509.AuthorityInformationAccess([access]), False


def _add_revocation_pointers(builder: x509.CertificateBuilder, issuer: Issuer) -> x509.CertificateBuilder:
    for extension, critical in _revocation_pointers(issuer):
        builder = builder.add_extension(extension, critical=critical)
    return builder


def issue_ocsp_signer(
    issuer: Issuer, public_key: PublicKey, validity: timedelta, *, now: datetime | None = None
) -> x509.Certificate:
    """A delegated OCSP responder certificate (RFC 6960 4.2.2.2): issued directly by the CA,
    id-kp-OCSPSigning, digitalSignature only, with id-pkix-ocsp-nocheck (its own status is not
    checked: it is short-lived instead). It carries no revocation pointers."""
    now = now or utcnow()
    parts = issuer.leaf_parts
    validity = min(validity, parts.not_after - now)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "OCSP responder"),
            *issuer.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME),
        ]
    )
    builder = (
        _base_builder(subject, parts.subject, public_key, now, validity, None, authority_key_id=parts.authority_key_id)
        .add_extension(_LEAF_CONSTRAINTS, critical=True)
        .add_extension(_KEY_USAGES[False], critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
    )
    return builder.sign(issuer.key, parts.hash)
