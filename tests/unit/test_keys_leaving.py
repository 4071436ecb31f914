"""Keys leaving the store: `export --out` (and sign/crl/metrics --out) write atomically, with the
right mode, never through a symlink; the master key file is fsynced with its folder."""

import os
import stat
import subprocess
import sys

import pytest

from sync import files


def run(*args, cwd, expect=0):
    result = subprocess.run([sys.executable, "-m", "sync", *args], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture
def issued(workdir):
    run("init", cwd=workdir)
    run("apply", cwd=workdir)
    return workdir


def test_export_over_a_0644_file_ends_0600_and_leaves_no_temp_file(issued):
    out = issued / "api.pem"
    out.write_text("old\n")
    out.chmod(0o644)
    before = set(os.listdir(issued))
    run("export", "api", "--format", "pem", "--out", "api.pem", cwd=issued)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "BEGIN PRIVATE KEY" in out.read_text()
    assert set(os.listdir(issued)) == before  # no temporary file left behind


@pytest.mark.parametrize("dangling", [False, True])
def test_export_refuses_a_symlink_and_leaves_its_target_alone(issued, dangling):
    victim = issued / "victim.txt"
    if not dangling:
        victim.write_text("precious\n")
        victim.chmod(0o644)
    (issued / "out.pem").symlink_to(victim)
    result = run("export", "api", "--format", "pem", "--out", "out.pem", cwd=issued, expect=2)
    assert result.stdout == ""
    assert result.stderr == "error: --out: out.pem is a symbolic link; refusing to write through it\n"
    assert (issued / "out.pem").is_symlink()
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_sign_crl_and_metrics_out_refuse_symlinks_too(issued):
    victim = issued / "victim.txt"
    victim.write_text("precious\n")
    (issued / "link").symlink_to(victim)
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(issued / "c.key"),
            "-out",
            str(issued / "c.csr"),
            "-subj",
            "/CN=svc.example.internal",
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    for args in (
        ("crl", "issuing", "--pem", "--out", "link"),
        ("metrics", "--out", "link"),
        ("sign", "--csr", "c.csr", "--profile", "tls-server", "--out", "link"),
    ):
        result = run(*args, cwd=issued, expect=2)
        assert result.stderr == "error: --out: link is a symbolic link; refusing to write through it\n"
    assert victim.read_text() == "precious\n"
    listed = run("--output", "json", "list", cwd=issued).stdout
    assert "svc-example-internal" not in listed  # sign refused before issuing
    run("sign", "--csr", "c.csr", "--profile", "tls-server", "--out", "chain.pem", cwd=issued)
    assert stat.S_IMODE((issued / "chain.pem").stat().st_mode) == 0o644
    run("crl", "issuing", "--out", "issuing.crl", cwd=issued)
    assert stat.S_IMODE((issued / "issuing.crl").stat().st_mode) == 0o644  # public: readable by others


def test_the_writer_uses_an_exclusive_0600_temp_file_fsyncs_and_renames(tmp_path, monkeypatch):
    target = tmp_path / "secret.pem"
    target.write_text("old\n")
    target.chmod(0o644)
    opened, synced, replaced = [], [], []
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def spy_open(path, flags, mode=0o777, **kw):
        opened.append((str(path), flags, mode))
        return real_open(path, flags, mode, **kw)

    def spy_fsync(fd):
        synced.append(os.fstat(fd).st_ino)
        return real_fsync(fd)

    def spy_replace(src, dst):
        replaced.append((str(src), str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)

    files.write_atomic(target, "new secret\n", mode=0o600)

    temp, flags, mode = next(o for o in opened if o[0] != str(tmp_path))
    assert os.path.dirname(temp) == str(tmp_path)  # same folder: the rename is atomic
    assert flags & os.O_EXCL and flags & os.O_CREAT and flags & os.O_NOFOLLOW and mode == 0o600
    assert replaced == [(temp, str(target))]
    assert target.stat().st_ino in synced  # the file's data...
    assert tmp_path.stat().st_ino in synced  # ...and the rename, in its folder
    assert target.read_text() == "new secret\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["secret.pem"]


def test_the_writer_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "m.prom"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        files.write_atomic(target, object())
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["m.prom"]


def test_master_key_file_and_its_folder_are_fsynced(tmp_path, monkeypatch):
    from sync.store import keyring

    synced = []
    real_fsync = os.fsync

    def spy_fsync(fd):
        synced.append(os.fstat(fd).st_ino)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    key_file = tmp_path / "keys" / "master.key"
    keyring.create_key_file(key_file)
    assert key_file.stat().st_ino in synced
    assert key_file.parent.stat().st_ino in synced
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


# --- a PFX password change is seen by the plan, without the password being derivable ----------------

PFX_DESTINATION = """
[destination.vault]
provider = "aws"
format = "pkcs12"
pkcs12_password_env = "PFX_PW"
"""


def _pfx_app(workdir, cloud):
    from sync import config
    from sync.app import App
    from tests.support.memory import MemoryProvider

    text = (workdir / "sync.toml").read_text()
    if "[destination.vault]" not in text:
        text = (
            text.replace(
                'dns_names = ["api.example.internal", "www.example.internal"]',
                'dns_names = ["api.example.internal", "www.example.internal"]\ndestinations = ["vault"]',
            )
            + PFX_DESTINATION
        )
        (workdir / "sync.toml").write_text(text)
    return App(config.load(workdir / "sync.toml"), providers=lambda d: MemoryProvider(cloud, destination=d))


def test_a_pfx_password_change_is_pushed_again(workdir, monkeypatch):
    import base64

    from cryptography.hazmat.primitives.serialization import pkcs12

    from tests.support.memory import MemoryCloud

    cloud = MemoryCloud()
    monkeypatch.setenv("PFX_PW", "first-Secret-1")
    with _pfx_app(workdir, cloud) as app:
        app.init()
        assert app.apply().summary() == {"issue": 1, "push": 1}
        assert not app.plan().changes
    first_fp = cloud["api"].fingerprint

    monkeypatch.setenv("PFX_PW", "second-Secret-2")
    with _pfx_app(workdir, cloud) as app:
        assert [(a.kind, a.destination) for a in app.plan().changes] == [("push", "vault")]
        assert app.apply().summary() == {"push": 1}
        assert not app.plan().changes
    pfx = base64.b64decode(cloud["api"].value)
    assert pkcs12.load_key_and_certificates(pfx, b"second-Secret-2")[0] is not None
    assert cloud["api"].fingerprint != first_fp

    # the same password again: nothing to do (the tag is stable, not salted per run)
    monkeypatch.setenv("PFX_PW", "first-Secret-1")
    with _pfx_app(workdir, cloud) as app:
        assert app.apply().summary() == {"push": 1}
    assert cloud["api"].fingerprint == first_fp


def test_the_pfx_password_tag_is_keyed_by_the_master_key(workdir, monkeypatch, tmp_path):
    """The label carries an HMAC under a key derived from the master key, never the password or a
    plain hash of it: another master key gives another fingerprint for the same certificate and
    password, and neither the labels nor the store hold the password."""
    import hashlib

    from sync.store import keyring

    key_a = keyring.MasterKey(os.urandom(32), "a")
    key_b = keyring.MasterKey(os.urandom(32), "b")
    tag_a = key_a.password_tag("vault", b"hunter2-pass")
    assert tag_a == key_a.password_tag("vault", b"hunter2-pass")
    assert tag_a != key_b.password_tag("vault", b"hunter2-pass")
    assert tag_a != key_a.password_tag("vault", b"hunter2-pasS")
    assert tag_a != key_a.password_tag("other", b"hunter2-pass")
    assert hashlib.sha256(b"hunter2-pass").hexdigest()[: len(tag_a)] != tag_a

    from tests.support.memory import MemoryCloud

    cloud = MemoryCloud()
    monkeypatch.setenv("PFX_PW", "hunter2-pass")
    with _pfx_app(workdir, cloud) as app:
        app.init()
        app.apply()
    labels = " ".join(f"{k}={v}" for k, v in cloud["api"].labels.items())
    assert "hunter2" not in labels and hashlib.sha256(b"hunter2-pass").hexdigest()[:32] not in labels
    for path in workdir.iterdir():
        if path.is_file():
            assert b"hunter2" not in path.read_bytes(), path


def test_plan_without_pfx_passwords_needs_no_master_key(workdir, monkeypatch):
    """Only a pkcs12 destination with a password makes the plan load the master key."""
    from sync import config
    from sync.app import App
    from tests.support.memory import MemoryCloud, MemoryProvider

    cloud = MemoryCloud()
    monkeypatch.setenv("PFX_PW", "pw-One-1")
    with _pfx_app(workdir, cloud) as app:
        app.init()
        app.apply()
    (workdir / "certsync.key").rename(workdir / "elsewhere.key")
    with _pfx_app(workdir, cloud) as app:
        with pytest.raises(Exception, match="no master key"):
            app.plan()
    text = (workdir / "sync.toml").read_text().replace('pkcs12_password_env = "PFX_PW"\n', "")
    (workdir / "sync.toml").write_text(text)
    with App(config.load(workdir / "sync.toml"), providers=lambda d: MemoryProvider(cloud, destination=d)) as app:
        assert [a.kind for a in app.plan().changes] == ["push"]  # password removed: re-push planned
