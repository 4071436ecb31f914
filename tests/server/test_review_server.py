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
    return "\n".join(
        [
            "rate_limit = 0",
            "[server.est]",
            'profiles = ["web", "web2"]',
            "[server.acme]",
            'profiles = ["web", "web2"]',
            f"http_port = {http_port}",
            'resolve = {"*.example.internal" = "127.0.0.1"}',
        ]
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    with CertsyncServer(tmp_path_factory.mktemp("review"), server_toml=server_toml(port), extra_toml=WEB2) as s:
        s.http_port = port
        s.tokens = {p: s.token(f"all-{p}", "read", "sign", "issue", profile=p) for p in ("web", "web2")}
        yield s


def csr_der(*names: str, key=None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def call(
    server: CertsyncServer, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def est_enroll(server: CertsyncServer, profile: str, *names: str) -> tuple[int, bytes]:
    return call(
        server,
        "POST",
        f"/.well-known/est/{profile}/simpleenroll",
        base64.b64encode(csr_der(*names)),
        {"Content-Type": "application/pkcs10", "Authorization": f"Bearer {server.tokens[profile]}"},
    )


def api_get(server: CertsyncServer, profile: str, name: str) -> tuple[int, dict]:
    status, body = call(
        server, "GET", f"/api/v1/certificates/{name}", headers={"Authorization": f"Bearer {server.tokens[profile]}"}
    )
    return status, json.loads(body)


# -- request bodies are bounded before they are read -------------------------------------------------------
@pytest.mark.parametrize(
    "path, media",
    [
        ("/acme/web/new-order", "application/jose+json"),
        ("/.well-known/est/web/simpleenroll", "application/pkcs10"),
        ("/api/v1/sign", "application/json"),
        ("/ocsp/issuing", "application/ocsp-request"),
    ],
)
def test_review_huge_body_is_refused_before_it_is_all_sent(server, path, media):
    """A client announcing 100 MB and sending 200 KiB gets its answer at once: the server stops
    reading at its limit instead of waiting for (and holding in memory) the whole body."""
    headers = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media}\r\n"
        f"Authorization: Bearer {server.tokens['web']}\r\nContent-Length: 100000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(headers.encode())
        try:
            sock.sendall(b"A" * 200 * 1024)
        except OSError:
            pass  # the server may already have closed: what we want
        sock.settimeout(5)
        try:
            first = sock.recv(200)
        except TimeoutError:
            pytest.fail(f"{path}: no answer while the announced body was still coming")
    assert first.startswith(b"HTTP/1.1 4") or first.startswith(b"HTTP/1.1 200"), first  # OCSP: 200 malformed


# -- rate limits count clients, not Authorization headers ---------------------------------------------------
def test_review_random_credentials_do_not_bypass_the_rate_limit(tmp_path):
    """The limiter keyed on a hash of whatever Authorization header came: a fresh made-up token per
    request gave each its own full bucket. Unproven credentials must count against the address."""
    with CertsyncServer(tmp_path, server_toml="rate_limit = 60") as s:  # burst 10
        statuses = [
            call(s, "GET", "/openapi.json", headers={"Authorization": f"Bearer cst_{secrets.token_hex(8)}"})[0]
            for _ in range(25)
        ]
        assert 429 in statuses, statuses
        good = s.token("good", "read")
        # until it has worked once, a token counts against its address: let that refill one request
        # (60/min: 1 s) instead of relying on how long the CLI above took
        time.sleep(1.1)
        # a real token still has a bucket of its own once it has been seen to work
        ok = [call(s, "GET", "/api/v1/certificates", headers={"Authorization": f"Bearer {good}"})[0] for _ in range(5)]
        assert ok.count(200) >= 4, ok


# -- an enrollment never adds a version to another profile's certificate ------------------------------------
def test_review_est_enroll_cannot_take_over_another_profiles_certificate(server):
    """EST stored a CSR under a name made from its first DNS name; the same names enrolled under
    another profile became the next version of the first profile's certificate (superseding it,
    moving it to the other profile and out of its own tokens' sight)."""
    assert est_enroll(server, "web", "shared.example.internal")[0] == 200
    status, before = api_get(server, "web", "shared-example-internal")
    assert status == 200 and before["certificate"]["version"] == 1
    status, _ = est_enroll(server, "web2", "shared.example.internal")
    assert status == 200  # web2 gets its certificate, under a name of its own
    status, after = api_get(server, "web", "shared-example-internal")
    assert status == 200, after
    assert after["certificate"]["profile"] == "web" and after["certificate"]["version"] == 1
    assert after["certificate"]["state"] == "active"


def acme_certificate(server: CertsyncServer, profile: str, *names: str) -> tuple[dict, Client]:
    client = Client(f"{server.url}/acme/{profile}/directory")
    assert client.register().status == 201
    order = client.new_order(*names).json
    with TokenServer(server.http_port) as tokens:
        for authz_url in order["authorizations"]:
            authz = client.post(authz_url, None).json
            challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
            tokens.tokens[challenge["token"]] = f"{challenge['token']}.{client.thumbprint()}"
            assert client.post(challenge["url"], {}).json["status"] == "valid"
    done = client.post(order["finalize"], {"csr": b64(csr_der(*names))})
    return {"http": done.status, **done.json}, client


def test_review_acme_finalize_cannot_take_over_another_profiles_certificate(server):
    assert est_enroll(server, "web", "taken.example.internal")[0] == 200
    done, _ = acme_certificate(server, "web2", "taken.example.internal")
    assert done["http"] == 200 and done["status"] == "valid", done
    status, after = api_get(server, "web", "taken-example-internal")
    assert status == 200 and after["certificate"]["profile"] == "web" and after["certificate"]["version"] == 1


def test_review_acme_order_adding_a_name_gets_its_certificate(server):
    """certbot --expand: a second order for the first order's names plus one. Its generated store
    name was the first order's, holding other names: finalize answered badCSR ('choose a name with
    --name'), which no ACME client can do."""
    first, _ = acme_certificate(server, "web", "grow.example.internal")
    assert first["http"] == 200 and first["status"] == "valid", first
    second, _ = acme_certificate(server, "web", "grow.example.internal", "more.example.internal")
    assert second["http"] == 200 and second["status"] == "valid", second


# -- the SQLite store under parallel requests -----------------------------------------------------------------
def test_review_parallel_enrollments_never_hit_the_sqlite_lock(server):
    """A handful of EST and REST enrollments at once, with token checks and audit writes between
    them: every one issued, no 'database is locked' 5xx."""

    def est(i: int) -> int:
        return est_enroll(server, "web", f"par{i}.example.internal")[0]

    def api(i: int) -> int:
        body = json.dumps(
            {
                "csr": x509.load_der_x509_csr(csr_der(f"api{i}.example.internal"))
                .public_bytes(serialization.Encoding.PEM)
                .decode()
            }
        ).encode()
        return call(
            server,
            "POST",
            "/api/v1/sign",
            body,
            {"Content-Type": "application/json", "Authorization": f"Bearer {server.tokens['web']}"},
        )[0]

    started = time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda i: est(i) if i % 2 else api(i), range(24)))
    assert statuses.count(200) + statuses.count(201) == 24, (statuses, time.monotonic() - started)


