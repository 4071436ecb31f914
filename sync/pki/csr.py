"""CSR-based enrollment: load a PKCS#10 request and decide what certsync may issue for it.

A CSR is a wish list. certsync takes from it only the public key (after checking the request's
signature, i.e. proof of possession) and the names; the names must pass the profile's rules.
Everything else in the request - other subject attributes (O, OU, ...), requested key usages,
EKUs and any other extension - is ignored: the issued certificate's profile comes from the
certsync profile, never from the requester. Requests that ask for CA powers are refused outright
rather than silently downgraded, because the requester clearly expects something we won't issue.

Key policy: only the key types certsync issues for (RSA 2048/3072/4096 with an odd exponent >= 3,
EC P-256/P-384, Ed25519). Within those, the profile decides: `allowed_keys` when set, otherwise
exactly the profile's `key` (the same rule as `policy.check_request`; a profile that should accept
several sizes or families says so in `allowed_keys`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from sync.errors import UsageError
from sync.pki import certs, policy

if TYPE_CHECKING:
    from sync.config import ProfileConfig

RSA_SIZES = (2048, 3072, 4096)
EC_CURVES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
_SAN_TYPE_NAMES: dict[type[x509.GeneralName], str] = {
    x509.RFC822Name: "email (rfc822Name)",
    x509.UniformResourceIdentifier: "URI",
    x509.DirectoryName: "directoryName",
    x509.RegisteredID: "registeredID",
    x509.OtherName: "otherName",
}


@dataclass(frozen=True)
class CsrRequest:
    """What may be issued for a checked CSR. `dns_names` and `ip_addresses` are the SAN entries the
    certificate will carry (the CN included); `common_name` is the subject CN to put in it."""

    public_key: certs.PublicKey
    key_type: str
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """A CSR from PEM or DER bytes (auto-detected)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):  # InvalidVersion: not a ValueError
        raise UsageError("CSR: not a PEM or DER certificate signing request") from None


def check_csr(csr: x509.CertificateSigningRequest, profile_name: str, profile: ProfileConfig) -> CsrRequest:
    """Check `csr` against certsync's key rules and the profile; return what to issue.

    Raises UsageError for a request certsync never honours (bad signature, unsupported key,
    CA powers, unusable names) and PolicyError (a UsageError) for what the profile forbids.
    """
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"CSR: cannot check the signature ({exc})") from None
    if not signature_ok:
        raise UsageError(
            "CSR: the signature does not verify (the request is corrupt or was not "
            "signed by the private key of the public key it contains)"
        )
    public_key = _public_key(csr)
    key_type = _accepted_key_type(public_key)
    extensions = _extensions(csr)
    _refuse_ca_powers(extensions)
    common_name = _subject_cn(csr)
    dns_names, ip_addresses = _requested_names(extensions)
    if common_name is not None:
        if _is_ip(common_name):
            common_name = str(ipaddress.ip_address(common_name))
            if common_name not in ip_addresses:
                ip_addresses.insert(0, common_name)
        elif _is_dns_name(common_name.lower()):
            common_name = common_name.lower()
            if common_name not in dns_names:
                dns_names.insert(0, common_name)
        else:
            common_name = None  # a CN that is not a name ("My Server") is ignored like O/OU
    if not dns_names and not ip_addresses:
        raise UsageError(
            "CSR: requests no DNS name or IP address (neither in the subject CN nor in a subjectAltName extension)"
        )
    # The subject CN must be one of the SANs (CA/B BR 7.1.4.3): without a usable CN, take the first.
    if common_name is None:
        common_name = dns_names[0] if dns_names else ip_addresses[0]
    if len(common_name) > 64:  # RFC 5280 ub-common-name: leave the subject empty, the SAN goes critical
        common_name = None
    policy.check_request(
        profile_name,
        profile,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        key_type=key_type,
        validity=profile.validity,
    )
    # _accepted_key_type refused every key type but the three certs.PublicKey names.
    return CsrRequest(cast(certs.PublicKey, public_key), key_type, common_name, tuple(dns_names), tuple(ip_addresses))


