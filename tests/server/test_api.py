"""The REST API against a real `certsync serve`: tokens, scopes, profiles (deny by default), the
lifecycle (issue, sign, renew, revoke) checked with openssl, and the audit trail. One server for
the module; each test uses names of its own."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import CertsyncServer

EXTRA = """
[profile.other]
ca = "issuing"
allowed_domains = ["*.other.internal"]
validity = "30d"

[certificate.held]
profile = "web"
dns_names = ["held.example.internal"]

[certificate.held2]
profile = "web"
dns_names = ["held2.example.internal"]
"""
ALL = ("read", "issue", "sign", "renew", "revoke")


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with CertsyncServer(
        tmp_path_factory.mktemp("api"), server_toml="rate_limit = 0", extra_toml=EXTRA, apply=True
    ) as running:
        running.tokens = {}
        yield running


def token(server, name: str, *scopes: str, profile: str = "web") -> str:
    if name not in server.tokens:
        server.tokens[name] = server.token(name, *scopes, profile=profile)
    return server.tokens[name]


def call(
    server,
    method: str,
    path: str,
    body=None,
    *,
    secret: str | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> Reply:
    headers = {"Content-Type": content_type} if body is not None or raw is not None else {}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def openssl(*args: str, cwd: Path, input: bytes | None = None) -> str:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, input=input, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def make_csr(folder: Path, stem: str, cn: str, *sans: str) -> str:
    san = ",".join(f"DNS:{s}" for s in (cn, *sans))
    openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        f"{stem}.key",
        "-out",
        f"{stem}.csr",
        "-subj",
        f"/CN={cn}",
        "-addext",
        f"subjectAltName={san}",
        cwd=folder,
    )
    return (folder / f"{stem}.csr").read_text()


def verify(server, chain_pem: str, stem: str) -> None:
    """openssl verify of the leaf against the test root, with the chain's intermediates."""
    blocks = ["-----BEGIN CERTIFICATE-----" + b for b in chain_pem.split("-----BEGIN CERTIFICATE-----")[1:]]
    (server.folder / f"{stem}.leaf.pem").write_text(blocks[0])
    (server.folder / f"{stem}.inter.pem").write_text("".join(blocks[1:]))
    out = openssl(
        "verify",
        "-CAfile",
        str(server.root_pem),
        "-untrusted",
        f"{stem}.inter.pem",
        f"{stem}.leaf.pem",
        cwd=server.folder,
    )
    assert out.strip().endswith("OK")


def audit(server) -> list[dict]:
    return json.loads(server.cli("audit", "--output", "json", "--limit", "1000").stdout)["events"]


# -- deny by default -------------------------------------------------------------------------------------
OPERATIONS = [
    ("GET", "/api/v1/certificates", None),
    ("POST", "/api/v1/certificates", {"dns_names": ["x.example.internal"]}),
    ("GET", "/api/v1/certificates/held", None),
    ("GET", "/api/v1/certificates/held/chain", None),
    ("POST", "/api/v1/certificates/held/renew", {"reuse_key": True}),
    ("POST", "/api/v1/certificates/held/revoke", {"reason": "superseded"}),
    ("POST", "/api/v1/sign", {"csr": "x"}),
    ("POST", "/api/v1/certificates/held/deployments", {"serial": "1", "host": "h", "outcome": "deployed"}),
]
SCOPE_OF = {0: "read", 1: "issue", 2: "read", 3: "read", 4: "renew", 5: "revoke", 6: "sign", 7: "renew"}


def test_no_credentials_is_401_with_www_authenticate(server):
    for method, path, body in OPERATIONS:
        reply = call(server, method, path, body)
        assert reply.status == 401, (method, path)
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json["status"] == 401
    assert call(server, "GET", "/api/v1/certificates", secret="cst_not-a-token").status == 401
    assert call(server, "GET", "/api/v1/certificates", secret="garbage").status == 401


@pytest.mark.parametrize("scope", ALL)
def test_each_scope_allows_exactly_its_endpoints(server, scope):
    secret = token(server, f"only-{scope}", scope)
    for i, (method, path, body) in enumerate(OPERATIONS):
        if SCOPE_OF[i] == scope:
            continue  # what it may do is driven below, with real bodies
        reply = call(server, method, path, body, secret=secret)
        assert reply.status == 403, (scope, method, path, reply.body)
        assert "scope" in reply.json["detail"]


