"""CRLs and OCSP responses, checked by tools nobody here wrote: openssl crl/verify/ocsp and pkilint."""

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from sync.pki import certs
from sync.pki import crl as crls, ocsp as ocsp_responses
from sync.clock import utcnow
from sync.errors import UsageError
from sync.pki.crl import RevokedEntry
from sync.pki.ocsp import CertStatus

BIN = Path(sys.executable).parent
# openssl's display names for the CRL reason codes (crypto/x509/v3_enum.c)
OPENSSL_REASON_TEXT = {
    "keyCompromise": "Key Compromise",
    "cACompromise": "CA Compromise",
    "affiliationChanged": "Affiliation Changed",
    "superseded": "Superseded",
    "cessationOfOperation": "Cessation Of Operation",
    "certificateHold": "Certificate Hold",
    "privilegeWithdrawn": "Privilege Withdrawn",
    "aACompromise": "AA Compromise",
}
# RFC 5280 5.3.1 CRLReason codes (7 is unused)
RFC_REASON_CODES = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}


def pem(obj) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def der(obj) -> bytes:
    return obj.public_bytes(serialization.Encoding.DER)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


def now_s() -> datetime:
    # CRL and OCSP times have a one-second resolution
    return utcnow().replace(microsecond=0)


class Pki:
    def __init__(self, d: Path):
        self.dir = d
        root_key = certs.generate_key("ec-p384")
        self.root = certs.create_ca("CN=Test Root CA,O=certsync", root_key, timedelta(days=3650))
        root_issuer = certs.Issuer(self.root, root_key)
        issuing_key = certs.generate_key("ec-p256")
        issuing = certs.create_ca(
            "CN=Test Issuing CA,O=certsync", issuing_key, timedelta(days=1825), parent=root_issuer
        )
        self.issuer = certs.Issuer(
            issuing, issuing_key, "http://pki.example.internal/crl/issuing.crl", "http://pki.example.internal/ocsp"
        )
        other_key = certs.generate_key("ec-p256")
        self.other = certs.Issuer(certs.create_ca("CN=Other CA", other_key, timedelta(days=365)), other_key)
        self.revoked = self.leaf("revoked.example.internal")
        self.live = self.leaf("live.example.internal")
        self.never = self.leaf("unknown.example.internal")  # issued, but the lookup does not know it
        self.revoked_at = now_s() - timedelta(hours=1)
        self.files = {
            "root": d / "root.pem",
            "issuing": d / "issuing.pem",
            "chain": d / "chain.pem",
            "revoked": d / "revoked.pem",
            "live": d / "live.pem",
            "never": d / "never.pem",
        }
        self.files["root"].write_bytes(pem(self.root))
        self.files["issuing"].write_bytes(pem(issuing))
        self.files["chain"].write_bytes(pem(issuing) + pem(self.root))
        for name in ("revoked", "live", "never"):
            self.files[name].write_bytes(pem(getattr(self, name)))

    def leaf(self, name: str) -> x509.Certificate:
        return certs.issue_leaf(
            self.issuer, certs.generate_key("ec-p256").public_key(), common_name=name, validity=timedelta(days=30)
        )

    def status_of(self, reason: str = "keyCompromise"):
        table = {
            self.revoked.serial_number: CertStatus.revoked(self.revoked_at, reason),
            self.live.serial_number: CertStatus.good(),
        }
        return lambda serial: table.get(serial, CertStatus.unknown())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


# --- reasons ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,name",
    [
        ("keyCompromise", "keyCompromise"),
        ("key-compromise", "keyCompromise"),
        ("key_compromise", "keyCompromise"),
        ("KEY_COMPROMISE", "keyCompromise"),
        ("ca-compromise", "cACompromise"),
        ("cACompromise", "cACompromise"),
        ("aa_compromise", "aACompromise"),
        ("cessation-of-operation", "cessationOfOperation"),
        ("certificate_hold", "certificateHold"),
        ("unspecified", "unspecified"),
    ],
)
def test_parse_reason_accepts_rfc_names_and_variants(text, name):
    assert crls.parse_reason(text) == name
    assert name in crls.REASONS


