"""Two enrollments of one name at the same moment (two server replicas, EST re-enrollment racing a
REST renewal) number their versions one after the other on both backends: neither fails."""

from __future__ import annotations

import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync import config as config_mod
from sync.app import App
from sync.ca.issue import issue_from_csr
from tests.store.conftest import run_cli

ROUNDS = 4


def csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev.example.internal")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("dev.example.internal")]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def test_concurrent_enrollments_of_one_name_both_land(store_dir, capsys):
    assert run_cli(capsys, "init")[0] == 0
    config = config_mod.load(store_dir / "sync.toml")
    apps = [App(config), App(config)]  # two processes' worth: two engines, two pools
    for app in apps:
        app.store.master_key()
    failures: list[BaseException] = []
    for _ in range(ROUNDS):
        barrier = threading.Barrier(2)

        def enroll(app: App) -> None:
            request = csr()
            barrier.wait()
            try:
                with app.store.transaction(serialized=True) as tx:
                    issue_from_csr(config, tx, "dev", "tls", request, app.now)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=enroll, args=(app,)) for app in apps]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    with apps[0].store.transaction() as tx:
        versions = sorted(v.version for v in tx.certificates.versions_of("dev"))
    for app in apps:
        app.close()
    assert not failures, failures
    assert versions == list(range(1, 2 * ROUNDS + 1))
