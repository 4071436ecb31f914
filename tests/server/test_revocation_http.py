"""CRL distribution and the OCSP responder of `certsync serve`, checked with openssl as the
relying party: `openssl ocsp` for good / revoked / unknown, `openssl verify -crl_check
-crl_download` fetching the CRL from the URL written into the certificate."""

from __future__ import annotations

import base64
import subprocess
import urllib.error
import urllib.request
from datetime import datetime, UTC
from email.utils import parsedate_to_datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.server import CertsyncServer

CERTS = """
[certificate.api]
profile = "web"
dns_names = ["api.example.internal"]
[certificate.www]
profile = "web"
dns_names = ["www.example.internal"]
"""


def split_pem(text: str) -> list[str]:
    blocks = text.split("-----END CERTIFICATE-----")
    return [
        b[b.index("-----BEGIN CERTIFICATE-----") :] + "-----END CERTIFICATE-----\n"
        for b in blocks
        if "-----BEGIN CERTIFICATE-----" in b
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server whose public_url is its own address: the certificates point at it. The port is
    chosen first (the URLs are written into the certificates at issuance)."""
    import socket

    folder = tmp_path_factory.mktemp("revocation")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = CertsyncServer(folder, extra_toml=CERTS, apply=True, server_toml=f'public_url = "http://127.0.0.1:{port}"')
    for name in ("api", "www"):
        (folder / f"{name}.pem").write_text(split_pem(s.cli("export", name).stdout.decode())[0])
    s.cli("revoke", "www", "--reason", "keyCompromise")
    s.start("--listen", f"127.0.0.1:{port}")
    yield s
    s.stop()


def openssl(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_certificates_point_at_the_server(server):
    cert = x509.load_pem_x509_certificate((server.folder / "api.pem").read_bytes())
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == f"{server.url}/crl/issuing.crl"
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert aia[0].access_location.value == f"{server.url}/ocsp/issuing"


@pytest.mark.parametrize("name, status", [("api", "good"), ("www", "revoked")])
def test_openssl_ocsp_good_and_revoked(server, name, status):
    result = openssl(
        "ocsp",
        "-issuer",
        "issuing.pem",
        "-cert",
        f"{name}.pem",
        "-url",
        f"{server.url}/ocsp/issuing",
        "-CAfile",
        "root.pem",
        "-resp_text",
        cwd=server.folder,
    )
    out = result.stdout + result.stderr
    assert f"{name}.pem: {status}" in out, out
    assert "Response verify OK" in out
    assert "OCSP Nonce" in out  # openssl sends one; it is echoed
    assert "This Update" in out and "Next Update" in out
    if status == "revoked":
        assert "Reason: keyCompromise" in out


def test_delegated_responder_signs_with_ocsp_signing_eku(server):
    cert = x509.load_pem_x509_certificate((server.folder / "api.pem").read_bytes())
    issuer = x509.load_pem_x509_certificate(server.chain_pem.read_bytes())
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    der = request.public_bytes(serialization.Encoding.DER)
    http = urllib.request.Request(
        f"{server.url}/ocsp/issuing", data=der, headers={"Content-Type": "application/ocsp-request"}
    )
    with urllib.request.urlopen(http) as reply:
        assert reply.headers["Content-Type"] == "application/ocsp-response"
        response = ocsp.load_der_ocsp_response(reply.read())
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    (signer,) = response.certificates
    assert signer.issuer == issuer.subject
    assert ExtendedKeyUsageOID.OCSP_SIGNING in signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert signer.not_valid_after_utc - signer.not_valid_before_utc <= __import__("datetime").timedelta(days=8)
    signer.verify_directly_issued_by(issuer)


def test_ocsp_get_form_is_cacheable(server):
    cert = x509.load_pem_x509_certificate((server.folder / "api.pem").read_bytes())
    issuer = x509.load_pem_x509_certificate(server.chain_pem.read_bytes())
    der = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, issuer, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    encoded = urllib.request.quote(base64.b64encode(der).decode(), safe="")
    with urllib.request.urlopen(f"{server.url}/ocsp/issuing/{encoded}") as reply:
        response = ocsp.load_der_ocsp_response(reply.read())
        assert "max-age=" in reply.headers["Cache-Control"]
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == cert.serial_number


def test_unknown_serial_and_malformed_and_unknown_ca(server):
    issuer = x509.load_pem_x509_certificate(server.chain_pem.read_bytes())
    cert = x509.load_pem_x509_certificate((server.folder / "api.pem").read_bytes())
    request = (
        ocsp.OCSPRequestBuilder().add_certificate_by_hash(*ocsp_hashes(cert, issuer), 12345, hashes.SHA1()).build()
    )
    assert (
        post_ocsp(server, "issuing", request.public_bytes(serialization.Encoding.DER)).certificate_status
        == ocsp.OCSPCertStatus.UNKNOWN
    )
    assert post_ocsp(server, "issuing", b"not DER").response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert post_ocsp(server, "issuing", b"\x00" * 20000).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    good = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    assert (
        post_ocsp(server, "nope", good.public_bytes(serialization.Encoding.DER)).response_status
        == ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    # the root answers for what it issued (the issuing CA), not for the leaf
    assert (
        post_ocsp(server, "root", good.public_bytes(serialization.Encoding.DER)).response_status
        == ocsp.OCSPResponseStatus.UNAUTHORIZED
    )


def ocsp_hashes(cert, issuer):
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    return request.issuer_name_hash, request.issuer_key_hash


def post_ocsp(server, ca: str, body: bytes) -> ocsp.OCSPResponse:
    http = urllib.request.Request(
        f"{server.url}/ocsp/{ca}", data=body, headers={"Content-Type": "application/ocsp-request"}
    )
    with urllib.request.urlopen(http) as reply:
        assert reply.status == 200
        return ocsp.load_der_ocsp_response(reply.read())


def test_crl_fetched_from_the_certificate_by_openssl_verify(server):
    revoked = openssl(
        "verify",
        "-crl_check",
        "-crl_download",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "issuing.pem",
        "www.pem",
        cwd=server.folder,
    )
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr
    good = openssl(
        "verify",
        "-crl_check",
        "-crl_download",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "issuing.pem",
        "api.pem",
        cwd=server.folder,
    )
    assert good.returncode == 0, good.stdout + good.stderr


def test_crl_endpoint_headers_follow_next_update(server):
    with urllib.request.urlopen(f"{server.url}/crl/issuing.crl") as reply:
        der = reply.read()
        headers = reply.headers
    assert headers["Content-Type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(der)
    assert parsedate_to_datetime(headers["Expires"]) == crl.next_update_utc.replace(microsecond=0)
    max_age = int(headers["Cache-Control"].split("max-age=")[1].split(",")[0])
    half = (crl.next_update_utc - crl.last_update_utc) / 2
    assert 0 < max_age <= half.total_seconds()
    assert "public" in headers["Cache-Control"]
    assert crl.is_signature_valid(x509.load_pem_x509_certificate(server.chain_pem.read_bytes()).public_key())
    # a conditional GET with the ETag is answered 304
    again = urllib.request.Request(f"{server.url}/crl/issuing.crl", headers={"If-None-Match": headers["ETag"]})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(again)
    assert caught.value.code == 304


def test_crl_of_unknown_ca_is_a_404_problem(server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server.url}/crl/nope.crl")
    assert caught.value.code == 404
    assert caught.value.headers["Content-Type"] == "application/problem+json"


def test_a_fresh_crl_is_served_as_is(server):
    """The first fetch of a CA without a CRL publishes one; later fetches serve it, not a re-signed one
    (a new number comes only once half its life has passed: sync.ca.revoke.current_crl)."""
    with urllib.request.urlopen(f"{server.url}/crl/root.crl") as reply:
        first = x509.load_der_x509_crl(reply.read())
    with urllib.request.urlopen(f"{server.url}/crl/root.crl") as reply:
        second = x509.load_der_x509_crl(reply.read())
    number = x509.CRLNumber
    assert (
        first.extensions.get_extension_for_class(number).value.crl_number
        == second.extensions.get_extension_for_class(number).value.crl_number
    )  # fresh: not re-signed
    assert first.last_update_utc <= datetime.now(UTC)
