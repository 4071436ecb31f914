"""The CA's certificates checked by tools nobody here wrote: pkilint and openssl verify."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from sync.pki import certs

LINT = str(Path(sys.executable).parent / "lint_pkix_cert")
KEY_TYPES = ["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ed25519"]


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pkilint(path: Path) -> subprocess.CompletedProcess:
    # -s WARNING: INFO notes are not findings; exit 0 means no WARNING, ERROR or FATAL
    return subprocess.run([LINT, "lint", "-s", "WARNING", str(path)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca")
    root_key = certs.generate_key("ec-p384")
    root = certs.create_ca("CN=Test Root CA,O=certsync", root_key, timedelta(days=3650))
    root_issuer = certs.Issuer(root, root_key, "http://pki.example.internal/crl/root.crl")
    inter_key = certs.generate_key("rsa-3072")
    inter = certs.create_ca("CN=Test Issuing CA,O=certsync", inter_key, timedelta(days=1825), parent=root_issuer)
    (d / "root.pem").write_bytes(pem(root))
    (d / "inter.pem").write_bytes(pem(inter))
    issuer = certs.Issuer(
        inter, inter_key, "http://pki.example.internal/crl/issuing.crl", "http://pki.example.internal/ocsp"
    )
    return d, issuer


@pytest.mark.parametrize("name", ["root.pem", "inter.pem"])
def test_ca_certificates_pass_pkilint(hierarchy, name):
    d, _ = hierarchy
    result = pkilint(d / name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize("usages", [["serverAuth"], ["clientAuth"], ["serverAuth", "clientAuth"]])
def test_leaf_passes_pkilint_and_openssl_verify(hierarchy, key_type, usages):
    d, issuer = hierarchy
    key = certs.generate_key(key_type)
    leaf = certs.issue_leaf(
        issuer,
        key.public_key(),
        common_name="api.example.internal",
        dns_names=["api.example.internal", "www.example.internal"],
        ip_addresses=["10.1.2.3"],
        usages=usages,
        validity=timedelta(days=90),
    )
    path = d / f"leaf-{key_type}-{'-'.join(usages)}.pem"
    path.write_bytes(pem(leaf))
    result = pkilint(path)
    assert result.returncode == 0, result.stdout + result.stderr
    purpose = "sslserver" if "serverAuth" in usages else "sslclient"
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            str(d / "root.pem"),
            "-untrusted",
            str(d / "inter.pem"),
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0 and verify.stdout.strip().endswith(": OK"), verify.stdout + verify.stderr


def test_leaf_profile_details(hierarchy):
    _, issuer = hierarchy
    key = certs.generate_key("ec-p256")
    leaf = certs.issue_leaf(
        issuer,
        key.public_key(),
        common_name="api.example.internal",
        dns_names=[],
        usages=["serverAuth"],
        validity=timedelta(days=90),
    )
    ext = leaf.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
    san = ext.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["api.example.internal"]  # CN copied into SAN
    assert not san.critical
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert leaf.serial_number.bit_length() >= 128
    points = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [[n.value for n in p.full_name] for p in points] == [["http://pki.example.internal/crl/issuing.crl"]]
    access = ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [(d.access_method, d.access_location.value) for d in access] == [
        (AuthorityInformationAccessOID.OCSP, "http://pki.example.internal/ocsp")
    ]
    rsa_leaf = certs.issue_leaf(
        issuer,
        certs.generate_key("rsa-2048").public_key(),
        common_name="a.example.internal",
        validity=timedelta(days=1),
    )
    assert rsa_leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_empty_subject_makes_san_critical(hierarchy, tmp_path):
    _, issuer = hierarchy
    leaf = certs.issue_leaf(
        issuer,
        certs.generate_key("ec-p256").public_key(),
        common_name=None,
        dns_names=["svc.example.internal"],
        validity=timedelta(days=30),
    )
    assert len(leaf.subject) == 0
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    path = tmp_path / "nosubject.pem"
    path.write_bytes(pem(leaf))
    assert pkilint(path).returncode == 0


def test_leaf_never_outlives_issuer(hierarchy):
    _, issuer = hierarchy
    leaf = certs.issue_leaf(
        issuer,
        certs.generate_key("ec-p256").public_key(),
        common_name="a.example.internal",
        validity=timedelta(days=100000),
    )
    assert leaf.not_valid_after_utc <= issuer.certificate.not_valid_after_utc


def test_serials_are_unique():
    key = certs.generate_key("ec-p256")
    serials = {certs.create_ca("CN=x", key, timedelta(days=1)).serial_number for _ in range(20)}
    assert len(serials) == 20
