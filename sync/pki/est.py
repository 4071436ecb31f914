"""EST (RFC 7030) encodings: the base64 bodies, certs-only PKCS#7 and CsrAttrs.

RFC 7030 says every body is base64 with a Content-Transfer-Encoding header; RFC 8951 says to ignore
that header and always use base64. Clients still differ (line breaks, PEM, even raw DER), so a
request body is read in whatever of those forms it comes and a response is always base64 in
76-character lines (RFC 2045), which every EST client decodes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.der import encoder
from pyasn1.type import base, namedtype, univ

from sync.errors import UsageError
from sync.pki import certs, csr as csr_checks

# OIDs named in CsrAttrs (RFC 7030 4.5.2, RFC 9908)
ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
ED25519 = "1.3.101.112"
CURVES = {"ec-p256": "1.2.840.10045.3.1.7", "ec-p384": "1.3.132.0.34"}
SIGNATURES = {
    "ec-p256": "1.2.840.10045.4.3.2",
    "ec-p384": "1.2.840.10045.4.3.3",  # ecdsa-with-SHA256/384
    "rsa": "1.2.840.113549.1.1.11",
    "ed25519": ED25519,
}  # sha256WithRSAEncryption


def encode(der: bytes) -> bytes:
    """base64 in 76-character lines (RFC 2045), LF-terminated: EST clients take either line end, and
    `base64 -d` (coreutils) refuses CR."""
    return base64.encodebytes(der)


def decode(body: bytes) -> bytes:
    """DER from a request body: base64 (line breaks and other whitespace ignored), PEM, or raw DER
    (a DER SEQUENCE with a long length starts 0x30 0x8x, which no base64 text does)."""
    if b"-----BEGIN" in body:
        return body  # PEM: the loaders take it as it is
    if body[:1] == b"\x30" and body[1:2] >= b"\x80":
        return body
    text = b"".join(body.split())
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("the body is not base64 (RFC 7030: a base64-encoded DER PKCS#10 request)") from None
    if not der:
        raise UsageError("the body is empty (RFC 7030: a base64-encoded DER PKCS#10 request)")
    return der


def certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """A degenerate (certs-only) PKCS#7 SignedData, DER."""
    return pkcs7.serialize_certificates(list(certificates), serialization.Encoding.DER)


class _Values(univ.SetOf):
    componentType = univ.Any()


class _Attribute(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("type", univ.ObjectIdentifier()), namedtype.NamedType("values", _Values())
    )


class _AttrOrOID(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("oid", univ.ObjectIdentifier()), namedtype.NamedType("attribute", _Attribute())
    )


class _CsrAttrs(univ.SequenceOf):
    componentType = _AttrOrOID()


def csr_attributes(key_types: Sequence[str]) -> bytes:
    """CsrAttrs (RFC 7030 4.5.2), DER: for each key type the profile accepts, its algorithm as an
    attribute with its parameter (EC: the curve, RFC 7030's own example; RSA: the modulus size, RFC
    9908), and the signature algorithm to sign the CSR with as an OID."""
    attrs = _CsrAttrs()
    items: list[_AttrOrOID] = []
    signatures: list[str] = []
    for key_type in key_types:
        if key_type in CURVES:
            items.append(_attribute(ID_EC_PUBLIC_KEY, univ.ObjectIdentifier(CURVES[key_type])))
            signature = SIGNATURES[key_type]
        elif key_type.startswith("rsa-"):
            items.append(_attribute(RSA_ENCRYPTION, univ.Integer(int(key_type.removeprefix("rsa-")))))
            signature = SIGNATURES["rsa"]
        elif key_type == "ed25519":
            items.append(_oid(ED25519))
            continue  # the key's OID is its signature algorithm
        else:
            raise ValueError(f"unknown key type {key_type!r}")
        if signature not in signatures:
            signatures.append(signature)
    items += [_oid(s) for s in signatures]
    for i, item in enumerate(items):
        attrs.setComponentByPosition(i, item)
    return bytes(encoder.encode(attrs))


def _oid(oid: str) -> _AttrOrOID:
    choice = _AttrOrOID()
    choice.setComponentByName("oid", univ.ObjectIdentifier(oid))
    return choice


def _attribute(oid: str, value: base.Asn1Item) -> _AttrOrOID:
    values = _Values()
    values.setComponentByPosition(0, univ.Any(encoder.encode(value)))
    attribute = _Attribute()
    attribute.setComponentByName("type", univ.ObjectIdentifier(oid))
    attribute.setComponentByName("values", values)
    choice = _AttrOrOID()
    choice.setComponentByName("attribute", attribute)
    return choice


def server_key_request(csr_data: bytes, key: certs.PrivateKey) -> bytes:
    """serverkeygen (RFC 7030 4.4): the client's CSR says what to certify (its subject and SAN; its
    own key is not used), so a CSR with the same subject and SAN is made for the key made here (DER)."""
    request = csr_checks.load_csr(csr_data)
    try:
        if not request.is_signature_valid:
            raise UsageError("CSR: the signature does not verify")
        builder = x509.CertificateSigningRequestBuilder().subject_name(request.subject)
        try:
            san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            builder = builder.add_extension(san.value, critical=san.critical)
        except x509.ExtensionNotFound:
            pass
        return builder.sign(key, certs.signature_hash(key)).public_bytes(serialization.Encoding.DER)
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise UsageError(f"CSR: malformed subject or extension request ({str(exc).splitlines()[0]})") from None