def test_scopes_allow_their_endpoints(server):
    """The same table with a token holding just the scope each needs: never 401/403."""
    for i, (method, path, body) in enumerate(OPERATIONS):
        if i == 5:
            continue  # revoking `held` would spoil the renewal tests; revoke is tested below
        secret = token(server, f"only-{SCOPE_OF[i]}", SCOPE_OF[i])
        reply = call(server, method, path, body, secret=secret)
        assert reply.status not in (401, 403), (method, path, reply.body)


def test_revoked_and_expired_tokens_are_401(server):
    revoked = token(server, "to-revoke", "read")
    assert call(server, "GET", "/api/v1/certificates", secret=revoked).status == 200
    server.cli("token", "revoke", "to-revoke")
    reply = call(server, "GET", "/api/v1/certificates", secret=revoked)
    assert reply.status == 401 and "revoked" in reply.json["detail"]
    expiring = (
        server.cli("token", "create", "short", "--profile", "web", "--scope", "read", "--expires", "1s")
        .stdout.decode()
        .strip()
    )
    time.sleep(1.5)
    reply = call(server, "GET", "/api/v1/certificates", secret=expiring)
    assert reply.status == 401 and "expired" in reply.json["detail"]
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_other_profile_sees_nothing_of_web(server):
    web = token(server, "web-all", *ALL)
    other = token(server, "other-all", *ALL, profile="other")
    assert (
        call(server, "POST", "/api/v1/certificates", {"dns_names": ["seen.example.internal"]}, secret=web).status == 201
    )
    listing = call(server, "GET", "/api/v1/certificates", secret=other).json
    assert all(c["profile"] == "other" for c in listing["items"])
    for method, suffix, body in [
        ("GET", "", None),
        ("GET", "/chain", None),
        ("POST", "/renew", {"reuse_key": True}),
        ("POST", "/revoke", {"reason": "superseded"}),
    ]:
        hidden = call(server, method, "/api/v1/certificates/seen-example-internal" + suffix, body, secret=other)
        missing = call(server, method, "/api/v1/certificates/no-such-cert" + suffix, body, secret=other)
        assert hidden.status == missing.status == 404, (method, suffix)
        assert hidden.json["detail"].replace("seen-example-internal", "X") == missing.json["detail"].replace(
            "no-such-cert", "X"
        )  # the same answer: existence not leaked
    # its policy is its own: names of web are refused, and web's store names are not its to take
    reply = call(server, "POST", "/api/v1/certificates", {"dns_names": ["a.example.internal"]}, secret=other)
    assert reply.status == 403 and "allowed_domains" in reply.json["detail"]
    reply = call(
        server,
        "POST",
        "/api/v1/certificates",
        {"name": "seen-example-internal", "dns_names": ["a.other.internal"]},
        secret=other,
    )
    assert reply.status == 403 and "taken" in reply.json["detail"]


