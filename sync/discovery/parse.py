"""Certificates out of whatever bytes a file or a secret holds: PEM (any number of blocks, keys
skipped), DER, PKCS#7 (PEM or DER), PKCS#12 (with a password, or none), base64 of any of these,
and JSON documents with the certificate in a field (certsync's own json format among them).

Only certificates come out: a private key found next to them is neither kept nor returned.
Nothing here raises on bad input: what cannot be read yields no certificate (the caller says so).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

PEM_CERT = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----.+?-----END (?:X509 |TRUSTED )?CERTIFICATE-----", re.DOTALL
)
PEM_PKCS7 = re.compile(rb"-----BEGIN PKCS7-----.+?-----END PKCS7-----", re.DOTALL)
MAX_INPUT = 4 * 1024 * 1024  # a certificate store is not larger: bigger inputs are not parsed
JSON_FIELDS = (
    "certificate",
    "cert",
    "certificate_pem",
    "cert_pem",
    "chain",
    "fullchain",
    "ca",
    "pem",
    "tls.crt",
    "tls_crt",
    "crt",
    "pfx",
    "pkcs12",
    "value",
)


def certificates(
    data: bytes | str, *, passwords: Iterable[bytes | None] = (None,), depth: int = 0
) -> list[x509.Certificate]:
    """Every certificate in `data`, in the order it holds them (leaf first for a chain file; a
    PKCS#7 SET OF has no order of its own)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if not raw or len(raw) > MAX_INPUT or depth > 2:
        return []
    stripped = raw.strip()
    if stripped[:1] in (b"{", b"["):
        found = _json(stripped, passwords, depth)
        if found:
            return found
    if b"-----BEGIN" in stripped:
        return _pem(stripped)
    # DER as given first: stripping "whitespace" bytes off the end of binary data corrupts ~2% of them
    found = _der(raw, passwords) or (_der(stripped, passwords) if stripped != raw else [])
    if found:
        return found
    decoded = _base64(stripped)
    return certificates(decoded, passwords=passwords, depth=depth + 1) if decoded else []


def _pem(data: bytes) -> list[x509.Certificate]:
    found: list[tuple[int, list[x509.Certificate]]] = []
    for match in PEM_CERT.finditer(data):
        block = (
            match.group(0).replace(b"X509 CERTIFICATE", b"CERTIFICATE").replace(b"TRUSTED CERTIFICATE", b"CERTIFICATE")
        )
        try:
            found.append((match.start(), [x509.load_pem_x509_certificate(block)]))
        except ValueError:
            continue
    for match in PEM_PKCS7.finditer(data):
        try:
            found.append((match.start(), pkcs7.load_pem_pkcs7_certificates(match.group(0))))
        except ValueError:
            continue
    return [cert for _, certs in sorted(found, key=lambda f: f[0]) for cert in certs]


def _der(data: bytes, passwords: Iterable[bytes | None]) -> list[x509.Certificate]:
    if data[:1] != b"\x30":  # every DER structure here is a SEQUENCE
        return []
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    try:
        return pkcs7.load_der_pkcs7_certificates(data)
    except ValueError:
        pass
    for password in passwords:
        try:
            bundle = pkcs12.load_pkcs12(data, password)
        except (ValueError, TypeError):
            continue
        certs = [bundle.cert.certificate] if bundle.cert else []
        return certs + [c.certificate for c in bundle.additional_certs]
    return []


def _base64(data: bytes) -> bytes | None:
    compact = re.sub(rb"\s+", b"", data)
    if len(compact) < 64 or not re.fullmatch(rb"[A-Za-z0-9+/=_-]+", compact):
        return None
    try:
        return base64.b64decode(
            compact + b"=" * (-len(compact) % 4), altchars=b"-_" if b"-" in compact or b"_" in compact else None
        )
    except (binascii.Error, ValueError):
        return None


def _json(data: bytes, passwords: Iterable[bytes | None], depth: int) -> list[x509.Certificate]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return []
    values = list(_string_fields(document))
    found: list[x509.Certificate] = []
    for value in values:
        for cert in certificates(value, passwords=passwords, depth=depth + 1):
            if cert not in found:
                found.append(cert)
    return found


def _string_fields(document, level: int = 0):
    """Strings under the known certificate field names first, then any other string that looks like one."""
    if level > 4:
        return
    if isinstance(document, dict):
        for key in sorted(document, key=lambda k: (str(k).lower() not in JSON_FIELDS, str(k))):
            value = document[key]
            if isinstance(value, str) and (str(key).lower() in JSON_FIELDS or "-----BEGIN" in value):
                yield value
            elif isinstance(value, (dict, list)):
                yield from _string_fields(value, level + 1)
    elif isinstance(document, list):
        for item in document:
            if isinstance(item, str) and "-----BEGIN" in item:
                yield item
            elif isinstance(item, (dict, list)):
                yield from _string_fields(item, level + 1)
