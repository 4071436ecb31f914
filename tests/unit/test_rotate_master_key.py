"""certsync rotate-master-key: every sealed key and integrity tag moves to the new key in one
transaction; the old key no longer opens the store, the new one does, and nothing is lost."""

import base64
import os
import sqlite3
import stat
import subprocess
import sys

from cryptography.hazmat.primitives import serialization


def run(*args, cwd, env=None, expect=0):
    result = subprocess.run(
        [sys.executable, "-m", "sync", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == expect, result.stderr
    return result


def key_of(pem: str) -> bytes:
    key_pem = pem[pem.index("-----BEGIN PRIVATE KEY") :]
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def blobs(workdir):
    with sqlite3.connect(workdir / "certsync.db") as db:
        return sorted(
            row[0] for row in db.execute("select key_enc from authorities union all select key_enc from certificates")
        )


def test_rotation_to_a_new_key_file(workdir):
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    before_key, before_blobs = key_of(run("export", "api", cwd=workdir).stdout), blobs(workdir)
    out = run("rotate-master-key", "--new-key-file", "new.key", cwd=workdir).stdout
    assert "rotated  2 CA key(s) and 1 certificate version(s)" in out
    assert stat.S_IMODE(os.stat(workdir / "new.key").st_mode) == 0o600
    assert blobs(workdir) != before_blobs and len(blobs(workdir)) == len(before_blobs)
    old = run("export", "api", cwd=workdir, expect=1)  # the old key no longer opens it
    assert old.stderr.startswith("error: the master key from") and "does not match this store" in old.stderr
    (workdir / "certsync.key").unlink()
    (workdir / "new.key").rename(workdir / "certsync.key")
    assert key_of(run("export", "api", cwd=workdir).stdout) == before_key  # the same private key
    run("renew", "api", cwd=workdir)  # the CA key opens and signs
    assert run("plan", "--detailed-exitcode", cwd=workdir).returncode == 0


def test_rotation_from_an_environment_variable_and_refusals(workdir):
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    run("rotate-master-key", "--new-key-file", "certsync.key", cwd=workdir, expect=2)  # never over a key
    current = (workdir / "certsync.key").read_text().strip()
    same = run("rotate-master-key", "--new-key-env", "SAME", cwd=workdir, env={"SAME": current}, expect=2)
    assert same.stderr == "error: rotate-master-key: the new key is the current key\n"
    run("rotate-master-key", cwd=workdir, expect=2)
    new = base64.b64encode(os.urandom(32)).decode()
    run("rotate-master-key", "--new-key-env", "NEW_KEY", cwd=workdir, env={"NEW_KEY": new})
    assert new not in run("list", cwd=workdir).stdout
    run("export", "api", cwd=workdir, env={"CERTSYNC_MASTER_KEY": new})
    run("export", "api", cwd=workdir, expect=1)


def test_an_altered_certificate_stops_the_rotation_and_changes_nothing(workdir):
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    with sqlite3.connect(workdir / "certsync.db") as db:
        root = db.execute("select cert_der from authorities where name='root'").fetchone()[0]
        db.execute("update certificates set cert_der=? where name='api'", (root,))
    before = blobs(workdir)
    failed = run("rotate-master-key", "--new-key-file", "new.key", cwd=workdir, expect=1)
    assert "does not match its integrity tag" in failed.stderr and failed.stderr.count("\n") == 1
    assert blobs(workdir) == before and not (workdir / "new.key").exists()
