"""ACME (RFC 8555) against a real `certsync serve`, with real clients: certbot (obtain, renew,
revoke, EAB) and npm's acme-client (http-01, dns-01), plus a bare JWS client for the refusals
real clients never provoke, and two servers sharing one PostgreSQL store."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.server import acme_support
from tests.server.acme_support import Client, TokenServer, TxtServer, b64, free_port
from tests.support.server import CertsyncServer

NAME = "a.example.internal"
OTHER_PROFILE = """
[profile.other]
ca = "issuing"
allowed_domains = ["*.example.internal"]
validity = "30d"
"""


def acme_toml(http_port: int, dns_port: int | None = None, *, require_eab: bool = False) -> str:
    lines = [
        "[server.acme]",
        'profiles = ["web"]',
        f"http_port = {http_port}",
        'resolve = {"*.example.internal" = "127.0.0.1", "example.internal" = "127.0.0.1"}',
    ]
    if dns_port:
        lines.append(f'dns_resolver = "127.0.0.1:{dns_port}"')
    if require_eab:
        lines.append("require_eab = true")
    return OTHER_PROFILE + "\n" + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    server = TxtServer(tmp_path_factory.mktemp("dns") / "txt.json")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def acme(tmp_path_factory, dns):
    """One TLS server for the module: profile web has ACME, profile other does not."""
    port = free_port()
    server = CertsyncServer(
        tmp_path_factory.mktemp("acme"), tls=True, extra_toml=acme_toml(port, dns.port), server_toml="rate_limit = 0"
    )  # every test here comes from 127.0.0.1
    with server:
        server.http_port = port
        server.directory = f"{server.url}/acme/web/directory"
        yield server


def certbot_run(server: CertsyncServer, folder: Path, *args: str) -> subprocess.CompletedProcess:
    binary = acme_support.certbot()
    command = [
        str(binary),
        *args,
        "--config-dir",
        str(folder / "config"),
        "--work-dir",
        str(folder / "work"),
        "--logs-dir",
        str(folder / "logs"),
        "--non-interactive",
        "--server",
        server.directory,
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(server.root_pem)},
    )
    assert result.returncode == 0, (
        f"certbot {args[0]} failed:\n{result.stdout}\n{result.stderr}\n{server.log()[-3000:]}"
    )
    return result


def standalone(server: CertsyncServer) -> list[str]:
    return [
        "--standalone",
        "--http-01-port",
        str(server.http_port),
        "--http-01-address",
        "127.0.0.1",
        "--preferred-challenges",
        "http",
    ]


def audit_events(server: CertsyncServer) -> list[dict]:
    return json.loads(server.cli("--output", "json", "audit").stdout)["events"]


def ocsp_status(server: CertsyncServer, cert: Path) -> str:
    result = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(server.chain_pem),
            "-cert",
            str(cert),
            "-url",
            f"{server.url}/ocsp/issuing",
            "-CAfile",
            str(server.root_pem),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Response verify OK" in result.stderr + result.stdout, result.stderr + result.stdout
    return result.stdout


# -- certbot ------------------------------------------------------------------------------------------------
def test_certbot_obtains_renews_and_revokes(acme, tmp_path):
    certbot_run(
        acme, tmp_path, "certonly", *standalone(acme), "-d", NAME, "--agree-tos", "--register-unsafely-without-email"
    )
    live = tmp_path / "config" / "live" / NAME
    first = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert first.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NAME
    assert chain[1].subject == x509.load_pem_x509_certificate(acme.chain_pem.read_bytes()).subject

    certbot_run(acme, tmp_path, "renew", "--force-renewal", "--no-random-sleep-on-renew", *standalone(acme))
    renewed = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    assert renewed.serial_number != first.serial_number
    assert "good" in ocsp_status(acme, live / "cert.pem")

    certbot_run(
        acme,
        tmp_path,
        "revoke",
        "--cert-path",
        str(live / "cert.pem"),
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    )
    status = ocsp_status(acme, live / "cert.pem")
    assert ": revoked" in status and "keyCompromise" in status

    events = [e for e in audit_events(acme) if e["protocol"] == "acme"]
    issued = [e for e in events if e["action"] == "issue"]
    revoked = [e for e in events if e["action"] == "revoke"]
    assert {format(first.serial_number, "x"), format(renewed.serial_number, "x")} <= {e["serial"] for e in issued}
    assert revoked and revoked[0]["serial"] == format(renewed.serial_number, "x")
    assert all(e["actor"].startswith("acme:") for e in issued + revoked)


def test_certbot_with_external_account_binding(tmp_path):
    port = free_port()
    with CertsyncServer(tmp_path / "srv", tls=True, extra_toml=acme_toml(port, require_eab=True)) as server:
        server.http_port, server.directory = port, f"{server.url}/acme/web/directory"
        client = Client(server.directory, server.root_pem)
        assert client.directory["meta"]["externalAccountRequired"] is True
        refused = client.register()
        assert refused.status == 403 and refused.problem.endswith(":externalAccountRequired")

        mac_key = server.cli("acme", "eab", "create", "team-a", "--profile", "web").stdout.decode().strip()
        store = b"".join(p.read_bytes() for p in server.folder.glob("certsync.db*"))  # with the WAL
        assert b"team-a" in store
        assert base64.urlsafe_b64decode(mac_key + "=" * (-len(mac_key) % 4)) not in store  # sealed, not in clear
        certbot_run(
            server,
            tmp_path,
            "certonly",
            *standalone(server),
            "-d",
            NAME,
            "--agree-tos",
            "--register-unsafely-without-email",
            "--eab-kid",
            "team-a",
            "--eab-hmac-key",
            mac_key,
        )
        assert (tmp_path / "config" / "live" / NAME / "cert.pem").exists()

        second = Client(server.directory, server.root_pem)  # a used key id opens no second account
        reused = second.register(
            {"termsOfServiceAgreed": True, "externalAccountBinding": second.eab("team-a", mac_key)}
        )
        assert reused.status == 403 and reused.problem.endswith(":unauthorized")
        listed = server.cli("acme", "eab", "list").stdout.decode()
        assert "team-a" in listed and mac_key not in listed and "unused" not in listed


# -- npm acme-client ------------------------------------------------------------------------------------------
def node_client(server: CertsyncServer, tmp_path: Path, name: str, kind: str, where: str) -> x509.Certificate:
    modules = acme_support.acme_client()
    out = tmp_path / f"{kind}.pem"
    script = Path(__file__).with_name("acme_client.js")
    result = subprocess.run(
        ["node", str(script), server.directory, name, kind, where, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(modules), "NODE_EXTRA_CA_CERTS": str(server.root_pem)},
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{server.log()[-3000:]}"
    chain = x509.load_pem_x509_certificates(out.read_bytes())
    assert len(chain) == 2
    return chain[0]


def test_acme_client_http_01(acme, tmp_path):
    cert = node_client(acme, tmp_path, "node.example.internal", "http-01", str(acme.http_port))
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["node.example.internal"]


def test_acme_client_dns_01_wildcard(acme, dns, tmp_path):
    cert = node_client(acme, tmp_path, "*.example.internal", "dns-01", str(dns.records_file))
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["*.example.internal"]


# -- refusals ------------------------------------------------------------------------------------------------
def test_profile_not_opted_in_has_no_directory(acme):
    client = Client(acme.directory, acme.root_pem)
    for profile in ("other", "nosuch"):
        reply = client.request("GET", f"{acme.url}/acme/{profile}/directory")
        assert reply.status == 404 and reply.headers["content-type"] == "application/problem+json"
        assert client.request("HEAD", f"{acme.url}/acme/{profile}/new-nonce").status == 404


def test_name_outside_profile_rejected_at_new_order(acme):
    client = Client(acme.directory, acme.root_pem)
    assert client.register().status == 201
    for name in ("evil.example.com", "a.b.example.internal"):
        reply = client.new_order(name)
        assert reply.status == 400 and reply.problem == "urn:ietf:params:acme:error:rejectedIdentifier", reply.body
    reply = client.post(client.directory["newOrder"], {"identifiers": [{"type": "ip", "value": "127.0.0.1"}]})
    assert reply.problem.endswith(":unsupportedIdentifier")


def test_nonce_url_and_signature_checks(acme):
    client = Client(acme.directory, acme.root_pem)
    assert client.register().status == 201
    order_url = client.directory["newOrder"]
    payload = {"identifiers": [{"type": "dns", "value": NAME}]}
    nonce = client.nonce()
    assert client.request("POST", order_url, client.jws(order_url, payload, nonce=nonce)).status == 201
    replayed = client.request("POST", order_url, client.jws(order_url, payload, nonce=nonce))
    assert replayed.status == 400 and replayed.problem.endswith(":badNonce") and replayed.headers["replay-nonce"]
    made_up = client.request("POST", order_url, client.jws(order_url, payload, nonce="bm9uY2U"))
    assert made_up.problem.endswith(":badNonce")
    no_nonce = client.request("POST", order_url, client.jws(order_url, payload, with_nonce=False))
    assert no_nonce.problem.endswith(":badNonce")

    wrong_url = client.request(
        "POST", order_url, client.jws(order_url, payload, url_header=client.directory["newAccount"])
    )
    assert wrong_url.status == 403 and wrong_url.problem.endswith(":unauthorized")

    forged = client.jws(order_url, payload, key=ec.generate_private_key(ec.SECP256R1()))  # kid of client, other key
    assert client.request("POST", order_url, forged).problem.endswith(":unauthorized")

    with_jwk = client.request("POST", order_url, client.jws(order_url, payload, use_jwk=True))
    assert with_jwk.status == 400  # newOrder wants the account's kid, not a bare key
    plain_json = client.request("POST", order_url, client.jws(order_url, payload), content_type="application/json")
    assert plain_json.status == 415

    stranger = Client(acme.directory, acme.root_pem)
    stranger.kid = client.kid.rsplit("/", 1)[0] + "/nosuchaccount"
    assert stranger.new_order(NAME).problem.endswith(":accountDoesNotExist")


def test_garbage_is_a_problem_not_a_crash(acme):
    client = Client(acme.directory, acme.root_pem)
    client.register()
    url = client.directory["newOrder"]
    good = client.jws(url, {"identifiers": [{"type": "dns", "value": NAME}]})
    protected = json.loads(base64.urlsafe_b64decode(good["protected"] + "=="))
    bodies = [
        [],
        {"protected": 1, "payload": "", "signature": ""},
        {**good, "header": {}},
        {**good, "signature": "***"},
        {**good, "payload": b64(b"[1]")},
        {**good, "protected": b64(json.dumps({**protected, "kid": "http://[::1"}).encode())},
        {**good, "protected": b64(json.dumps({**protected, "alg": "none"}).encode())},
        {**good, "protected": b64(json.dumps({**protected, "alg": "RS256"}).encode())},
    ]
    for body in bodies:
        reply = client.request("POST", url, body)
        assert 400 <= reply.status < 500 and reply.problem.startswith("urn:ietf:params:acme:error:"), (body, reply.body)
    assert client.request("POST", url, None).status in (400, 415)


def test_account_cannot_touch_another_accounts_order(acme):
    alice, mallory = Client(acme.directory, acme.root_pem), Client(acme.directory, acme.root_pem)
    assert alice.register().status == 201 and mallory.register().status == 201
    order = alice.new_order("alice.example.internal")
    assert order.status == 201
    finalize, authz = order.json["finalize"], order.json["authorizations"][0]
    csr = _csr(ec.generate_private_key(ec.SECP256R1()), "alice.example.internal")
    for url, payload in ((finalize, {"csr": csr}), (order.headers["location"], None), (authz, None)):
        reply = mallory.post(url, payload)
        assert reply.status == 403 and reply.problem.endswith(":unauthorized"), (url, reply.body)
    not_ready = alice.post(finalize, {"csr": csr})  # not validated yet
    assert not_ready.status == 403 and not_ready.problem.endswith(":orderNotReady")


def test_only_return_existing_and_deactivation(acme):
    client = Client(acme.directory, acme.root_pem)
    missing = client.post(client.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert missing.problem.endswith(":accountDoesNotExist")
    assert client.register().status == 201
    again = client.post(client.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert again.status == 200 and again.headers["location"] == client.kid
    assert client.post(client.kid, {"status": "deactivated"}).json["status"] == "deactivated"
    assert client.new_order(NAME).problem.endswith(":unauthorized")
    assert client.register().problem.endswith(":unauthorized")  # no way back in with that key


def test_unknown_acme_profile_fails_the_start(tmp_path):
    server = CertsyncServer(tmp_path, extra_toml='[server.acme]\nprofiles = ["nosuch"]\n', start_timeout=20)
    with pytest.raises(AssertionError, match="server.acme.profiles: unknown profile 'nosuch'"):
        server.start()


def test_key_rollover(acme):
    client = Client(acme.directory, acme.root_pem)
    assert client.register().status == 201
    new_key = ec.generate_private_key(ec.SECP256R1())
    url = client.directory["keyChange"]
    inner = client.jws(
        url, {"account": client.kid, "oldKey": client.jwk()}, key=new_key, use_jwk=True, with_nonce=False
    )
    assert client.post(url, inner).status == 200
    assert client.new_order(NAME).problem.endswith(":unauthorized")  # the old key no longer signs
    client.key = new_key
    assert client.new_order(NAME).status == 201


def _csr(key, *names: str) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return b64(csr.public_bytes(serialization.Encoding.DER))


def validate_http(client: Client, order: dict, tokens: TokenServer) -> None:
    for authz_url in order["authorizations"]:
        authz = client.post(authz_url, None).json
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        tokens.tokens[challenge["token"]] = f"{challenge['token']}.{client.thumbprint()}"
        assert client.post(challenge["url"], {}).json["status"] == "valid"


def test_csr_names_must_equal_the_order(acme):
    client = Client(acme.directory, acme.root_pem)
    client.register()
    order = client.new_order("csr.example.internal")
    with TokenServer(acme.http_port) as tokens:
        validate_http(client, order.json, tokens)
    key = ec.generate_private_key(ec.SECP256R1())
    extra = client.post(order.json["finalize"], {"csr": _csr(key, "csr.example.internal", "b.example.internal")})
    assert extra.problem.endswith(":badCSR"), extra.body
    done = client.post(order.json["finalize"], {"csr": _csr(key, "csr.example.internal")})
    assert done.json["status"] == "valid"

    # revokeCert: not by a stranger's account; by the certificate's own key (jwk), once
    der = x509.load_pem_x509_certificates(client.post(done.json["certificate"], None).body)[0].public_bytes(
        serialization.Encoding.DER
    )
    stranger = Client(acme.directory, acme.root_pem)
    stranger.register()
    url, payload = client.directory["revokeCert"], {"certificate": b64(der), "reason": 4}
    assert stranger.post(url, payload).problem.endswith(":unauthorized")
    assert client.post(url, payload, key=key, use_jwk=True).status == 200
    assert client.post(url, payload).problem.endswith(":alreadyRevoked")


def test_failed_validation_invalidates_the_order(acme, dns):
    client = Client(acme.directory, acme.root_pem)
    client.register()
    order = client.new_order("fail.example.internal", "fail2.example.internal").json
    with TokenServer(acme.http_port) as tokens:
        authz = client.post(order["authorizations"][0], None).json
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        tokens.tokens[challenge["token"]] = "not-the-key-authorization"
        failed = client.post(challenge["url"], {}).json
    assert failed["status"] == "invalid" and failed["error"]["type"].endswith(":incorrectResponse")
    authz = client.post(order["authorizations"][1], None).json
    dns_challenge = next(c for c in authz["challenges"] if c["type"] == "dns-01")
    dns.set("_acme-challenge.fail2.example.internal", "wrong")
    assert client.post(dns_challenge["url"], {}).json["error"]["type"].endswith(":incorrectResponse")
    assert client.post(order["finalize"].rsplit("/", 1)[0], None).json["status"] == "invalid"
    again = client.post(challenge["url"], {}).json  # no second try on an invalid authz
    assert again["status"] == "invalid"


# -- two servers, one PostgreSQL store --------------------------------------------------------------------------
@pytest.mark.postgres
def test_one_order_across_two_servers(tmp_path, monkeypatch):
    from tests.support import postgres

    try:
        cluster = postgres.Cluster().start()
    except postgres.PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL: {exc}")
    try:
        monkeypatch.setenv("CERTSYNC_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
        url = postgres.create_database(cluster.url, "acme")
        port = free_port()
        a = CertsyncServer(tmp_path / "a", store_url=url, extra_toml=acme_toml(port))
        b = CertsyncServer(tmp_path / "b", store_url=url, extra_toml=acme_toml(port))
        with a, b, TokenServer(port) as tokens:
            on_a = Client(f"{a.url}/acme/web/directory")
            assert on_a.register().status == 201
            order = on_a.new_order("shared.example.internal")
            assert order.status == 201
            on_b = Client(f"{b.url}/acme/web/directory")
            on_b.key, on_b.kid = on_a.key, on_a.kid  # the same account, talking to server B
            nonce_from_a = on_a.nonce()
            order_on_b = order.headers["location"].replace(a.url, b.url)
            assert on_b.post(order_on_b, None, nonce=nonce_from_a).status == 200  # A's nonce works on B once
            assert on_b.post(order_on_b, None, nonce=nonce_from_a).problem.endswith(":badNonce")
            moved = {**order.json, "authorizations": [u.replace(a.url, b.url) for u in order.json["authorizations"]]}
            validate_http(on_b, moved, tokens)
            key = ec.generate_private_key(ec.SECP256R1())
            done = on_b.post(
                order.json["finalize"].replace(a.url, b.url), {"csr": _csr(key, "shared.example.internal")}
            )
            assert done.json["status"] == "valid", done.body
            pem = on_a.post(on_a.post(order.headers["location"], None).json["certificate"], None)  # download from A
            assert pem.headers["content-type"].startswith("application/pem-certificate-chain")
            assert len(x509.load_pem_x509_certificates(pem.body)) == 2
    finally:
        cluster.stop()
