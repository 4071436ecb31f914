"""CRL publication under concurrency, on both backends, with real `certsync` processes: several
`certsync crl` and one `certsync revoke` started together never make two different CRLs with one
number, the CRLs after the revocation list the revoked serial, and the final CRL is the newest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from sync import config
from sync.app import App
from sync.store import Store
from tests.store.conftest import STORE_CONFIG

REPO = Path(__file__).resolve().parents[2]
CRL_PROCESSES = 5


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _start(store_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "--output", "json", *args],
        cwd=store_dir,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def crl_store(store_dir, backend):
    """A store whose CRLs are past half their life almost at once (crl_lifetime 1s): every
    `certsync crl` signs a new one, so they race to publish."""
    text = STORE_CONFIG.format(url=backend.url).replace('validity = "1825d"', 'validity = "1825d"\ncrl_lifetime = "1s"')
    (store_dir / "sync.toml").write_text(text)
    with App(config.load(store_dir / "sync.toml")) as app:
        app.init()
        app.apply()
    return store_dir


@pytest.mark.parametrize("round_", range(2))
def test_concurrent_crl_and_revoke_publish_one_crl_per_number(crl_store, backend, round_):
    store_dir = crl_store
    cert = ["api", "web"][round_]
    procs = [_start(store_dir, "crl", "issuing", "--out", f"crl-{i}.der") for i in range(CRL_PROCESSES)]
    procs.insert(CRL_PROCESSES // 2, _start(store_dir, "revoke", cert, "--reason", "keyCompromise"))
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), outputs
    revoked = json.loads(outputs[CRL_PROCESSES // 2][0])["revoked"]
    serial, revoke_number = int(revoked["serial"], 16), revoked["crl_number"]

    crls = [x509.load_der_x509_crl((store_dir / f"crl-{i}.der").read_bytes()) for i in range(CRL_PROCESSES)]
    with App(config.load(store_dir / "sync.toml")) as app:
        store: Store = app.store
        with store.transaction() as tx:
            authority = tx.authorities.active("issuing")
            final = x509.load_der_x509_crl(authority.crl_der)
            assert authority.crl_number == _number(final)
    crls.append(final)
    by_number: dict[int, set[bytes]] = {}
    for crl in crls:
        by_number.setdefault(_number(crl), set()).add(crl.tbs_certlist_bytes)
    assert all(len(v) == 1 for v in by_number.values()), (
        f"two different CRLs with one number: {sorted(n for n, v in by_number.items() if len(v) > 1)}"
    )
    assert _number(final) == max(by_number) and _number(final) >= revoke_number
    assert final.get_revoked_certificate_by_serial_number(serial) is not None, "the final CRL lacks the revocation"
    for crl in crls:  # every CRL numbered from the revocation's on lists it
        if _number(crl) >= revoke_number:
            assert crl.get_revoked_certificate_by_serial_number(serial) is not None, _number(crl)
    ordered = sorted(crls, key=_number)  # numbers strictly increase with time
    for older, newer in zip(ordered, ordered[1:]):
        if _number(older) != _number(newer):
            assert older.last_update_utc <= newer.last_update_utc
