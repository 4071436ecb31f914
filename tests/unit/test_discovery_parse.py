"""Certificates out of the shapes files and secrets hold (sync.discovery.parse)."""

from __future__ import annotations

import base64
import json

import pytest
from datetime import datetime, timedelta, UTC

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from sync.discovery.parse import certificates

NOW = datetime.now(UTC)


def cert(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    c = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=9))
        .sign(key, hashes.SHA256())
    )
    return c, key


A, KEY = cert("a.example")
B, _ = cert("b.example")
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


def test_pem_chain_with_a_key_between():
    key_pem = KEY.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert certificates(key_pem + A.public_bytes(PEM) + b"junk\n" + B.public_bytes(PEM)) == [A, B]


def test_der_pkcs7_and_base64():
    assert certificates(A.public_bytes(DER)) == [A]
    p7 = pkcs7.serialize_certificates([A, B], DER)
    assert set(certificates(p7)) == {A, B}  # a SET OF: no order
    assert set(certificates(base64.b64encode(p7))) == {A, B}
    assert certificates(pkcs7.serialize_certificates([B], PEM)) == [B]


def test_pkcs12_with_and_without_password():
    pfx = pkcs12.serialize_key_and_certificates(b"x", KEY, A, [B], serialization.BestAvailableEncryption(b"pw"))
    assert certificates(pfx) == []
    assert certificates(pfx, passwords=[None, b"pw"]) == [A, B]
    assert certificates(base64.b64encode(pfx), passwords=[b"pw"]) == [A, B]
    open_pfx = pkcs12.serialize_key_and_certificates(b"x", KEY, A, None, serialization.NoEncryption())
    assert certificates(open_pfx) == [A]


def test_json_documents():
    doc = {
        "certificate": A.public_bytes(PEM).decode(),
        "private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----",
        "chain": [B.public_bytes(PEM).decode()],
    }
    assert certificates(json.dumps(doc)) == [A, B]
    assert certificates(json.dumps({"data": {"tls.crt": base64.b64encode(A.public_bytes(PEM)).decode()}})) == [A]


def test_garbage_yields_nothing():
    for data in (
        b"",
        b"hello",
        b"\x30\x03\x02\x01\x01",
        b"{not json",
        b"A" * 100,
        b"-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----",
        b"x" * (5 * 1024 * 1024),
    ):
        assert certificates(data) == []


def test_der_ending_in_a_whitespace_byte():
    """Binary DER is not stripped: a certificate whose last byte is 0x20, 0x09-0x0d still parses."""
    from tests.support.tls_endpoints import make

    key = ec.generate_private_key(ec.SECP256R1())
    for _ in range(400):
        der = make("ws.example.test", key=key).cert.public_bytes(serialization.Encoding.DER)
        if der[-1:] in b" \t\n\r\x0b\x0c":
            break
    else:
        pytest.skip("no certificate ending in a whitespace byte in 400 tries")
    assert [c.public_bytes(serialization.Encoding.DER) for c in certificates(der)] == [der]