# -- agents' deployment reports ------------------------------------------------------------------------
def test_deployment_reports_are_audited_with_host_and_reason(server):
    secret = token(server, "web-all", *ALL)
    enrolled = call(
        server,
        "POST",
        "/api/v1/sign",
        {"csr": make_csr(server.folder, "d1", "deployed.example.internal"), "name": "deployed"},
        secret=secret,
    ).json["certificate"]
    path = "/api/v1/certificates/deployed/deployments"
    reply = call(
        server,
        "POST",
        path,
        {"serial": enrolled["serial"].upper(), "host": "web-1.example", "outcome": "deployed"},
        secret=secret,
    )
    assert reply.status == 200, reply.body
    assert {k: reply.json[k] for k in ("certificate", "version", "serial", "host", "outcome")} == {
        "certificate": "deployed",
        "version": 1,
        "serial": enrolled["serial"],
        "host": "web-1.example",
        "outcome": "deployed",
    }
    failed = call(
        server,
        "POST",
        path,
        {
            "serial": enrolled["serial"],
            "host": "web-2",
            "outcome": "rolled-back",
            "detail": "reload command 'nginx' exited 1",
        },
        secret=secret,
    )
    assert failed.status == 200
    events = [e for e in audit(server) if e["action"] == "deploy" and e["certificate"] == "deployed"]
    assert [(e["outcome"], e["detail"]["host"], e["detail"].get("detail")) for e in events] == [
        ("failed", "web-2", "reload command 'nginx' exited 1"),
        ("ok", "web-1.example", None),
    ]
    assert all(e["actor"] == "token:web-all" and e["serial"] == enrolled["serial"] for e in events)
    # a serial that is not a version of it, a read-only token, another profile, a bad body
    unknown = call(server, "POST", path, {"serial": "abc123", "host": "h", "outcome": "deployed"}, secret=secret)
    assert unknown.status == 400 and "no version with serial abc123" in unknown.json["detail"]
    assert (
        call(
            server,
            "POST",
            path,
            {"serial": enrolled["serial"], "host": "h", "outcome": "deployed"},
            secret=token(server, "only-read", "read"),
        ).status
        == 403
    )
    other = token(server, "other-all", *ALL, profile="other")
    assert (
        call(
            server, "POST", path, {"serial": enrolled["serial"], "host": "h", "outcome": "deployed"}, secret=other
        ).status
        == 404
    )
    bad = call(server, "POST", path, {"serial": enrolled["serial"], "host": "h", "outcome": "fine"}, secret=secret)
    assert bad.status == 422 and bad.json["errors"][0]["field"] == "outcome"
    bad = call(
        server, "POST", path, {"serial": enrolled["serial"], "host": "a b", "outcome": "deployed"}, secret=secret
    )
    assert bad.status == 422 and bad.json["errors"][0]["field"] == "host"


# -- the lifecycle ---------------------------------------------------------------------------------------
def test_issue_returns_the_key_once_and_openssl_verifies_the_chain(server):
    secret = token(server, "web-all", *ALL)
    reply = call(
        server,
        "POST",
        "/api/v1/certificates",
        {"name": "issued", "dns_names": ["issued.example.internal"], "key_type": "ec-p256"},
        secret=secret,
    )
    assert reply.status == 201, reply.body
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["location"] == "/api/v1/certificates/issued"
    body = reply.json
    assert body["certificate"]["source"] == "csr" and body["certificate"]["sans"] == ["DNS:issued.example.internal"]
    verify(server, body["chain_pem"], "issued")
    (server.folder / "issued.key").write_text(body["private_key_pem"])
    key_pub = openssl("pkey", "-in", "issued.key", "-pubout", cwd=server.folder)
    cert_pub = openssl("x509", "-in", "issued.leaf.pem", "-pubkey", "-noout", cwd=server.folder)
    assert key_pub == cert_pub
    # the key is in that response only: not in later reads, the audit trail, the server's log
    marker = body["private_key_pem"].splitlines()[1]
    later = [
        call(server, "GET", p, secret=secret).body.decode()
        for p in ("/api/v1/certificates", "/api/v1/certificates/issued", "/api/v1/certificates/issued/chain")
    ]
    assert all("PRIVATE KEY" not in text and marker not in text for text in later)
    trail = server.cli("audit", "--output", "json", "--limit", "1000").stdout.decode()
    assert marker not in trail and "PRIVATE KEY" not in trail
    assert marker not in server.log() and "PRIVATE KEY" not in server.log()
    assert "PRIVATE KEY" not in server.cli("list", check=False).stdout.decode()


def test_sign_a_csr_made_by_openssl(server):
    secret = token(server, "web-all", *ALL)
    csr = make_csr(server.folder, "signed", "signed.example.internal")
    reply = call(server, "POST", "/api/v1/sign", {"csr": csr}, secret=secret)
    assert reply.status == 201, reply.body
    body = reply.json
    assert "private_key_pem" not in body and body["certificate"]["name"] == "signed-example-internal"
    verify(server, body["chain_pem"], "signed")
    refused = call(server, "POST", "/api/v1/sign", {"csr": make_csr(server.folder, "bad", "evil.com")}, secret=secret)
    assert refused.status == 403 and "allowed_domains" in refused.json["detail"]
    assert call(server, "POST", "/api/v1/sign", {"csr": "not a csr"}, secret=secret).status == 400
    rsa = call(
        server,
        "POST",
        "/api/v1/certificates",
        {"dns_names": ["k.example.internal"], "key_type": "rsa-4096"},
        secret=secret,
    )
    assert rsa.status == 403 and "key type rsa-4096 is not allowed" in rsa.json["detail"]