def test_parse_reason_refuses_unknown_and_names_the_allowed_values():
    with pytest.raises(UsageError, match="unknown revocation reason 'stolen'.*keyCompromise.*aACompromise"):
        crls.parse_reason("stolen")
    assert UsageError("x").exit_code == 2


@pytest.mark.parametrize("text", ["removeFromCRL", "remove-from-crl", "remove_from_crl"])
def test_remove_from_crl_is_refused_for_revoke(text):
    with pytest.raises(UsageError, match="removeFromCRL.*delta CRL"):
        crls.parse_reason(text)
    with pytest.raises(UsageError, match="delta CRL"):
        RevokedEntry(1, now_s(), text)


def test_reasons_mapping_covers_rfc5280():
    assert len(crls.REASONS) == 10
    assert set(crls.REASONS.values()) == set(x509.ReasonFlags)
    assert "removeFromCRL" not in crls.REVOKE_REASONS and len(crls.REVOKE_REASONS) == 9


# --- CRL ----------------------------------------------------------------------------------------


def verify(pki: Pki, crl_path: Path, leaf: str) -> subprocess.CompletedProcess:
    return run(
        "openssl",
        "verify",
        "-crl_check",
        "-CAfile",
        pki.files["root"],
        "-untrusted",
        pki.files["issuing"],
        "-CRLfile",
        crl_path,
        pki.files[leaf],
    )


@pytest.mark.parametrize("reason", crls.REVOKE_REASONS)
def test_crl_revokes_with_each_reason(pki, tmp_path, reason):
    now = now_s()
    crl = crls.build_crl(
        pki.issuer, [RevokedEntry(pki.revoked.serial_number, pki.revoked_at, reason)], crl_number=7, now=now
    )
    path = tmp_path / "crl.pem"
    path.write_bytes(pem(crl))

    text = run("openssl", "crl", "-in", path, "-noout", "-text")
    assert text.returncode == 0, text.stderr
    assert re.search(r"X509v3 CRL Number:\s*\n\s*7\n", text.stdout), text.stdout
    assert f"{pki.revoked.serial_number:X}" in text.stdout
    if reason == "unspecified":  # RFC 5280 5.3.1: absent rather than unspecified
        assert "CRL Reason Code" not in text.stdout
    else:
        assert re.search(rf"X509v3 CRL Reason Code:\s*\n\s*{OPENSSL_REASON_TEXT[reason]}\n", text.stdout), text.stdout

    revoked = verify(pki, path, "revoked")
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr, revoked
    live = verify(pki, path, "live")
    assert live.returncode == 0 and live.stdout.strip().endswith(": OK"), live.stdout + live.stderr


def test_crl_fields_and_pkilint(pki, tmp_path):
    now = now_s()
    entries = [
        RevokedEntry(serial, now - timedelta(days=1), reason)
        for serial, reason in enumerate(crls.REVOKE_REASONS, start=1000)
    ]
    crl = crls.build_crl(pki.issuer, reversed(entries), crl_number=42, now=now, next_update=timedelta(days=2))
    assert crl.is_signature_valid(pki.issuer.certificate.public_key())
    assert crl.issuer == pki.issuer.certificate.subject
    assert crl.last_update_utc == now and crl.next_update_utc == now + timedelta(days=2)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    assert number.value.crl_number == 42 and not number.critical
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    ski = pki.issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.value.key_identifier == ski.digest and not aki.critical
    assert [r.serial_number for r in crl] == sorted(e.serial for e in entries)
    for entry in entries:
        listed = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert listed.revocation_date_utc == entry.revoked_at
        reasons = [e for e in listed.extensions if isinstance(e.value, x509.CRLReason)]
        if entry.reason == "unspecified":
            assert reasons == []
        else:
            assert reasons[0].value.reason == crls.REASONS[entry.reason] and not reasons[0].critical
    path = tmp_path / "crl.der"
    path.write_bytes(der(crl))
    lint = run(BIN / "lint_crl", "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", path)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_crl_number_increases_across_builds(pki, tmp_path):
    first = crls.build_crl(pki.issuer, [], crl_number=1, now=now_s() - timedelta(minutes=5))
    second = crls.build_crl(
        pki.issuer, [RevokedEntry(pki.revoked.serial_number, pki.revoked_at, "superseded")], crl_number=2, now=now_s()
    )
    numbers = []
    for i, crl in enumerate((first, second)):
        path = tmp_path / f"crl{i}.pem"
        path.write_bytes(pem(crl))
        text = run("openssl", "crl", "-in", path, "-noout", "-text").stdout
        numbers.append(int(re.search(r"X509v3 CRL Number:\s*\n\s*(\d+)", text).group(1)))
    assert numbers == [1, 2]
    assert second.last_update_utc > first.last_update_utc
    # an empty CRL is fine: both leaves pass against the first one
    assert verify(pki, tmp_path / "crl0.pem", "revoked").returncode == 0
    assert verify(pki, tmp_path / "crl1.pem", "revoked").returncode != 0