def build_csr(
    key: certs.PrivateKey, *, common_name: str | None, dns_names: list[str], ip_addresses: list[str]
) -> bytes:
    """A PEM CSR for `key` asking for these names (CSR-less issuance: the same checks then apply
    as to a client's CSR). UsageError for a value no CSR can carry."""
    try:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
        builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        csr = builder.sign(key, certs.signature_hash(key))
    except (ValueError, TypeError, UnicodeError) as exc:
        raise UsageError(
            f"cannot make a request for these names: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from None
    return csr.public_bytes(serialization.Encoding.PEM)


def _public_key(csr: x509.CertificateSigningRequest) -> certs.AnyPublicKey:
    try:
        return csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(
            "CSR: unsupported or malformed public key; accepted: RSA 2048/3072/4096, EC P-256/P-384, Ed25519"
        ) from None


def _accepted_key_type(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size not in RSA_SIZES:
            raise UsageError(
                f"CSR: RSA key size {key.key_size} is not accepted (accepted: {', '.join(map(str, RSA_SIZES))})"
            )
        exponent = key.public_numbers().e
        if exponent < 3 or exponent % 2 == 0:
            raise UsageError(f"CSR: RSA public exponent {exponent} is not accepted (must be odd and >= 3)")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES:
            raise UsageError(
                f"CSR: EC curve {key.curve.name} is not accepted (accepted: P-256 (secp256r1), P-384 (secp384r1))"
            )
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise UsageError(
            f"CSR: {type(key).__name__.removeprefix('_')} keys are not accepted; "
            "accepted: RSA 2048/3072/4096, EC P-256/P-384, Ed25519"
        )
    return certs.key_type_of(key)


def _extensions(csr: x509.CertificateSigningRequest) -> x509.Extensions:
    try:
        return csr.extensions
    except (ValueError, x509.DuplicateExtension, UnsupportedAlgorithm) as exc:
        raise UsageError(f"CSR: malformed extension request ({exc})") from None


def _refuse_ca_powers(extensions: x509.Extensions) -> None:
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        pass
    else:
        if constraints.ca:
            raise UsageError(
                "CSR: requests a CA certificate (basicConstraints CA:TRUE); "
                "certsync issues only end-entity certificates from CSRs"
            )
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    powers = [name for name, present in (("keyCertSign", usage.key_cert_sign), ("cRLSign", usage.crl_sign)) if present]
    if powers:
        raise UsageError(
            f"CSR: requests the CA key usage {' and '.join(powers)}; "
            "certsync issues only end-entity certificates from CSRs"
        )


def _subject_cn(csr: x509.CertificateSigningRequest) -> str | None:
    try:
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as exc:
        raise UsageError(f"CSR: malformed subject ({exc})") from None
    if len(cns) > 1:
        raise UsageError("CSR: the subject has more than one CN")
    if not cns:
        return None
    value = cns[0].value
    return value.strip() if isinstance(value, str) else None


def _requested_names(extensions: x509.Extensions) -> tuple[list[str], list[str]]:
    try:
        sans = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns_names: list[str] = []
    ips: list[str] = []
    for general_name in sans:
        if isinstance(general_name, x509.DNSName):
            name = general_name.value.lower()
            if not _is_dns_name(name):
                raise UsageError(
                    f"CSR: subjectAltName {general_name.value!r} is not a valid DNS name "
                    "(letters, digits and '-' labels, a wildcard only as the leftmost label)"
                )
            if name not in dns_names:
                dns_names.append(name)
        elif isinstance(general_name, x509.IPAddress):
            if not isinstance(general_name.value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                raise UsageError(f"CSR: subjectAltName IP {general_name.value} is a network, not an address")
            address = str(general_name.value)
            if address not in ips:
                ips.append(address)
        else:
            kind = _SAN_TYPE_NAMES.get(type(general_name), type(general_name).__name__)
            raise UsageError(f"CSR: requests a {kind} subjectAltName; certsync issues only DNS names and IP addresses")
    return dns_names, ips


def _is_dns_name(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS_NAME.fullmatch(name)) and not _is_ip(name)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