def test_renew_a_csr_enrollment_needs_a_new_csr_for_the_same_names(server):
    secret = token(server, "web-all", *ALL)
    first = call(
        server,
        "POST",
        "/api/v1/sign",
        {"csr": make_csr(server.folder, "r1", "renewme.example.internal"), "name": "renewme"},
        secret=secret,
    ).json
    assert call(server, "POST", "/api/v1/certificates/renewme/renew", {"reuse_key": True}, secret=secret).status == 409
    same_key = call(
        server,
        "POST",
        "/api/v1/certificates/renewme/renew",
        {"csr": (server.folder / "r1.csr").read_text()},
        secret=secret,
    )
    assert same_key.status == 403 and "new key" in same_key.json["detail"]
    other_names = call(
        server,
        "POST",
        "/api/v1/certificates/renewme/renew",
        {"csr": make_csr(server.folder, "r2", "else.example.internal")},
        secret=secret,
    )
    assert other_names.status == 403 and "same names" in other_names.json["detail"]
    reply = call(
        server,
        "POST",
        "/api/v1/certificates/renewme/renew",
        {"csr": make_csr(server.folder, "r3", "renewme.example.internal")},
        secret=secret,
    )
    assert reply.status == 200, reply.body
    assert (
        reply.json["certificate"]["version"] == 2
        and reply.json["certificate"]["serial"] != first["certificate"]["serial"]
    )
    verify(server, reply.json["chain_pem"], "renewed")
    detail = call(server, "GET", "/api/v1/certificates/renewme", secret=secret).json
    assert [(v["version"], v["state"]) for v in detail["versions"]] == [(2, "active"), (1, "superseded")]


def test_renew_a_held_certificate_reusing_or_rotating_its_key(server):
    secret = token(server, "web-all", *ALL)
    before = call(server, "GET", "/api/v1/certificates/held2/chain", secret=secret).body.decode()
    reused = call(server, "POST", "/api/v1/certificates/held2/renew", {"reuse_key": True}, secret=secret)
    assert reused.status == 200, reused.body
    assert reused.headers["cache-control"] == "no-store" and "private_key_pem" not in reused.json
    rotated = call(server, "POST", "/api/v1/certificates/held2/renew", {"reuse_key": False}, secret=secret)
    assert rotated.status == 200 and rotated.json["certificate"]["version"] == reused.json["certificate"]["version"] + 1

    def pubkey(pem: str, stem: str) -> str:
        (server.folder / stem).write_text(pem)
        return openssl("x509", "-in", stem, "-pubkey", "-noout", cwd=server.folder)

    assert pubkey(before, "h0.pem") == pubkey(reused.json["certificate_pem"], "h1.pem")
    assert pubkey(reused.json["certificate_pem"], "h1.pem") != pubkey(rotated.json["certificate_pem"], "h2.pem")
    assert call(server, "POST", "/api/v1/certificates/held2/renew", {"csr": "x"}, secret=secret).status == 409


def test_renew_while_a_run_holds_the_lock_is_503_with_retry_after(server):
    from sync import config
    from sync.app import App

    secret = token(server, "web-all", *ALL)
    with App(config.load(str(server.config))) as app, app.lock():
        reply = call(server, "POST", "/api/v1/certificates/held/renew", {"reuse_key": True}, secret=secret)
    assert reply.status == 503 and reply.headers["retry-after"].isdigit()
    assert reply.headers["content-type"] == "application/problem+json"