def test_crl_signed_by_rsa_and_ed25519_cas(tmp_path):
    for key_type in ("rsa-2048", "ed25519"):
        key = certs.generate_key(key_type)
        cert = certs.create_ca(f"CN={key_type} CA", key, timedelta(days=30))
        crl = crls.build_crl(
            certs.Issuer(cert, key), [RevokedEntry(5, now_s(), "keyCompromise")], crl_number=1, now=now_s()
        )
        assert crl.is_signature_valid(cert.public_key())
        (tmp_path / "ca.pem").write_bytes(pem(cert))
        (tmp_path / "crl.pem").write_bytes(pem(crl))
        check = run("openssl", "crl", "-in", tmp_path / "crl.pem", "-CAfile", tmp_path / "ca.pem", "-noout")
        assert check.returncode == 0 and "verify OK" in check.stderr + check.stdout, check


@pytest.mark.parametrize(
    "kwargs", [{"crl_number": -1}, {"crl_number": 2**159}, {"crl_number": 1, "next_update": timedelta(0)}]
)
def test_crl_refuses_bad_parameters(pki, kwargs):
    with pytest.raises(ValueError):
        crls.build_crl(pki.issuer, [], now=now_s(), **kwargs)


def test_crl_refuses_duplicate_serial(pki):
    entries = [RevokedEntry(9, now_s()), RevokedEntry(9, now_s(), "superseded")]
    with pytest.raises(ValueError, match="twice"):
        crls.build_crl(pki.issuer, entries, crl_number=1, now=now_s())


# --- OCSP ---------------------------------------------------------------------------------------


