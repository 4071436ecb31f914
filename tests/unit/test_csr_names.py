"""Names certsync gives CSR enrollments made without --name (openssl-made CSRs through `certsync
sign`): a wildcard and its apex never share a name, the same names again make a new version (client
renewal), and a different CSR whose generated name is taken by other names is refused, not filed as
a new version of an unrelated certificate."""

import pytest

from sync import config
from sync.app import App
from sync.pki.names import store_name

from .test_lifecycle import openssl, run


@pytest.fixture
def cfg(workdir):
    cfg = config.load("sync.toml")
    App(cfg).init()
    return cfg


def csr(workdir, cn: str | None, *sans: str, out: str = "client.csr") -> str:
    """An openssl CSR; cn None: no CN (the names are the SANs only)."""
    result = openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        out + ".key",
        "-out",
        out,
        "-subj",
        f"/CN={cn}" if cn else "/O=certsync tests",
        "-addext",
        "subjectAltName=" + ",".join(f"DNS:{s}" for s in (sans or (cn,))),
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_store_names_of_a_wildcard_and_its_apex_differ():
    assert store_name("*.x.internal", ["*.x.internal"]) == "wildcard-x-internal"
    assert store_name("x.internal", ["x.internal"]) == "x-internal"
    assert store_name(None, ["*.x.internal"]) == "wildcard-x-internal"
    assert len(store_name("*." + "a" * 62 + ".internal", [])) <= 63


def test_a_wildcard_and_its_apex_are_two_certificates(cfg, workdir):
    run("sign", "--csr", csr(workdir, "*.example.internal"), "--profile", "tls-server", cwd=workdir)
    run("sign", "--csr", csr(workdir, "example.internal"), "--profile", "tls-server", cwd=workdir)
    with App(cfg) as app:
        with app.store.transaction() as tx:
            found = {
                name: [v.sans for v in tx.certificates.versions_of(name)]
                for name in ("wildcard-example-internal", "example-internal")
            }
    assert found == {
        "wildcard-example-internal": [["DNS:*.example.internal"]],
        "example-internal": [["DNS:example.internal"]],
    }


def test_the_same_names_again_are_a_new_version(cfg, workdir):
    run("sign", "--csr", csr(workdir, "svc.example.internal"), "--profile", "tls-server", cwd=workdir)
    run("sign", "--csr", csr(workdir, "svc.example.internal", out="renew.csr"), "--profile", "tls-server", cwd=workdir)
    with App(cfg) as app:
        with app.store.transaction() as tx:
            assert sorted(v.version for v in tx.certificates.versions_of("svc-example-internal")) == [1, 2]


def test_other_names_under_a_taken_generated_name_are_refused(cfg, workdir):
    run("sign", "--csr", csr(workdir, "svc.example.internal"), "--profile", "tls-server", cwd=workdir)
    other = csr(workdir, "svc.example.internal", "svc.example.internal", "admin.example.internal", out="other.csr")
    result = run("sign", "--csr", other, "--profile", "tls-server", cwd=workdir, expect=2)
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert "'svc-example-internal'" in result.stderr and "--name" in result.stderr
    with App(cfg) as app:
        with app.store.transaction() as tx:
            assert [v.version for v in tx.certificates.versions_of("svc-example-internal")] == [1]
    # naming it explicitly is the user's choice: a new version of that name
    run("sign", "--csr", other, "--profile", "tls-server", "--name", "svc-example-internal", cwd=workdir)