# -- http-01 validation has a total deadline ----------------------------------------------------------------
def test_review_http01_trickling_responder_cannot_hold_a_worker(tmp_path):
    """validation_timeout was a per-read socket timeout: a responder sending one byte a second kept
    a server thread for hours (8 KiB), and a few dozen such challenges stall every handler."""
    import threading

    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n" + b"x" * 9000:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.5)

    threading.Thread(target=trickle, daemon=True).start()
    toml = server_toml(port) + '\nvalidation_timeout = "2s"'  # the last table is [server.acme]
    try:
        with CertsyncServer(tmp_path, server_toml=toml, extra_toml=WEB2) as s:
            client = Client(f"{s.url}/acme/web/directory")
            client.register()
            order = client.new_order("slow.example.internal").json
            authz = client.post(order["authorizations"][0], None).json
            challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
            started = time.monotonic()
            answer = client.post(challenge["url"], {})
            elapsed = time.monotonic() - started
            assert answer.json["status"] == "invalid", answer.body
            assert elapsed < 8, elapsed
    finally:
        stop.set()
        listener.close()


# -- OCSP answers for a CA only about that CA's certificates (judged fine; kept as a guard) -------------------
def test_review_ocsp_of_one_ca_says_nothing_good_about_another_cas_certificate(server):
    from cryptography.x509 import ocsp

    status, body = est_enroll(server, "web", "ocsp.example.internal")
    assert status == 200
    from cryptography.hazmat.primitives.serialization import pkcs7

    leaf = pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]
    root = x509.load_pem_x509_certificate(server.root_pem.read_bytes())
    issuing = x509.load_pem_x509_certificate(server.chain_pem.read_bytes())
    for ca, issuer in (("root", root), ("root", issuing), ("issuing", root)):
        request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
        _, der = call(
            server,
            "POST",
            f"/ocsp/{ca}",
            request.public_bytes(serialization.Encoding.DER),
            {"Content-Type": "application/ocsp-request"},
        )
        answer = ocsp.load_der_ocsp_response(der)
        assert (
            answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL
            or answer.certificate_status != ocsp.OCSPCertStatus.GOOD
        ), (ca, issuer.subject)