def openssl_check(pki: Pki, tmp_path: Path, response: ocsp.OCSPResponse, leaf: str, digest: str = "-sha1"):
    """openssl's verdict on a response for `leaf`: it must accept the CA's signature. openssl matches
    the response's CertID against one it computes with `digest` (which must precede -cert)."""
    path = tmp_path / "resp.der"
    path.write_bytes(der(response))
    result = run(
        "openssl",
        "ocsp",
        "-respin",
        path,
        "-issuer",
        pki.files["issuing"],
        "-CAfile",
        pki.files["chain"],
        digest,
        "-cert",
        pki.files[leaf],
        "-resp_text",
        "-no_nonce",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Response verify OK" in result.stderr, result.stdout + result.stderr
    return result.stdout


def request_for(
    pki: Pki,
    leaf: x509.Certificate,
    *,
    nonce: bytes | None = None,
    algorithm: hashes.HashAlgorithm = hashes.SHA1(),
    issuer: x509.Certificate | None = None,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer or pki.issuer.certificate, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return der(builder.build())


@pytest.mark.parametrize("leaf,expected", [("live", "good"), ("revoked", "revoked"), ("never", "unknown")])
def test_ocsp_answers_a_cryptography_request(pki, tmp_path, leaf, expected):
    nonce = os.urandom(16)
    now = now_s()
    response = ocsp_responses.ocsp_response(
        pki.issuer, request_for(pki, getattr(pki, leaf), nonce=nonce), pki.status_of(), now=now
    )
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status.name.lower() == expected
    assert response.serial_number == getattr(pki, leaf).serial_number
    assert response.this_update_utc == now and response.next_update_utc == now + timedelta(days=1)
    key_hash = x509.SubjectKeyIdentifier.from_public_key(pki.issuer.certificate.public_key()).digest
    assert response.responder_key_hash == key_hash and response.responder_name is None
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert response.certificates == []

    out = openssl_check(pki, tmp_path, response, leaf)
    assert re.search(rf"{leaf}\.pem: {expected}\n", out), out
    assert f"Responder Id: {key_hash.hex().upper()}" in out, out
    assert re.search(rf"OCSP Nonce:\s*\n\s*0410{nonce.hex().upper()}\n", out), out
    if expected == "revoked":
        assert "Reason: keyCompromise" in out
        assert f"Revocation Time: {pki.revoked_at:%b %e %H:%M:%S %Y} GMT" in out, out


@pytest.mark.parametrize("reason", crls.REVOKE_REASONS)
def test_ocsp_revoked_reason_reaches_openssl(pki, tmp_path, reason):
    response = ocsp_responses.ocsp_response(
        pki.issuer, request_for(pki, pki.revoked, algorithm=hashes.SHA256()), pki.status_of(reason), now=now_s()
    )
    out = openssl_check(pki, tmp_path, response, "revoked", "-sha256")
    assert "revoked.pem: revoked" in out
    if reason == "unspecified":
        assert response.revocation_reason is None and "Reason:" not in out
    else:
        assert response.revocation_reason == crls.REASONS[reason]
        # openssl 3.0 names reasons only up to removeFromCRL (8): for privilegeWithdrawn and
        # aACompromise it prints "(UNKNOWN) (0x9)", so check the code on the wire
        assert re.search(rf"Revocation Reason: \S+ \(0x{RFC_REASON_CODES[reason]:x}\)\n", out), out


def test_ocsp_answers_an_openssl_request(pki, tmp_path):
    req = tmp_path / "req.der"
    made = run(
        "openssl", "ocsp", "-issuer", pki.files["issuing"], "-cert", pki.files["revoked"], "-reqout", req, "-no_nonce"
    )
    assert made.returncode == 0, made.stderr
    response = ocsp_responses.ocsp_response(pki.issuer, req.read_bytes(), pki.status_of(), now=now_s())
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    with pytest.raises(x509.ExtensionNotFound):
        response.extensions.get_extension_for_class(x509.OCSPNonce)
    out = openssl_check(pki, tmp_path, response, "revoked")
    assert "revoked.pem: revoked" in out and "Reason: keyCompromise" in out


def test_ocsp_echoes_the_nonce_of_an_openssl_request(pki, tmp_path):
    req = tmp_path / "req.der"
    assert (
        run("openssl", "ocsp", "-issuer", pki.files["issuing"], "-cert", pki.files["live"], "-reqout", req).returncode
        == 0
    )
    response = ocsp_responses.ocsp_response(pki.issuer, req.read_bytes(), pki.status_of(), now=now_s())
    (tmp_path / "resp.der").write_bytes(der(response))
    # with -reqin, openssl compares the nonces itself ("Nonce Verify error" / "no nonce in response")
    check = run(
        "openssl",
        "ocsp",
        "-reqin",
        req,
        "-respin",
        tmp_path / "resp.der",
        "-issuer",
        pki.files["issuing"],
        "-CAfile",
        pki.files["chain"],
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Response verify OK" in check.stderr and "nonce" not in check.stderr.lower(), check.stderr


def test_ocsp_response_passes_pkilint(pki, tmp_path):
    response = ocsp_responses.ocsp_response(
        pki.issuer, request_for(pki, pki.revoked, nonce=os.urandom(16)), pki.status_of(), now=now_s()
    )
    path = tmp_path / "resp.der"
    path.write_bytes(der(response))
    lint = run(BIN / "lint_ocsp_response", "lint", "-s", "WARNING", path)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_ocsp_for_another_ca_is_unauthorized(pki, tmp_path):
    stranger = certs.issue_leaf(
        pki.other, certs.generate_key("ec-p256").public_key(), common_name="x.example", validity=timedelta(days=1)
    )
    for request in (
        request_for(pki, stranger, issuer=pki.other.certificate),
        # the issuing CA's own certificate is the root's to answer for
        request_for(pki, pki.issuer.certificate, issuer=pki.root),
    ):
        response = ocsp_responses.ocsp_response(pki.issuer, request, pki.status_of(), now=now_s())
        assert response.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    (tmp_path / "resp.der").write_bytes(der(response))
    text = run("openssl", "ocsp", "-respin", tmp_path / "resp.der", "-resp_text", "-noverify")
    assert "unauthorized (6)" in text.stdout + text.stderr


@pytest.mark.parametrize("garbage", [b"", b"not an OCSP request", b"\x30\x03\x02\x01\x01"])
def test_ocsp_garbage_is_malformed_request(pki, tmp_path, garbage):
    response = ocsp_responses.ocsp_response(pki.issuer, garbage, pki.status_of(), now=now_s())
    assert response.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    (tmp_path / "resp.der").write_bytes(der(response))
    text = run("openssl", "ocsp", "-respin", tmp_path / "resp.der", "-resp_text", "-noverify")
    assert "malformedrequest (1)" in text.stdout + text.stderr


@pytest.mark.parametrize(
    "status,expected",
    [
        (CertStatus.good(), "good"),
        (CertStatus.unknown(), "unknown"),
        (CertStatus.revoked(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "certificate-hold"), "revoked"),
    ],
)
def test_ocsp_response_for_cert(pki, tmp_path, status, expected):
    response = ocsp_responses.ocsp_response_for_cert(pki.issuer, pki.live, status, now_s())
    out = openssl_check(pki, tmp_path, response, "live")
    assert f"live.pem: {expected}" in out
    if expected == "revoked":
        assert "Reason: certificateHold" in out and "Revocation Time: Jan  2 03:04:05 2026 GMT" in out
    with pytest.raises(ValueError, match="not issued by this CA"):
        ocsp_responses.ocsp_response_for_cert(pki.other, pki.live, status, now_s())


def test_ocsp_signed_by_rsa_and_ed25519_cas(tmp_path):
    for key_type in ("rsa-2048", "ed25519"):
        key = certs.generate_key(key_type)
        issuer = certs.Issuer(certs.create_ca(f"CN={key_type} CA", key, timedelta(days=30)), key)
        leaf = certs.issue_leaf(
            issuer, certs.generate_key("ec-p256").public_key(), common_name="a.example", validity=timedelta(days=1)
        )
        (tmp_path / "ca.pem").write_bytes(pem(issuer.certificate))
        (tmp_path / "leaf.pem").write_bytes(pem(leaf))
        request = der(ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer.certificate, hashes.SHA1()).build())
        response = ocsp_responses.ocsp_response(issuer, request, lambda serial: CertStatus.good(), now=now_s())
        (tmp_path / "resp.der").write_bytes(der(response))
        check = run(
            "openssl",
            "ocsp",
            "-respin",
            tmp_path / "resp.der",
            "-issuer",
            tmp_path / "ca.pem",
            "-CAfile",
            tmp_path / "ca.pem",
            "-cert",
            tmp_path / "leaf.pem",
            "-no_nonce",
        )
        assert "Response verify OK" in check.stderr and "leaf.pem: good" in check.stdout, check


def test_cert_status_validation():
    with pytest.raises(ValueError):
        CertStatus("revoked")
    with pytest.raises(ValueError):
        CertStatus("good", reason="superseded")
    with pytest.raises(ValueError):
        CertStatus("maybe")
    with pytest.raises(UsageError):
        CertStatus.revoked(now_s(), "removeFromCRL")
    assert CertStatus.revoked(now_s(), "key_compromise").reason == "keyCompromise"
