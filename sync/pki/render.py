"""Certificate bundle -> payload for a destination: json | pem | pkcs12.

The fingerprint that goes into the `certsync-fp` label must be stable across renders, or every
run would look like a change. PKCS#12 (random salts) and nothing else here is randomised, so the
fingerprint is taken over the deterministic PEM rendering plus the format and its options: it
changes exactly when the certificate, key, chain, format or PFX cipher changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from sync.clock import rfc3339
from sync.errors import ConfigError
from sync.pki.bundle import Bundle
from sync.pki.certs import PrivateKey

CONTENT_TYPES = {"json": "application/json", "pem": "application/x-pem-file", "pkcs12": "application/x-pkcs12"}


@dataclass(frozen=True)
class RenderOptions:
    format: str = "json"
    pkcs12_password_env: str | None = None
    pkcs12_encryption: str = "aes256"  # or "legacy" (3DES/SHA-1) for old Windows stacks
    password_tag: str = ""  # keyed tag of the PFX password (the store makes it), for the fingerprint


@dataclass(frozen=True)
class Payload:
    body: str
    content_type: str
    fingerprint: str  # first 32 hex of a SHA-256, see module docstring


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_bundle(bundle: Bundle) -> str:
    """Leaf, intermediates (leaf side first, no root), then the PKCS#8 key when there is one."""
    parts = [_pem(bundle.certificate), *(_pem(c) for c in bundle.intermediates)]
    if bundle.private_key is not None:
        parts.append(_key_pem(bundle.private_key))
    return "".join(parts)


def fingerprint(certificates: Sequence[x509.Certificate | bytes], has_key: bool, options: RenderOptions) -> str:
    """Over leaf, intermediates and root (DER) and the format; the key is bound to the leaf.

    Cheap on purpose: a no-change plan computes it for every target without decrypting keys.
    """
    digest = hashlib.sha256()
    # For a PFX: whether it has a password and from which variable, the password's keyed tag
    # (an HMAC under the master key, so that a new password is a new fingerprint; never the
    # password itself, nor a plain hash of it), and the cipher, which only matters with a password.
    password = (options.pkcs12_password_env or "") if options.format == "pkcs12" else ""
    cipher = options.pkcs12_encryption if password else ""
    tag = f"{options.password_tag}|" if password and options.password_tag else ""
    digest.update(f"{options.format}|{password}|{cipher}|{tag}{int(has_key)}|".encode())
    for cert in certificates:  # x509.Certificate, or its DER bytes (as the store keeps them)
        digest.update(cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER))
    return digest.hexdigest()[:32]


def bundle_fingerprint(bundle: Bundle, options: RenderOptions) -> str:
    certs = [bundle.certificate, *bundle.intermediates, bundle.root]
    return fingerprint(certs, bundle.private_key is not None, options)


def render(bundle: Bundle, options: RenderOptions, *, password: bytes | None = None) -> Payload:
    """`password`: the PFX password when the caller read it already (a worker process)."""
    renderers: dict[str, Callable[[Bundle], str]] = {
        "json": _json,
        "pem": pem_bundle,
        "pkcs12": lambda b: _pkcs12(b, options, password),
    }
    body = renderers[options.format](bundle)
    return Payload(body, CONTENT_TYPES[options.format], bundle_fingerprint(bundle, options))


def _json(bundle: Bundle) -> str:
    cert = bundle.certificate
    document = {"certificate": _pem(cert)}
    if bundle.private_key is not None:  # CSR enrollments are chain-only: the client has the key
        document["private_key"] = _key_pem(bundle.private_key)
    document |= {
        "certificate_chain": "".join(_pem(c) for c in bundle.intermediates),
        "ca_certificate": _pem(bundle.root),
        "serial": format(cert.serial_number, "x"),
        "not_after": rfc3339(cert.not_valid_after_utc),
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }
    return json.dumps(document, indent=None, separators=(",", ":"))


def _pkcs12(bundle: Bundle, options: RenderOptions, password: bytes | None = None) -> str:
    if bundle.private_key is None:
        raise ConfigError(
            f"certificate {bundle.name!r} has no private key in the store (CSR enrollment); format pkcs12 needs one"
        )
    password = password or _password(options)
    encryption: serialization.KeySerializationEncryption
    if password is None:
        encryption = serialization.NoEncryption()  # what Azure services expect
    elif options.pkcs12_encryption == "legacy":
        legacy_mac = hashes.SHA1()  # noqa: S303  what pkcs12_encryption = "legacy" asks for (old readers)
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(legacy_mac)
            .build(password)
        )
    else:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(50000)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
    der = pkcs12.serialize_key_and_certificates(
        bundle.name.encode(), bundle.private_key, bundle.certificate, bundle.intermediates or None, encryption
    )
    return base64.b64encode(der).decode()


def _password(options: RenderOptions) -> bytes | None:
    if not options.pkcs12_password_env:
        return None
    return pkcs12_password(options.pkcs12_password_env)


def pkcs12_password(env: str) -> bytes:
    """The PFX password from the environment variable `env` (set and not empty)."""
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"pkcs12_password_env: environment variable {env} is not set or empty")
    return value.encode()
