"""EST (RFC 7030) end to end: `certsync serve` with TLS (its own certificate, issued by certsync),
driven by curl and openssl exactly as docs/server-est.md shows them; deny by default for tokens
and client certificates; the trusted-proxy header mode for mTLS behind a TLS-terminating proxy.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.server import CertsyncServer

OTHER_PROFILE = """
[profile.other]
ca = "issuing"
allowed_domains = ["*.other.internal"]
usages = ["serverAuth", "clientAuth"]
validity = "30d"
"""
EST_TOML = 'est = { profiles = ["web", "other"], default_profile = "web" }'
CSR = (
    "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key "
    "-subj /CN={cn} -addext subjectAltName=DNS:{cn} -outform DER -out {name}.csr.der 2>/dev/null"
    " && base64 {name}.csr.der > {name}.csr.b64"
)
ENROLL = (
    'curl -sS --fail-with-body --cacert root.pem --user "enroller:$TOKEN" --data-binary @{name}.csr.b64 '
    '-H "Content-Type: application/pkcs10" -o {name}.p7.b64 "$EST/simpleenroll"'
    " && base64 -d {name}.p7.b64 | openssl pkcs7 -inform DER -print_certs -out {name}.pem"
)
REENROLL = (
    "curl -sS --cacert root.pem --cert {cert}.pem --key {cert}.key --data-binary @{csr}.csr.b64 "
    '-H "Content-Type: application/pkcs10" -o {out}.p7.b64 -w "%{{http_code}}" "$EST/simplereenroll"'
)


def sh(command: str, cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command}\nexited {result.returncode}: {result.stdout}{result.stderr}")
    return result


def versions(server: CertsyncServer) -> dict[str, tuple[int, str]]:
    """name -> (version, state) of every current certificate, from `certsync list --output json`."""
    listing = json.loads(server.cli("list", "--output", "json").stdout)
    return {c["name"]: (c["version"], c["state"]) for c in listing["certificates"]}


@pytest.fixture(scope="module")
def est(tmp_path_factory):
    server = CertsyncServer(tmp_path_factory.mktemp("est"), tls=True, server_toml=EST_TOML, extra_toml=OTHER_PROFILE)
    server.tokens = {
        name: server.token(name, *scopes, profile=profile)
        for name, scopes, profile in [
            ("enroller", ["sign"], "web"),
            ("reader", ["read"], "web"),
            ("elsewhere", ["sign"], "other"),
            ("gone", ["sign"], "web"),
            ("keygen", ["issue"], "web"),
        ]
    }
    server.cli("token", "revoke", "gone")
    with server:
        server.env = {"EST": f"{server.url}/.well-known/est", "TOKEN": server.tokens["enroller"]}
        yield server
    assert "internal error" not in server.log()  # every refusal above was a 4xx, never a 500


def enroll(est: CertsyncServer, name: str, cn: str) -> x509.Certificate:
    sh(CSR.format(name=name, cn=cn) + " && " + ENROLL.format(name=name), est.folder, **est.env)
    return x509.load_pem_x509_certificate((est.folder / f"{name}.pem").read_bytes())


# -- the server's TLS ---------------------------------------------------------------------------------------
def test_tls_handshake_verifies_and_presents_the_managed_certificate(est):
    out = sh(f"openssl s_client -connect 127.0.0.1:{est.port} -CAfile root.pem </dev/null", est.folder).stdout
    assert "Verify return code: 0 (ok)" in out
    presented = x509.load_pem_x509_certificate(out[out.index("-----BEGIN") :].encode())
    listing = json.loads(est.cli("list", "--output", "json").stdout)
    managed = next(c for c in listing["certificates"] if c["name"] == "certsync-server")
    assert format(presented.serial_number, "x") == managed["serial"]


# -- unauthenticated ----------------------------------------------------------------------------------------
def test_cacerts_holds_the_issuing_ca_and_the_root(est):
    out = sh(
        'curl -sS --cacert root.pem "$EST/cacerts" | base64 -d | openssl pkcs7 -inform DER -print_certs',
        est.folder,
        **est.env,
    ).stdout
    assert "subject=O = certsync tests, CN = certsync Test Issuing" in out
    assert "subject=O = certsync tests, CN = certsync Test Root" in out


def test_csrattrs_names_the_key_type(est):
    out = sh(
        'curl -sS --cacert root.pem "$EST/web/csrattrs" | base64 -d | openssl asn1parse -inform DER',
        est.folder,
        **est.env,
    ).stdout
    assert ":id-ecPublicKey" in out and ":prime256v1" in out and ":ecdsa-with-SHA256" in out


# -- enroll and re-enroll -----------------------------------------------------------------------------------
def test_enroll_verify_then_reenroll_with_the_certificate(est):
    cert = enroll(est, "dev1", "dev1.example.internal")
    assert "dev1.pem: OK" in sh("openssl verify -CAfile root.pem -untrusted issuing.pem dev1.pem", est.folder).stdout
    # the chain as a device learns it: from cacerts
    sh(
        'curl -sS --cacert root.pem "$EST/cacerts" | base64 -d | openssl pkcs7 -inform DER -print_certs -out cas.pem',
        est.folder,
        **est.env,
    )
    assert "dev1.pem: OK" in sh("openssl verify -CAfile root.pem -untrusted cas.pem dev1.pem", est.folder).stdout
    assert versions(est)["dev1-example-internal"] == (1, "active")

    # a new key, the same names, authenticated by the current certificate over TLS
    sh(CSR.format(name="dev1-next", cn="dev1.example.internal"), est.folder)
    code = sh(REENROLL.format(cert="dev1", csr="dev1-next", out="dev1-next"), est.folder, **est.env).stdout
    assert code == "200"
    sh("base64 -d dev1-next.p7.b64 | openssl pkcs7 -inform DER -print_certs -out dev1-next.pem", est.folder)
    assert "OK" in sh("openssl verify -CAfile root.pem -untrusted issuing.pem dev1-next.pem", est.folder).stdout
    renewed = x509.load_pem_x509_certificate((est.folder / "dev1-next.pem").read_bytes())
    assert renewed.subject == cert.subject and renewed.serial_number != cert.serial_number
    assert versions(est)["dev1-example-internal"] == (2, "active")
    audit = est.cli("audit").stdout.decode()
    assert f"cert:{cert.serial_number:x}" in audit and "certificate.reenroll" in audit

    # the superseded certificate no longer re-enrolls
    code = sh(REENROLL.format(cert="dev1", csr="dev1-next", out="stale"), est.folder, **est.env).stdout
    assert code == "401" and "superseded" in (est.folder / "stale.p7.b64").read_text()
    assert versions(est)["dev1-example-internal"] == (2, "active")


def test_reenroll_without_a_client_certificate_is_401(est):
    sh(CSR.format(name="anon", cn="anon.example.internal"), est.folder)
    out = sh(
        'curl -sS -i --cacert root.pem --data-binary @anon.csr.b64 -H "Content-Type: application/pkcs10" '
        '"$EST/simplereenroll"',
        est.folder,
        **est.env,
    ).stdout
    assert out.startswith("HTTP/1.1 401") and 'www-authenticate: Basic realm="certsync EST"' in out


def test_reenroll_with_a_revoked_certificate_is_refused(est):
    enroll(est, "dev2", "dev2.example.internal")
    est.cli("revoke", "dev2-example-internal", "--reason", "superseded")
    before = versions(est)
    code = sh(REENROLL.format(cert="dev2", csr="dev2", out="dev2-again"), est.folder, **est.env).stdout
    assert code == "401" and "revoked" in (est.folder / "dev2-again.p7.b64").read_text()
    assert versions(est) == before


def test_reenroll_for_other_names_or_another_profile_is_refused(est):
    enroll(est, "dev3", "dev3.example.internal")
    sh(CSR.format(name="dev4", cn="dev4.example.internal"), est.folder)
    before = versions(est)
    code = sh(REENROLL.format(cert="dev3", csr="dev4", out="renamed"), est.folder, **est.env).stdout
    assert code == "403" and "differs" in (est.folder / "renamed.p7.b64").read_text()
    other = {**est.env, "EST": est.env["EST"] + "/other"}
    code = sh(REENROLL.format(cert="dev3", csr="dev3", out="crossed"), est.folder, **other).stdout
    assert code == "403" and "profile 'web'" in (est.folder / "crossed.p7.b64").read_text()
    assert versions(est) == before


# -- tokens: deny by default ---------------------------------------------------------------------------------
REFUSALS = [
    ("", 401),  # no credentials
    ("--user enroller:not-the-secret", 401),  # unknown secret
    ("--user someone-else:{enroller}", 401),  # the secret under another name
    ("--user reader:{reader}", 403),  # read scope only
    ("--user elsewhere:{elsewhere}", 403),  # bound to profile other
    ("--user gone:{gone}", 401),  # revoked
    ('-H "Authorization: Bearer {reader}"', 403),
    ('-H "Authorization: Digest x"', 401),  # a scheme EST does not take
]


def test_enroll_refused_without_a_token_for_sign_on_the_profile(est):
    sh(CSR.format(name="refused", cn="refused.example.internal"), est.folder)
    before = versions(est)
    for auth, status in REFUSALS:
        out = sh(
            f'curl -sS -o refused.out -w "%{{http_code}}" --cacert root.pem {auth.format(**est.tokens)} '
            '--data-binary @refused.csr.b64 -H "Content-Type: application/pkcs10" "$EST/simpleenroll"',
            est.folder,
            **est.env,
        ).stdout
        assert out == str(status), auth
        body = (est.folder / "refused.out").read_text()
        assert not any(secret in body for secret in est.tokens.values())
    assert versions(est) == before and "refused-example-internal" not in before


def test_enroll_with_bearer_on_the_labelled_url_and_policy_refusals(est):
    env = {**est.env, "EST": est.env["EST"] + "/web"}
    sh(CSR.format(name="bearer", cn="bearer.example.internal"), est.folder)
    out = sh(
        'curl -sS --fail-with-body --cacert root.pem -H "Authorization: Bearer $TOKEN" '
        '--data-binary @bearer.csr.b64 -H "Content-Type: application/pkcs10" "$EST/simpleenroll" '
        "| base64 -d | openssl pkcs7 -inform DER -print_certs",
        est.folder,
        **env,
    ).stdout
    assert "subject=CN = bearer.example.internal" in out
    sh(CSR.format(name="outside", cn="host.other.internal"), est.folder)  # not a name of profile web
    before = versions(est)
    code = sh(
        'curl -sS -o outside.out -w "%{http_code}" --cacert root.pem --user "enroller:$TOKEN" '
        '--data-binary @outside.csr.b64 -H "Content-Type: application/pkcs10" "$EST/simpleenroll"',
        est.folder,
        **env,
    ).stdout
    assert code == "403" and versions(est) == before


def test_enroll_tolerates_raw_der_pem_and_crlf_base64(est):
    """RFC 8951: the body is base64 whatever Content-Transfer-Encoding says; clients still send
    line breaks of either kind, PEM or raw DER, and each is read."""
    sh(
        CSR.format(name="tol", cn="tol.example.internal")
        + " && openssl req -inform DER -in tol.csr.der -out tol.csr.pem"
        " && sed 's/$/\\r/' tol.csr.b64 > tol.crlf.b64",
        est.folder,
    )
    for body in ("tol.csr.der", "tol.csr.pem", "tol.crlf.b64"):
        code = sh(
            f'curl -sS -o tol.out -w "%{{http_code}}" --cacert root.pem --user "enroller:$TOKEN" '
            f'--data-binary @{body} -H "Content-Type: application/pkcs10" -H "Content-Transfer-Encoding: base64" '
            '"$EST/simpleenroll"',
            est.folder,
            **est.env,
        ).stdout
        assert code == "200", (body, (est.folder / "tol.out").read_text())


@pytest.mark.parametrize(
    "args, status",
    [
        ('--data-binary "not base64!"', 400),
        ('--data-binary "aGVsbG8="', 400),  # base64, not a CSR
        ("--data-binary @big.bin", 413),
    ],
)
def test_bad_enrollment_requests_are_4xx(est, args, status):
    (est.folder / "big.bin").write_bytes(b"A" * 100_000)
    code = sh(
        f'curl -sS -o /dev/null -w "%{{http_code}}" --cacert root.pem --user "enroller:$TOKEN" {args} '
        '-H "Content-Type: application/pkcs10" "$EST/simpleenroll"',
        est.folder,
        **est.env,
    ).stdout
    assert code == str(status)


@pytest.mark.parametrize(
    "command, status",
    [
        (
            'curl -sS -o /dev/null -w "%{http_code}" --cacert root.pem --user "enroller:$TOKEN" --data-binary x '
            '"$EST/simpleenroll"',
            415,
        ),  # form-encoded, not pkcs10
        ('curl -sS -o /dev/null -w "%{http_code}" --cacert root.pem "$EST/simpleenroll"', 405),
        ('curl -sS -o /dev/null -w "%{http_code}" --cacert root.pem "$EST/nosuch/cacerts"', 404),
    ],
)
def test_wrong_method_media_type_or_label(est, command, status):
    assert sh(command, est.folder, **est.env).stdout == str(status)


# -- serverkeygen -------------------------------------------------------------------------------------------
def test_serverkeygen_returns_the_key_once_with_the_certificate(est):
    sh(CSR.format(name="kg", cn="kg.example.internal"), est.folder)
    code = sh(
        'curl -sS -o kg.out -D kg.headers -w "%{http_code}" --cacert root.pem --user "enroller:$TOKEN" '
        '--data-binary @kg.csr.b64 -H "Content-Type: application/pkcs10" "$EST/serverkeygen"',
        est.folder,
        **est.env,
    ).stdout
    assert code == "403"  # sign is not enough: the key leaves the server
    env = {**est.env, "TOKEN": est.tokens["keygen"]}
    sh(
        'curl -sS --fail-with-body -o kg.out -D kg.headers --cacert root.pem --user "keygen:$TOKEN" '
        '--data-binary @kg.csr.b64 -H "Content-Type: application/pkcs10" "$EST/serverkeygen"',
        est.folder,
        **env,
    )
    headers = (est.folder / "kg.headers").read_bytes().split(b"\r\n", 1)[1]
    assert b"cache-control: no-store" in headers.lower()
    message = email.message_from_bytes(headers + (est.folder / "kg.out").read_bytes(), policy=email.policy.HTTP)
    parts = {part.get_content_type(): part.get_payload(decode=True) for part in message.iter_parts()}
    key = serialization.load_der_private_key(parts["application/pkcs8"], None)
    (est.folder / "kg.p7").write_bytes(parts["application/pkcs7-mime"])
    pem = sh("openssl pkcs7 -inform DER -in kg.p7 -print_certs", est.folder).stdout
    cert = x509.load_pem_x509_certificate(pem[pem.index("-----BEGIN") :].encode())
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == "CN=kg.example.internal"
    assert versions(est)["kg-example-internal"] == (1, "active")


# -- mTLS behind a TLS-terminating proxy -------------------------------------------------------------------
PROXY_TOML = 'client_cert_header = "X-SSL-Client-Cert"\ntrusted_proxies = [{}]\nest = {{ default_profile = "web" }}'


def _proxied(folder: Path, proxies: str) -> CertsyncServer:
    server = CertsyncServer(folder, server_toml=PROXY_TOML.format(proxies))
    server.tokens = {"enroller": server.token("enroller", "sign")}
    return server


def _header_reenroll(server: CertsyncServer, cert_pem: bytes, csr: str) -> tuple[str, str]:
    env = {"EST": f"{server.url}/.well-known/est", "CLIENT_CERT": quote(cert_pem.decode(), safe="")}
    out = sh(
        f'curl -sS -o hdr.out -w "%{{http_code}}" -H "X-SSL-Client-Cert: $CLIENT_CERT" '
        f'--data-binary @{csr}.csr.b64 -H "Content-Type: application/pkcs10" "$EST/simplereenroll"',
        server.folder,
        **env,
    ).stdout
    return out, (server.folder / "hdr.out").read_text()


def _http_enroll(server: CertsyncServer, name: str) -> bytes:
    env = {"EST": f"{server.url}/.well-known/est", "TOKEN": server.tokens["enroller"]}
    sh(
        CSR.format(name=name, cn=f"{name}.example.internal")
        + " && "
        + ENROLL.format(name=name).replace("--cacert root.pem ", ""),
        server.folder,
        **env,
    )
    return (server.folder / f"{name}.pem").read_bytes()


def test_trusted_proxy_header_reenrolls_and_is_verified(tmp_path):
    with _proxied(tmp_path, '"127.0.0.1/32"') as server:
        pem = _http_enroll(server, "edge")
        code, body = _header_reenroll(server, pem, "edge")
        assert code == "200", body
        assert versions(server)["edge-example-internal"] == (2, "active")
        # a certificate that does not chain to certsync's CAs, even from the trusted proxy
        sh(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout self.key -out self.pem "
            "-subj /CN=edge.example.internal -addext subjectAltName=DNS:edge.example.internal -days 1 2>/dev/null",
            server.folder,
        )
        code, body = _header_reenroll(server, (server.folder / "self.pem").read_bytes(), "edge")
        assert code == "401" and "does not verify" in body
        code, body = _header_reenroll(server, b"not a certificate", "edge")
        assert code == "401"
        assert versions(server)["edge-example-internal"] == (2, "active")


def test_header_from_an_untrusted_address_is_ignored(tmp_path):
    with _proxied(tmp_path, '"10.0.0.0/8"') as server:
        pem = _http_enroll(server, "edge")
        code, body = _header_reenroll(server, pem, "edge")
        assert code == "401" and "needs the current certificate" in body
        assert versions(server)["edge-example-internal"] == (1, "active")


# -- configuration: EST is off unless profiles are listed ------------------------------------------------------
def _est_paths(tmp_path: Path, server_toml: str) -> list[str]:
    from sync import config
    from sync.server import est as est_routes
    from sync.server.state import ServerState
    from tests.support.server import BASE_TOML

    (tmp_path / "sync.toml").write_text("[server]\n" + server_toml + "\n" + BASE_TOML)
    state = ServerState(config.load(tmp_path / "sync.toml"))
    return [route.path for route in est_routes.routes(state)]


def test_est_is_off_by_default_and_refuses_unknown_profiles(tmp_path):
    from sync.errors import ConfigError

    assert _est_paths(tmp_path, "") == []
    assert "/.well-known/est/{label}/simpleenroll" in _est_paths(tmp_path, 'est = { profiles = ["web"] }')
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        _est_paths(tmp_path, 'est = { default_profile = "nope" }')