def test_revoke_then_openssl_ocsp_says_revoked(server):
    secret = token(server, "web-all", *ALL)
    issued = call(
        server,
        "POST",
        "/api/v1/certificates",
        {"name": "doomed", "dns_names": ["doomed.example.internal"]},
        secret=secret,
    ).json
    (server.folder / "doomed.pem").write_text(issued["certificate_pem"])
    reply = call(server, "POST", "/api/v1/certificates/doomed/revoke", {"reason": "keyCompromise"}, secret=secret)
    assert reply.status == 200, reply.body
    assert reply.json["serial"] == issued["certificate"]["serial"] and reply.json["reason"] == "keyCompromise"
    out = openssl(
        "ocsp",
        "-url",
        f"{server.url}/ocsp/issuing",
        "-issuer",
        str(server.chain_pem),
        "-cert",
        "doomed.pem",
        "-CAfile",
        str(server.root_pem),
        "-verify_other",
        str(server.chain_pem),
        cwd=server.folder,
    )
    assert "doomed.pem: revoked" in out and "Reason: keyCompromise" in out
    again = call(server, "POST", "/api/v1/certificates/doomed/revoke", {"reason": "superseded"}, secret=secret)
    assert again.status == 409 and "no active version" in again.json["detail"]
    again = call(
        server,
        "POST",
        "/api/v1/certificates/doomed/revoke",
        {"reason": "superseded", "serial": issued["certificate"]["serial"]},
        secret=secret,
    )
    assert again.status == 409 and "already revoked" in again.json["detail"]
    assert call(server, "GET", "/api/v1/certificates/doomed", secret=secret).json["certificate"]["state"] == "revoked"


def test_list_filters_and_pages(server):
    secret = token(server, "pager", "read", "issue", profile="other")
    for n in ("p1", "p2", "p3"):
        assert (
            call(
                server, "POST", "/api/v1/certificates", {"name": n, "dns_names": [f"{n}.other.internal"]}, secret=secret
            ).status
            == 201
        )
    first = call(server, "GET", "/api/v1/certificates?limit=2", secret=secret).json
    assert [c["name"] for c in first["items"]] == ["p1", "p2"] and first["next_cursor"] == "p2"
    second = call(server, "GET", f"/api/v1/certificates?limit=2&cursor={first['next_cursor']}", secret=secret).json
    assert [c["name"] for c in second["items"]] == ["p3"] and second["next_cursor"] is None
    assert len(call(server, "GET", "/api/v1/certificates?expiring_within=31d", secret=secret).json["items"]) == 3
    assert call(server, "GET", "/api/v1/certificates?expiring_within=1d", secret=secret).json["items"] == []
    assert call(server, "GET", "/api/v1/certificates?state=revoked", secret=secret).json["items"] == []
    bad = call(server, "GET", "/api/v1/certificates?state=bogus", secret=secret)
    assert bad.status == 422 and bad.json["errors"][0]["field"] == "query.state"


# -- bodies ----------------------------------------------------------------------------------------------
def test_bodies_are_strict_and_bounded(server):
    secret = token(server, "web-all", *ALL)
    big = call(server, "POST", "/api/v1/sign", {"csr": "A" * (65 * 1024)}, secret=secret)
    assert big.status == 413 and big.headers["content-type"] == "application/problem+json"
    unknown = call(
        server, "POST", "/api/v1/certificates", {"dns_names": ["u.example.internal"], "key": "x"}, secret=secret
    )
    assert unknown.status == 422 and unknown.json["errors"] == [
        {"field": "key", "message": "Extra inputs are not permitted"}
    ]
    wrong_type = call(server, "POST", "/api/v1/certificates", {"dns_names": "u.example.internal"}, secret=secret)
    assert wrong_type.status == 422 and wrong_type.json["errors"][0]["field"] == "dns_names"
    assert call(server, "POST", "/api/v1/certificates", raw=b"{", secret=secret).status == 400
    assert (
        call(
            server, "POST", "/api/v1/certificates", raw=b"dns_names=x", content_type="text/plain", secret=secret
        ).status
        == 415
    )
    bad_reason = call(server, "POST", "/api/v1/certificates/held/revoke", {"reason": "because"}, secret=secret)
    assert bad_reason.status == 422 and bad_reason.json["errors"][0]["field"] == "reason"
    assert call(server, "GET", "/api/v1/certificates/NOT_A_NAME", secret=secret).status == 404
    assert call(server, "DELETE", "/api/v1/certificates/held", secret=secret).status == 405


