"""The lifecycle offline: renewal on a controlled clock, revocation checked by openssl (CRL and
OCSP), CSR enrollment. No cloud here; tests/e2e covers the pushes."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sync import config
from sync.app import App
from sync.clock import utcnow
from sync.pki import certs
from sync.pki.crl import REVOKE_REASONS


def run(*args, cwd, expect=0, stdin=None):
    result = subprocess.run([sys.executable, "-m", "sync", *args], capture_output=True, text=True, cwd=cwd, input=stdin)
    assert result.returncode == expect, result.stderr
    assert "Traceback" not in result.stderr
    return result


def openssl(*args, cwd):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def cfg(workdir):
    cfg = config.load("sync.toml")
    App(cfg).init()
    return cfg


def chain_files(cfg, workdir, name="api"):
    """leaf.pem, chain.pem (intermediate) and root.pem of the active version of `name`."""
    from sync.pki.render import RenderOptions

    document = json.loads(App(cfg).export(name, RenderOptions("json")).body)
    (workdir / "leaf.pem").write_text(document["certificate"])
    (workdir / "chain.pem").write_text(document["certificate_chain"])
    (workdir / "root.pem").write_text(document["ca_certificate"])
    return document


def verify_with_crl(workdir, leaf="leaf.pem"):
    return openssl(
        "verify",
        "-crl_check",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "chain.pem",
        "-CRLfile",
        "crl.pem",
        leaf,
        cwd=workdir,
    )


def test_server_driven_renewal_on_a_controlled_clock(cfg):
    t0 = utcnow()
    App(cfg, now=t0).apply()
    assert not App(cfg, now=t0 + timedelta(days=59)).plan().changes
    plan = App(cfg, now=t0 + timedelta(days=61)).plan()
    assert [a.kind for a in plan.changes] == ["renew"]
    report = App(cfg, now=t0 + timedelta(days=61)).apply()
    assert report.summary() == {"renew": 1}
    inv = App(cfg, now=t0 + timedelta(days=61)).inventory()
    assert [(r.version, r.state) for r in inv.certificates] == [(2, "active")]
    assert 89 < inv.certificates[0].days_left <= 90
    with App(cfg).store.transaction() as tx:
        states = [(v.version, v.state) for v in tx.certificates.versions_of("api")]
    assert states == [(2, "active"), (1, "superseded")]  # the predecessor is not revoked


@pytest.mark.parametrize("rotation, same_key", [("rotate", False), ("reuse", True)])
def test_key_rotation_setting(workdir, rotation, same_key):
    text = (
        (workdir / "sync.toml")
        .read_text()
        .replace('renew_before = "30d"', f'renew_before = "30d"\nkey_rotation = "{rotation}"')
    )
    (workdir / "sync.toml").write_text(text)
    cfg = config.load("sync.toml")
    App(cfg).init()
    t0 = utcnow()
    App(cfg, now=t0).apply()
    before = chain_files(cfg, workdir)["private_key"]
    App(cfg, now=t0 + timedelta(days=70)).apply()
    after = chain_files(cfg, workdir)["private_key"]
    assert (before == after) is same_key


@pytest.mark.parametrize("reason", REVOKE_REASONS)
def test_revoked_certificate_fails_crl_check_and_live_one_passes(cfg, workdir, reason):
    App(cfg).apply()
    chain_files(cfg, workdir)
    (workdir / "old.pem").write_text((workdir / "leaf.pem").read_text())
    run("revoke", "api", "--reason", reason, "--replace", cwd=workdir)
    chain_files(cfg, workdir)  # the replacement
    run("crl", "issuing", "--pem", "--out", "crl.pem", cwd=workdir)
    revoked = verify_with_crl(workdir, "old.pem")
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr
    live = verify_with_crl(workdir)
    assert live.returncode == 0, live.stdout + live.stderr
    text = openssl("crl", "-in", "crl.pem", "-noout", "-text", cwd=workdir).stdout
    assert "X509v3 CRL Number" in text and "Next Update" in text and "Authority Key Identifier" in text
    if reason != "unspecified":
        assert "X509v3 CRL Reason Code" in text


def test_crl_numbers_increase_and_der_output(cfg, workdir):
    App(cfg).apply()
    run("crl", "issuing", "--out", "first.crl", cwd=workdir)
    run("revoke", "api", "--reason", "superseded", cwd=workdir)
    run("crl", "issuing", "--out", "second.crl", cwd=workdir)
    numbers = [
        x509.load_der_x509_crl((workdir / f).read_bytes())
        .extensions.get_extension_for_class(x509.CRLNumber)
        .value.crl_number
        for f in ("first.crl", "second.crl")
    ]
    assert numbers[1] > numbers[0]
    parsed = openssl("crl", "-inform", "DER", "-in", "second.crl", "-noout", "-text", cwd=workdir)
    assert parsed.returncode == 0 and "Revoked Certificates:" in parsed.stdout


def test_revoke_errors_are_one_line(cfg, workdir):
    App(cfg).apply()
    result = run("revoke", "api", "--reason", "stolen", cwd=workdir, expect=2)
    assert result.stderr.startswith("error: unknown revocation reason 'stolen'; allowed: unspecified, keyCompromise")
    run("revoke", "api", "--reason", "key-compromise", cwd=workdir)
    result = run("revoke", "api", "--reason", "keyCompromise", cwd=workdir, expect=2)
    assert "no active version to revoke" in result.stderr


def test_revoked_then_apply_issues_a_new_version(cfg):
    App(cfg).apply()
    App(cfg).revoke("api", "keyCompromise")
    plan = App(cfg).plan()
    assert [(a.kind, a.reason) for a in plan.changes] == [("issue", "previous version revoked")]


def ocsp_status(workdir, cfg, leaf="leaf.pem"):
    req = openssl("ocsp", "-issuer", "chain.pem", "-cert", leaf, "-reqout", "req.der", cwd=workdir)
    assert req.returncode == 0, req.stderr
    response = App(cfg).ocsp_response("issuing", (workdir / "req.der").read_bytes())
    (workdir / "resp.der").write_bytes(response.public_bytes(serialization.Encoding.DER))
    (workdir / "trust.pem").write_text((workdir / "root.pem").read_text() + (workdir / "chain.pem").read_text())
    # -cert makes openssl build its own request, so its nonce check is off here (nonce echo is
    # covered in test_revocation.py)
    check = openssl(
        "ocsp",
        "-respin",
        "resp.der",
        "-issuer",
        "chain.pem",
        "-CAfile",
        "trust.pem",
        "-cert",
        leaf,
        "-resp_text",
        "-no_nonce",
        cwd=workdir,
    )
    assert "Response verify OK" in check.stderr + check.stdout, check.stderr
    return check.stdout


def test_ocsp_good_revoked_unknown(cfg, workdir):
    App(cfg).apply()
    chain_files(cfg, workdir)
    assert "leaf.pem: good" in ocsp_status(workdir, cfg)
    App(cfg).revoke("api", "keyCompromise")
    out = ocsp_status(workdir, cfg)
    assert "leaf.pem: revoked" in out and "Reason: keyCompromise" in out and "Revocation Time" in out
    # a certificate this CA never issued (same issuer name and key, unknown serial) is "unknown"
    from sync.pki import certs

    with App(cfg).store.transaction() as tx:
        issuer = tx.authorities.issuer(tx.authorities.active("issuing"), None, None)
    stranger = certs.issue_leaf(
        issuer, certs.generate_key("ec-p256").public_key(), common_name="x.example.internal", validity=timedelta(days=1)
    )
    (workdir / "stranger.pem").write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    assert "stranger.pem: unknown" in ocsp_status(workdir, cfg, "stranger.pem")


def make_csr(workdir, subj="/CN=svc.example.internal/O=Evil Corp", key="ec", san="DNS:svc.example.internal"):
    newkey = {
        "ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "rsa1024": ["-newkey", "rsa:1024"],
        "ed25519": ["-newkey", "ed25519"],
    }[key]
    result = openssl(
        "req",
        "-new",
        *newkey,
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        subj,
        "-addext",
        f"subjectAltName={san}",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr


def test_csr_enrollment(cfg, workdir):
    make_csr(workdir)
    out = run("sign", "--csr", "client.csr", "--profile", "tls-server", cwd=workdir).stdout
    certs = x509.load_pem_x509_certificates(out.encode())
    assert len(certs) == 2 and "PRIVATE KEY" not in out
    leaf = certs[0]
    assert leaf.subject.rfc4514_string() == "CN=svc.example.internal"  # O=Evil Corp not copied
    key = serialization.load_pem_private_key((workdir / "client.key").read_bytes(), None)
    assert leaf.public_key() == key.public_key()
    (workdir / "leaf.pem").write_text(certs[0].public_bytes(serialization.Encoding.PEM).decode())
    (workdir / "chain.pem").write_text(certs[1].public_bytes(serialization.Encoding.PEM).decode())
    root = json.loads(run("--output", "json", "list", cwd=workdir).stdout)
    assert [(c["name"], c["state"]) for c in root["certificates"]] == [("svc-example-internal", "active")]
    # the CSR's certificate is listed, revocable, and left alone by apply
    App(cfg).apply()
    inv = {r.name: r.state for r in App(cfg).inventory().certificates}
    assert inv == {"svc-example-internal": "active", "api": "active"}
    run("revoke", "svc-example-internal", "--reason", "cessationOfOperation", cwd=workdir)


@pytest.mark.parametrize(
    "kind, args, message",
    [
        ("weak", dict(key="rsa1024"), "RSA"),
        ("outside", dict(subj="/CN=svc.example.com", san="DNS:svc.example.com"), "allowed_domains"),
    ],
)
def test_bad_csr_is_refused_with_one_line(cfg, workdir, kind, args, message):
    make_csr(workdir, **args)
    result = run("sign", "--csr", "client.csr", "--profile", "tls-server", cwd=workdir, expect=2)
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert App(cfg).inventory().certificates == []  # nothing written


def test_malformed_csr(cfg, workdir):
    (workdir / "junk.csr").write_text("-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n")
    result = run("sign", "--csr", "junk.csr", "--profile", "tls-server", cwd=workdir, expect=2)
    assert result.stderr == "error: CSR: not a PEM or DER certificate signing request\n"


def test_revoke_replace_of_a_csr_enrollment_is_refused_before_anything_is_written(cfg, workdir):
    make_csr(workdir)
    run("sign", "--csr", "client.csr", "--profile", "tls-server", cwd=workdir)
    run("crl", "issuing", "--out", "before.crl", cwd=workdir)
    with App(cfg).store.transaction() as tx:
        crl_before = (tx.authorities.active("issuing").crl_number, tx.authorities.active("issuing").crl_der)
    result = run("revoke", "svc-example-internal", "--reason", "keyCompromise", "--replace", cwd=workdir, expect=2)
    assert result.stderr.count("\n") == 1 and "--replace" in result.stderr
    with App(cfg).store.transaction() as tx:
        assert [(v.version, v.state, v.revoked_at) for v in tx.certificates.versions_of("svc-example-internal")] == [
            (1, "active", None)
        ]
        authority = tx.authorities.active("issuing")
        assert (authority.crl_number, authority.crl_der) == crl_before
    run("crl", "issuing", "--out", "after.crl", cwd=workdir)
    assert (workdir / "after.crl").read_bytes() == (workdir / "before.crl").read_bytes()


def spki_of(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("target", ["active", "oldest"])
def test_key_compromise_revokes_the_key_not_one_version(workdir, target):
    """reuse: three versions share a key (and a CSR enrolled with it under another name); a
    keyCompromise revocation of one revokes all four, the CRL lists them, the key is refused afterwards."""
    text = (
        (workdir / "sync.toml")
        .read_text()
        .replace('renew_before = "30d"', 'renew_before = "30d"\nkey_rotation = "reuse"')
    )
    (workdir / "sync.toml").write_text(text)
    cfg = config.load("sync.toml")
    App(cfg).init()
    run("apply", cwd=workdir)
    run("renew", "api", cwd=workdir)
    run("renew", "api", cwd=workdir)
    document = json.loads(run("export", "api", "--format", "json", cwd=workdir).stdout)
    (workdir / "api.key").write_text(document["private_key"])
    (workdir / "root.pem").write_text(document["ca_certificate"])
    (workdir / "chain.pem").write_text(document["certificate_chain"])
    # the same key enrolled under another name through a CSR
    made = openssl(
        "req",
        "-new",
        "-key",
        "api.key",
        "-out",
        "same.csr",
        "-subj",
        "/CN=svc.example.internal",
        "-addext",
        "subjectAltName=DNS:svc.example.internal",
        cwd=workdir,
    )
    assert made.returncode == 0, made.stderr
    run("sign", "--csr", "same.csr", "--profile", "tls-server", cwd=workdir)
    with App(cfg).store.transaction() as tx:
        versions = tx.certificates.versions_of("api")
        rows = [*versions, *tx.certificates.versions_of("svc-example-internal")]
        leaves = {row.serial: row.certificate for row in rows}
    assert [v.version for v in versions] == [3, 2, 1] and len(leaves) == 4
    assert len({spki_of(c) for c in leaves.values()}) == 1

    serial = [] if target == "active" else ["--serial", versions[-1].serial]
    out = run("--output", "json", "revoke", "api", "--reason", "keyCompromise", *serial, cwd=workdir).stdout
    revoked = json.loads(out)["revoked"]
    assert {revoked["serial"], *(r["serial"] for r in revoked.get("also_revoked", []))} == set(leaves)

    run("crl", "issuing", "--pem", "--out", "crl.pem", cwd=workdir)
    listing = openssl("crl", "-in", "crl.pem", "-noout", "-text", cwd=workdir).stdout
    for serial_hex, leaf in leaves.items():
        assert f"Serial Number: {serial_hex.upper().zfill(len(serial_hex) + len(serial_hex) % 2)}" in listing
        (workdir / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        check = verify_with_crl(workdir)
        assert check.returncode != 0 and "certificate revoked" in check.stdout + check.stderr
    assert listing.count("Key Compromise") == 4

    with App(cfg).store.transaction() as tx:
        assert {v.state for v in tx.certificates.versions_of("api")} == {"revoked"}
        assert tx.certificates.is_compromised(certs.spki_sha256(versions[0].certificate.public_key()))
    # the next renewal makes a new key, though the profile says reuse
    run("renew", "api", "--reuse-key", cwd=workdir)
    renewed = json.loads(run("export", "api", "--format", "json", cwd=workdir).stdout)
    assert renewed["private_key"] != document["private_key"]
    new_leaf = x509.load_pem_x509_certificate(renewed["certificate"].encode())
    assert spki_of(new_leaf) != spki_of(versions[0].certificate)
    # and a CSR carrying the compromised key is refused, under any name
    result = run("sign", "--csr", "same.csr", "--profile", "tls-server", cwd=workdir, expect=2)
    assert result.stderr.count("\n") == 1 and "compromised" in result.stderr
    with App(cfg).store.transaction() as tx:
        assert [v.version for v in tx.certificates.versions_of("svc-example-internal")] == [1]


def test_renewal_never_reuses_a_key_recorded_as_compromised(workdir):
    """Defence in depth: even with an active version still holding it, a compromised key is not reused."""
    text = (
        (workdir / "sync.toml")
        .read_text()
        .replace('renew_before = "30d"', 'renew_before = "30d"\nkey_rotation = "reuse"')
    )
    (workdir / "sync.toml").write_text(text)
    cfg = config.load("sync.toml")
    App(cfg).init()
    App(cfg).apply()
    App(cfg).renew("api")
    with App(cfg).store.transaction() as tx:
        first, second = reversed(tx.certificates.versions_of("api"))
        key = certs.spki_sha256(first.certificate.public_key())
        assert certs.spki_sha256(second.certificate.public_key()) == key  # reuse
        tx.certificates.record_compromised(key, "keyCompromise", utcnow(), second)
    App(cfg).renew("api")
    with App(cfg).store.transaction() as tx:
        third = tx.certificates.current("api")
        assert third.version == 3 and certs.spki_sha256(third.certificate.public_key()) != key
