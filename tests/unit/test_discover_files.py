"""`certsync discover --files`: a tree with PEM (a chain, and one after comments), DER, PKCS#7, PFX
(password from the environment), a key-only PEM, an unreadable file, a symlink inside the tree and
one leading out of it; facts, what is reported, the [discovery.files] table, gone after a removal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from tests.support.tls_endpoints import NOW, make, rsa_key
from tests.unit.conftest import write_config

PASSWORD_ENV = "CERTSYNC_TEST_PFX_PASSWORD"


def cli(*args, cwd, check=True, env=None):
    result = subprocess.run(
        [sys.executable, "-m", "sync", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def tree(workdir):
    root = make("Files Root", ca=True)
    leaf = make(
        "web.example.test", issuer=root, sans=["web.example.test", "10.1.2.3"], not_after=NOW + timedelta(days=10)
    )
    der = make("der.example.test", key=rsa_key(2048))
    pfx = make("pfx.example.test")
    p7 = make("p7.example.test")
    t = workdir / "certs"
    (t / "sub").mkdir(parents=True)
    (t / "chain.pem").write_bytes(leaf.pem() + root.pem() + leaf.key_pem())  # the key is skipped
    (t / "sub" / "server.der").write_bytes(der.cert.public_bytes(serialization.Encoding.DER))
    (t / "sub" / "bundle.p12").write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"pfx", pfx.key, pfx.cert, None, serialization.BestAvailableEncryption(b"s3cret-pw")
        )
    )
    (t / "sub" / "certs.p7b").write_bytes(pkcs7.serialize_certificates([p7.cert], serialization.Encoding.DER))
    (t / "sub" / "noext").write_bytes(b"# a comment before the block\n" + p7.pem())
    (t / "only.key").write_bytes(leaf.key_pem())
    (t / "notes.txt").write_text("nothing here\n")
    (t / "locked.pem").write_bytes(der.pem())
    (t / "locked.pem").chmod(0)
    outside = workdir / "outside.pem"
    outside.write_bytes(make("outside.example.test").pem())
    (t / "escape.pem").symlink_to(outside)
    (t / "inside-link.crt").symlink_to(t / "sub" / "server.der")
    (t / "keystore.jks").write_bytes(b"\xfe\xed\xfe\xed" + os.urandom(64))  # a real JKS magic: not read
    return {"workdir": workdir, "tree": t, "leaf": leaf, "root": root, "der": der, "pfx": pfx, "p7": p7}


def listing(workdir) -> dict:
    rows = json.loads(cli("list", "--discovered", "--output", "json", cwd=workdir).stdout)["discovered"]
    return {r["subject"]: r for r in rows}


def test_files_tree(tree):
    work, t = tree["workdir"], tree["tree"]
    cli("init", "-q", cwd=work)
    result = cli(
        "discover",
        "--files",
        str(t),
        "--pkcs12-password-env",
        PASSWORD_ENV,
        "--output",
        "json",
        cwd=work,
        env={PASSWORD_ENV: "s3cret-pw"},
    )
    summary = json.loads(result.stdout)
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert summary["found"] == 5 and summary["managed"] == 0
    errors = {e["location"]: e["error"] for e in summary["errors"]}
    assert errors[f"file://{t}/escape.pem"] == "skipped: a symbolic link leading out of the root"
    assert "Java keystore" in errors[f"file://{t}/keystore.jks"]
    if os.geteuid() != 0:  # root reads a mode-000 file
        assert errors[f"file://{t}/locked.pem"] == "permission denied"
    rows = listing(work)
    assert "CN=outside.example.test" not in rows
    web = rows["CN=web.example.test"]
    assert web["sans"] == ["DNS:web.example.test", "IP:10.1.2.3"] and web["issuer"] == "CN=Files Root"
    assert web["key"] == "ec-p256" and not web["self_signed"] and "expiring" in web["problems"]
    assert [loc["location"] for loc in web["locations"]] == [f"file://{t}/chain.pem"]
    assert rows["CN=Files Root"]["self_signed"] and rows["CN=Files Root"]["is_ca"]
    der = rows["CN=der.example.test"]
    assert der["key"] == "rsa-2048" and der["self_signed"]
    assert {loc["location"] for loc in der["locations"]} >= {
        f"file://{t}/sub/server.der",
        f"file://{t}/inside-link.crt",
    }
    assert [loc["location"] for loc in rows["CN=pfx.example.test"]["locations"]] == [f"file://{t}/sub/bundle.p12"]
    assert {loc["location"] for loc in rows["CN=p7.example.test"]["locations"]} == {
        f"file://{t}/sub/certs.p7b",
        f"file://{t}/sub/noext",
    }
    assert [
        r["subject"]
        for r in json.loads(cli("list", "--discovered", "--expiring", "30d", "--output", "json", cwd=work).stdout)[
            "discovered"
        ]
    ] == ["CN=web.example.test"]

    # without the password the PFX is reported, the rest still read
    summary = json.loads(cli("discover", "--files", str(t), "--output", "json", cwd=work).stdout)
    assert "PKCS#12" in {e["location"]: e["error"] for e in summary["errors"]}[f"file://{t}/sub/bundle.p12"]

    # from the [discovery] table, after a removal: that location is gone
    write_config(
        work / "sync.toml", f'\n[discovery.files]\nroots = ["certs"]\npkcs12_password_env = "{PASSWORD_ENV}"\n'
    )
    (t / "chain.pem").unlink()
    out = cli("discover", cwd=work, env={PASSWORD_ENV: "s3cret-pw"}).stdout
    assert "2 location(s) gone" in out  # the leaf and the root in chain.pem
    assert "CN=web.example.test" not in listing(work)


def test_missing_password_variable_is_one_line(tree):
    result = cli(
        "discover",
        "--files",
        str(tree["tree"]),
        "--pkcs12-password-env",
        "CERTSYNC_TEST_UNSET_VAR",
        cwd=tree["workdir"],
        check=False,
    )
    assert result.returncode == 2 and "CERTSYNC_TEST_UNSET_VAR is not set" in result.stderr


def test_discovered_problems_are_alerted_once_per_repeat_every(tree):
    from tests.support.webhook import webhook_server

    work, t = tree["workdir"], tree["tree"]
    with webhook_server() as hook:
        write_config(work / "sync.toml", f'\n[notify]\nwebhook_url = "{hook.url}"\n')
        cli("init", "-q", cwd=work)
        cli("discover", "--files", str(t / "chain.pem"), cwd=work)
        events = [e for body in hook.bodies for e in body["events"] if e["type"] == "discovered"]
        assert len(events) == 1 and events[0]["severity"] == "warning"
        assert events[0]["problems"] == ["expiring"] and "CN=web.example.test" in events[0]["message"]
        assert events[0]["fingerprint"] == listing(work)["CN=web.example.test"]["fingerprint"]
        assert f"file://{t}/chain.pem" in events[0]["message"]
        cli("discover", "--files", str(t / "chain.pem"), cwd=work)  # the same standing condition: not again
        assert len(hook.bodies) == 1
