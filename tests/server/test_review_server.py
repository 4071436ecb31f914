"""Security review of `certsync serve` (issue 12): each test here pins a defect found in review,
against a real server. One plain-HTTP loopback server for the module: two profiles allowing the
same names (web, web2), both served over EST and ACME."""
from __future__ import annotations

import base64
import json
import secrets
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.server.acme_support import Client, TokenServer, b64, free_port
from tests.support.server import CertsyncServer

WEB2 = """
[profile.web2]
ca = "issuing"
allowed_domains = ["*.example.internal"]
usages = ["serverAuth", "clientAuth"]
validity = "30d"
"""


def server_toml(http_port: int) -> str:
    return "\n".join(["rate_limit = 0", "[server.est]", 'profiles = ["web", "web2"]', "[server.acme]",
                      'profiles = ["web", "web2"]', f"http_port = {http_port}",
                      'resolve = {"*.example.internal" = "127.0.0.1"}'])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    with CertsyncServer(tmp_path_factory.mktemp("review"), server_toml=server_toml(port), extra_toml=WEB2) as s:
        s.http_port = port
        s.tokens = {p: s.token(f"all-{p}", "read", "sign", "issue", profile=p) for p in ("web", "web2")}
        yield s


def csr_der(*names: str, key=None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def call(server: CertsyncServer, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def est_enroll(server: CertsyncServer, profile: str, *names: str) -> tuple[int, bytes]:
    return call(server, "POST", f"/.well-known/est/{profile}/simpleenroll", base64.b64encode(csr_der(*names)),
                {"Content-Type": "application/pkcs10", "Authorization": f"Bearer {server.tokens[profile]}"})


def api_get(server: CertsyncServer, profile: str, name: str) -> tuple[int, dict]:
    status, body = call(server, "GET", f"/api/v1/certificates/{name}",
                        headers={"Authorization": f"Bearer {server.tokens[profile]}"})
    return status, json.loads(body)


# -- request bodies are bounded before they are read -------------------------------------------------------
@pytest.mark.parametrize("path, media", [("/acme/web/new-order", "application/jose+json"),
                                         ("/.well-known/est/web/simpleenroll", "application/pkcs10"),
                                         ("/api/v1/sign", "application/json"),
                                         ("/ocsp/issuing", "application/ocsp-request")])
def test_review_huge_body_is_refused_before_it_is_all_sent(server, path, media):
    """A client announcing 100 MB and sending 200 KiB gets its answer at once: the server stops
    reading at its limit instead of waiting for (and holding in memory) the whole body."""
    headers = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media}\r\n"
               f"Authorization: Bearer {server.tokens['web']}\r\nContent-Length: 100000000\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(headers.encode())
        try:
            sock.sendall(b"A" * 200 * 1024)
        except OSError:
            pass                                   # the server may already have closed: what we want
        sock.settimeout(5)
        try:
            first = sock.recv(200)
        except socket.timeout:
            pytest.fail(f"{path}: no answer while the announced body was still coming")
    assert first.startswith(b"HTTP/1.1 4") or first.startswith(b"HTTP/1.1 200"), first   # OCSP: 200 malformed


# -- rate limits count clients, not Authorization headers ---------------------------------------------------
def test_review_random_credentials_do_not_bypass_the_rate_limit(tmp_path):
    """The limiter keyed on a hash of whatever Authorization header came: a fresh made-up token per
    request gave each its own full bucket. Unproven credentials must count against the address."""
    with CertsyncServer(tmp_path, server_toml="rate_limit = 60") as s:      # burst 10
        statuses = [call(s, "GET", "/openapi.json", headers={"Authorization": f"Bearer cst_{secrets.token_hex(8)}"})[0]
                    for _ in range(25)]
        assert 429 in statuses, statuses
        good = s.token("good", "read")
        # a real token still has a bucket of its own once it has been seen to work
        ok = [call(s, "GET", "/api/v1/certificates", headers={"Authorization": f"Bearer {good}"})[0]
              for _ in range(5)]
        assert ok.count(200) >= 4, ok
