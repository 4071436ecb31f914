"""The discovery inventory in the store: certificates by fingerprint, locations seen and gone."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, UTC

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync.pki.facts import facts_of, problems
from sync.store import Sighting, Store

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def self_signed(cn: str, *, key=None, days: int = 30, algorithm=hashes.SHA256()) -> x509.Certificate:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, algorithm)
    )


def test_facts_and_problems(tmp_path):
    # cryptography refuses to sign with SHA-1: openssl makes the old certificate
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-sha1",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "old.pem",
            "-subj",
            "/CN=old.example",
            "-days",
            "5",
            "-addext",
            "subjectAltName=DNS:old.example",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    weak = x509.load_pem_x509_certificate((tmp_path / "old.pem").read_bytes())
    f = facts_of(weak)
    assert f.key_type == "rsa" and f.key_size == 1024 and f.self_signed and f.sans == ["DNS:old.example"]
    assert f.common_name == "old.example" and "sha1" in f.signature_algorithm.lower()
    now = weak.not_valid_before_utc
    assert problems(f, now, timedelta(days=30)) == ["expiring", "weak-key", "weak-signature"]
    assert problems(facts_of(self_signed("ok.example", days=90)), NOW, timedelta(days=30)) == []
    assert problems(f, now + timedelta(days=6), timedelta(days=30))[0] == "expired"


def test_locations_seen_then_gone(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db", create=True)
    a, b = facts_of(self_signed("a.example")), facts_of(self_signed("b.example"))
    with store.transaction() as tx:
        summary = tx.discovery.record(
            [(a, False), (b, True)],
            [Sighting("tls", "tls://127.0.0.1:1", a.fingerprint), Sighting("tls", "tls://127.0.0.1:2", b.fingerprint)],
            ["tls://127.0.0.1:"],
            NOW,
        )
    assert (summary.certificates_new, summary.locations_new, summary.locations_gone) == (2, 2, 0)
    later = NOW + timedelta(hours=1)
    with store.transaction() as tx:
        summary = tx.discovery.record(
            [(a, False)], [Sighting("tls", "tls://127.0.0.1:1", a.fingerprint)], ["tls://127.0.0.1:"], later
        )
        assert (summary.certificates_new, summary.locations_new, summary.locations_gone) == (0, 0, 1)
        found = tx.discovery.found()
        assert [f.certificate.fingerprint for f in found] == [a.fingerprint]
        assert [f.certificate.fingerprint for f in tx.discovery.found(include_gone=True)] == sorted(
            [a.fingerprint, b.fingerprint], key=lambda fp: {a.fingerprint: 0, b.fingerprint: 1}[fp]
        )
        assert tx.discovery.found(unmanaged=True)[0].certificate.fingerprint == a.fingerprint
        assert tx.discovery.lookup(a.fingerprint[:10]).certificate.subject == "CN=a.example"
        assert tx.discovery.lookup("tls://127.0.0.1:2").locations[0].gone_since == later
    store.close()