# -- the audit trail and the token list ------------------------------------------------------------------
def test_audit_says_who_what_when_from_where(server):
    secret = token(server, "auditor", *ALL)
    issued = call(
        server,
        "POST",
        "/api/v1/certificates",
        {"name": "audited", "dns_names": ["audited.example.internal"]},
        secret=secret,
    ).json
    signed = call(
        server,
        "POST",
        "/api/v1/sign",
        {"csr": make_csr(server.folder, "aud", "aud.example.internal"), "name": "audited-csr"},
        secret=secret,
    ).json
    renewed = call(
        server,
        "POST",
        "/api/v1/certificates/audited-csr/renew",
        {"csr": make_csr(server.folder, "aud2", "aud.example.internal")},
        secret=secret,
    ).json
    call(server, "POST", "/api/v1/certificates/audited/revoke", {"reason": "superseded"}, secret=secret)
    call(server, "POST", "/api/v1/certificates", {"dns_names": ["nope.invalid"]}, secret=secret)  # refused
    events = [e for e in audit(server) if e["actor"] == "token:auditor" and e["action"] != "token.use"]
    seen = {(e["action"], e["certificate"], e["serial"], e["outcome"]) for e in events}
    assert ("issue", "audited", issued["certificate"]["serial"], "ok") in seen
    assert ("sign", "audited-csr", signed["certificate"]["serial"], "ok") in seen
    assert ("renew", "audited-csr", renewed["certificate"]["serial"], "ok") in seen
    assert ("revoke", "audited", issued["certificate"]["serial"], "ok") in seen
    assert any(e["action"] == "issue" and e["outcome"] == "refused" for e in events)
    assert all(e["protocol"] == "api" and e["remote_addr"] == "127.0.0.1" and e["at"] for e in events)
    text = server.cli("audit", "--certificate", "audited").stdout.decode()
    assert "token:auditor" in text and "revoke" in text and "127.0.0.1" in text
    uses = [e for e in audit(server) if e["actor"] == "token:auditor" and e["action"] == "token.use"]
    assert len(uses) >= 5 and all(e["remote_addr"] == "127.0.0.1" for e in uses)


def test_token_list_never_shows_a_secret(server):
    secrets = [token(server, "web-all", *ALL), token(server, "listed", "read")]
    for args in (("token", "list"), ("token", "list", "--output", "json")):
        out = server.cli(*args).stdout.decode()
        assert "listed" in out and "cst_" not in out and not any(s in out for s in secrets)
    facts = json.loads(server.cli("token", "list", "--output", "json").stdout)["tokens"]
    assert all(
        set(t) == {"name", "profile", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at"} for t in facts
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (("token", "create", "t", "--profile", "nope"), "unknown profile 'nope'"),
        (("token", "create", "t", "--profile", "web", "--scope", "bogus"), "unknown scope 'bogus'"),
        (("token", "create", "Bad Name", "--profile", "web"), "token name"),
        (("token", "revoke", "never-made"), "no token named 'never-made'"),
    ],
)
def test_token_cli_errors_are_one_line_exit_2(server, args, message):
    result = server.cli(*args, check=False)
    err = result.stderr.decode().strip()
    assert result.returncode == 2 and message in err and len(err.splitlines()) == 1, err
    assert result.stdout == b""


def test_documented_curl_example(server, tmp_path):
    """docs/server-api.md's example, run as written, with curl, jq and openssl."""
    doc = (Path(__file__).parents[2] / "docs" / "server-api.md").read_text()
    script = next(block for block in doc.split("```bash\n")[1:] if block.startswith("# api-example"))
    script = script.split("```")[0]
    for name in ("root.pem", "issuing.pem"):
        (tmp_path / name).write_bytes((server.folder / name).read_bytes())
    secret = token(server, "doc-example", *ALL)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "CERTSYNC_URL": server.url, "TOKEN": secret},
    )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode() + out
    assert "app.pem: OK" in out and "app.pem: revoked" in out and "web" in out
    assert json.loads((tmp_path / "signed.json").read_text())["certificate"]["name"] == "web"
    assert (tmp_path / "app.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    versions = call(server, "GET", "/api/v1/certificates/web", secret=secret).json["versions"]
    assert [v["state"] for v in versions] == ["active", "superseded"]
