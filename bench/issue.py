#!/usr/bin/env python3
"""Sync at scale: is issuance the bottleneck? certsync's issue-and-store rate against a bare loop
of `cryptography` calls, side by side in one run.

    .venv/bin/python bench/issue.py [--n 500] [--rsa-n 40] [--repeat 5]

For each key type (ec-p256 with --n certificates, rsa-2048 with --rsa-n: an RSA key takes ~40 ms
to generate, so fewer of them keep the run short):

  * bare loop: generate the key, build the leaf with the extensions certsync puts on it
    (basicConstraints, keyUsage, extendedKeyUsage, SAN, SKI, AKI, CRL distribution point, OCSP
    URL), sign it with the issuing CA's key (ec-p256). Pure cryptography calls, nothing stored,
    nothing serialised;
  * certsync: the library call path `certsync apply` uses (`App.apply`) on a config
    with N certificates and no destination, into a fresh SQLite store (init not timed): plan,
    policy checks, key generation, signing, keys encrypted (AES-256-GCM), rows written;
  * certsync, one transaction per certificate: what `apply` did before batching (issue_many
    with batch_size 1), for reference.

The multi-core rows (rsa-2048): the bare loop split over one process per core, against certsync
with its crypto pool (RSA keys made ahead in one worker process per core, sync/pki/workers.py) and
with the pool off (CERTSYNC_CRYPTO_WORKERS=0: keys made in-process, as before). ec-p256 keys stay
in-process (a key takes ~50 µs: a round trip to a worker would cost more). Both pools are started
before the timing; what starting certsync's costs once per run is printed below the table.

Bare loop and certsync take turns (--repeat times, a fresh store each time) and the medians are
compared, so load from other processes hits both alike; a short warm-up goes first. Rates are
certificates per second (wall time); CPU-time ratios are shown next to them, as they depend less
on what else the machine does. The last line gives certsync / bare for each key type; the target
is >= 0.50 for ec-p256. Nothing leaves the machine; temp dirs removed.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, UTC
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID  # noqa: E402

from sync import config as config_mod  # noqa: E402
from sync.app import App  # noqa: E402
from sync.ca.issue import IssueRequest, issue_many  # noqa: E402
from sync.clock import utcnow  # noqa: E402
from sync.pki import workers  # noqa: E402

CRL_URL = "http://pki.example.internal/crl/issuing.crl"
OCSP_URL = "http://pki.example.internal/ocsp"
TARGET = 0.50


# --- the bare loop -----------------------------------------------------------------------------


def _keygen(key_type: str):
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))


def bare_loop(n: int, key_type: str) -> tuple[float, float]:
    """(wall, CPU) seconds for n x (key generation + leaf build + signature) with cryptography alone."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Issuing CA")])
    now = datetime.now(UTC)
    ku = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_type.startswith("rsa"),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    crl = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(CRL_URL)], relative_name=None, reasons=None, crl_issuer=None
            )
        ]
    )
    aia = x509.AuthorityInformationAccess(
        [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP_URL))]
    )
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        key = _keygen(key_type)
        public = key.public_key()
        cn = f"c{i}.example.internal"
        (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=90))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(aki, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(ku, critical=True)
            .add_extension(eku, critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .add_extension(crl, critical=False)
            .add_extension(aia, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
    return time.perf_counter() - started, time.process_time() - cpu


# --- certsync ----------------------------------------------------------------------------------


def make_config(folder: Path, n: int, key_type: str) -> config_mod.Config:
    data = {
        "store": {"url": f"sqlite:///{folder / 'certsync.db'}"},
        "ca": {
            "root": {"subject": "CN=Bench Root CA,O=certsync bench", "key": "ec-p384"},
            "issuing": {
                "parent": "root",
                "subject": "CN=Bench Issuing CA,O=certsync bench",
                "key": "ec-p256",
                "crl_url": CRL_URL,
                "ocsp_url": OCSP_URL,
            },
        },
        "profile": {
            "tls": {
                "ca": "issuing",
                "key": key_type,
                "validity": "90d",
                "renew_before": "30d",
                "allowed_domains": ["*.example.internal"],
                "usages": ["serverAuth"],
            }
        },
        "certificate": {f"c{i}": {"profile": "tls", "common_name": f"c{i}.example.internal"} for i in range(n)},
    }
    return config_mod.from_dict(data, source="bench", base_dir=folder)


def certsync_run(n: int, key_type: str, per_certificate: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds for `apply` to issue and store n certificates into a fresh store."""
    folder = Path(tempfile.mkdtemp(prefix="certsync-bench-"))
    try:
        cfg = make_config(folder, n, key_type)
        App(cfg).init()
        if per_certificate:
            store = App(cfg).store
            started, cpu = time.perf_counter(), time.process_time()
            for _ in issue_many(cfg, store, [IssueRequest(name) for name in cfg.certificate], utcnow(), batch_size=1):
                pass
            return time.perf_counter() - started, time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        report = App(cfg).apply()
        seconds = time.perf_counter() - started, time.process_time() - cpu
        if report.summary() != {"issue": n}:
            raise SystemExit(f"bench: apply did not issue {n} certificates: {report.summary()}")
        return seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _bare_part(args: tuple[int, str]) -> tuple[float, float]:
    return bare_loop(*args)


def bare_multicore(pool, n: int, key_type: str, workers: int) -> tuple[float, float]:
    """(wall, CPU of the workers) for n x the bare loop split over `workers` processes."""
    parts = [(n // workers + (1 if i < n % workers else 0), key_type) for i in range(workers)]
    started = time.perf_counter()
    cpu = sum(c for _, c in pool.map(_bare_part, [p for p in parts if p[0]]))
    return time.perf_counter() - started, cpu


def certsync_in_process(n: int, key_type: str) -> tuple[float, float]:
    os.environ["CERTSYNC_CRYPTO_WORKERS"] = "0"
    try:
        return certsync_run(n, key_type)
    finally:
        del os.environ["CERTSYNC_CRYPTO_WORKERS"]


def pool_start_seconds() -> float:
    """What starting certsync's crypto pool costs a run (fork server, one worker per core, imports)."""
    workers.shutdown()
    started = time.perf_counter()
    pool = workers.pool(workers.POOL_MIN)
    if pool is None:
        return 0.0
    list(pool.map(abs, range(workers.worker_count())))
    return time.perf_counter() - started


def interleaved(repeat: int, *runs) -> list[tuple[float, float]]:
    """Median (wall, CPU) seconds of each run, the runs taking turns (so load from elsewhere hits
    all alike)."""
    times: list[list[tuple[float, float]]] = [[] for _ in runs]
    for _ in range(repeat):
        for i, run in enumerate(runs):
            times[i].append(run())
    return [(statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for t in times]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="ec-p256 certificates per run (default 500)")
    parser.add_argument("--rsa-n", type=int, default=40, help="rsa-2048 certificates per run (default 40)")
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs per measurement, median taken (default 5; at most 3 for RSA)"
    )
    args = parser.parse_args()
    if not (1 <= args.n <= 20000 and 1 <= args.rsa_n <= 2000 and 1 <= args.repeat <= 9):
        parser.error("bounds: --n 1..20000, --rsa-n 1..2000, --repeat 1..9")
    os.environ["CERTSYNC_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()

    bare_loop(20, "ec-p256")  # warm-up: imports, first-call costs
    certsync_run(20, "ec-p256")

    rows, ratios = [], {}
    os.environ["CERTSYNC_CRYPTO_WORKERS"] = "0"  # one core, as the bare loop
    for key_type, n, repeat in (("ec-p256", args.n, args.repeat), ("rsa-2048", args.rsa_n, min(args.repeat, 3))):
        bare, ours = interleaved(repeat, lambda: bare_loop(n, key_type), lambda: certsync_run(n, key_type))
        old = certsync_run(n, key_type, per_certificate=True)
        ratios[key_type] = (bare[0] / ours[0], bare[1] / ours[1])
        rows += [
            (key_type, "bare cryptography loop (keygen + sign)", n, bare, bare),
            (key_type, "certsync apply (batched, stored)", n, ours, bare),
            (key_type, "certsync, 1 transaction per cert (before)", n, old, bare),
        ]
    del os.environ["CERTSYNC_CRYPTO_WORKERS"]
    cores = workers.worker_count()
    started = pool_start_seconds()
    with ProcessPoolExecutor(max_workers=cores, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(abs, range(cores)))  # started before the timing, as certsync's
        n = args.rsa_n
        multi, single, ours = interleaved(
            min(args.repeat, 3),
            lambda: bare_multicore(pool, n, "rsa-2048", cores),
            lambda: certsync_in_process(n, "rsa-2048"),
            lambda: certsync_run(n, "rsa-2048"),
        )
    ratios["multi"] = (multi[0] / ours[0], single[0] / ours[0])
    rows += [
        ("rsa-2048", f"bare loop, {cores} processes (multi-core)", n, multi, multi),
        ("rsa-2048", "certsync apply, keys in-process", n, single, multi),
        ("rsa-2048", f"certsync apply, keys in {cores} worker processes", n, ours, multi),
    ]

    print(f"{'key':9} {'path':45} {'n':>6} {'wall s':>8} {'certs/s':>9} {'vs bare':>8} {'CPU s':>7} {'vs bare':>8}")
    for key_type, path, n, (wall, cpu), (bare_wall, bare_cpu) in rows:
        print(
            f"{key_type:9} {path:45} {n:6d} {wall:8.3f} {n / wall:9.1f} {bare_wall / wall:8.0%} {cpu:7.3f} "
            f"{bare_cpu / cpu:8.0%}"
        )
    print(
        f"(multi-core rows: 'vs bare' is against the multi-core bare loop; CPU s there is the workers' for "
        f"the bare loop, this process's for certsync; starting certsync's pool costs a run {started:.2f} s once)"
    )
    ok = ratios["ec-p256"][0] >= TARGET
    print(
        f"ratio certsync/bare (certificates per second): ec-p256 {ratios['ec-p256'][0]:.2f} "
        f"(CPU time {ratios['ec-p256'][1]:.2f}; target >= {TARGET:.2f}: {'met' if ok else 'MISSED'}), "
        f"rsa-2048 {ratios['rsa-2048'][0]:.2f}; multi-core rsa-2048 ({cores} cores): certsync/bare "
        f"{ratios['multi'][0]:.2f}, speed-up over keys in-process {ratios['multi'][1]:.2f}x"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
