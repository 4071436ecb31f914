#!/usr/bin/env python3
"""Sync at scale: what does a run with nothing to do cost? certsync's no-change `apply` against a
naive reconciler that reads every secret's value and compares, side by side in one run.

    .venv/bin/python bench/noop.py [--n 2000] [--clouds aws,gcp,azure] [--every-cloud]

Starts the emulators itself (localstack/emulators.py, free ports on 127.0.0.1, a temp state dir;
stopped at the end): LocalStack for AWS, our Google Secret Manager (gRPC) and Azure Key Vault
(HTTPS) emulators. N certificates are spread over the clouds (certificate i goes to cloud
i mod 3: json to AWS, pem to Google, pkcs12 to Azure), N secrets in all; --every-cloud sends each
certificate to every cloud instead (3N secrets). Then:

  1. `certsync init` and a first `certsync apply` push everything (not measured; pacing is off,
     the emulators are not the clouds' quotas); `certsync plan --detailed-exitcode` must say 0;
  2. measured: `certsync apply` again (the CLI in a subprocess, as cron runs it) - nothing to do;
  3. measured: the naive reconciler (a subprocess too, so both pay for Python and SDK imports):
     with the official SDKs (boto3 GetSecretValue, google-cloud-secret-manager
     AccessSecretVersion, azure-keyvault-secrets get_secret), one read per secret, 8 threads per
     cloud, the clouds in parallel; it extracts the leaf certificate from each value and compares
     it with the store's. That is the cheapest "read and compare" possible (one call per secret,
     no rendering of the expected payload), so the ratios below are conservative.

API calls are counted at the emulators, not by certsync: AWS through a counting proxy
(tests/support/counting_proxy.py) both clients use, Google by the emulator's GetStats for this
run's project, Azure by the emulator's /_emulator/stats (token and 401-challenge calls included).
The last line: naive / certsync for calls and for wall time (targets >= 20x and >= 10x).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CALLS_TARGET, TIME_TARGET = 20.0, 10.0


# --- the naive reconciler (runs in its own process) ----------------------------------------------

def leaf_sha256(value: str, fmt: str) -> str:
    import base64
    import hashlib
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
    if fmt == "json":
        leaf = x509.load_pem_x509_certificate(json.loads(value)["certificate"].encode())
    elif fmt == "pem":
        leaf = x509.load_pem_x509_certificates(value.encode())[0]
    else:
        leaf = pkcs12.load_pkcs12(base64.b64decode(value), None).cert.certificate
    return hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()


def naive_worker(spec_file: str) -> int:
    from _clouds import FORMATS, Cloud
    spec = json.loads(Path(spec_file).read_text())
    by_cloud: dict[str, list[tuple[str, str]]] = {}
    for kind, name, expected in spec["targets"]:
        by_cloud.setdefault(kind, []).append((name, expected))

    def reconcile(kind: str) -> tuple[int, int]:
        cloud = Cloud(kind, spec["entries"][kind], project=spec["project"])
        client = {"aws": cloud._aws, "gcp": cloud._gcp, "azure": cloud._azure}[kind]()   # one client, shared

        def read(name: str):
            if kind == "aws":
                return client.get_secret_value(SecretId=name)["SecretString"]
            if kind == "gcp":
                return client.access_secret_version(
                    name=f"projects/{spec['project']}/secrets/{name}/versions/latest").payload.data.decode()
            return client.get_secret(name).value

        def check(item) -> bool:
            name, expected = item
            return leaf_sha256(read(name), FORMATS[kind]) == expected

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(check, by_cloud[kind]))
        return len(results), results.count(False)

    with ThreadPoolExecutor(len(by_cloud)) as pool:
        outcomes = dict(zip(by_cloud, pool.map(reconcile, list(by_cloud))))
    print(json.dumps({kind: {"checked": n, "differ": bad} for kind, (n, bad) in outcomes.items()}))
    return 0


# --- the bench ---------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="certificates (default 2000)")
    parser.add_argument("--clouds", default="aws,gcp,azure", help="any of aws,gcp,azure (default all three)")
    parser.add_argument("--every-cloud", action="store_true", help="each certificate to every cloud (3N secrets)")
    parser.add_argument("--naive-worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_worker:
        return naive_worker(args.naive_worker)
    kinds = [k for k in args.clouds.split(",") if k]
    if not 1 <= args.n <= 20000 or not kinds or set(kinds) - {"aws", "gcp", "azure"}:
        parser.error("--n must be 1..20000 and --clouds a list of aws, gcp, azure")

    from _clouds import PROJECT, PYTHON, CountingProxy, Project, emulators, run_measured, temp_dir
    with temp_dir("certsync-noop-") as work, emulators(kinds, work) as entries:
        proxy = CountingProxy(entries["aws"]["endpoint"]).__enter__() if "aws" in entries else None
        try:
            project = Project(work / "project", entries, args.n, proxy, spread=not args.every_cloud)
            secrets = sum(len(k) for _, k in project.targets)
            project.run("init")
            seed = project.run("--output", "json", "apply", timeout=1800)
            summary = json.loads(seed.stdout).get("summary", {})
            print(f"seeded {secrets} secrets for {args.n} certificates on {', '.join(kinds)} "
                  f"in {seed.seconds:.1f} s ({summary})", file=sys.stderr)
            plan = project.run("plan", "--detailed-exitcode", check=False)
            if plan.returncode != 0:
                raise SystemExit(f"bench: after the first apply, plan still sees changes:\n{plan.stdout[-2000:]}")

            before = project.counters.snapshot()
            certsync = project.run("--output", "json", "apply")
            middle = project.counters.snapshot()
            report = json.loads(certsync.stdout)
            unchanged = report.get("summary", {}).get("unchanged")
            if unchanged != secrets:
                raise SystemExit(f"bench: the no-change apply was not all unchanged: {report.get('summary')}")

            leaves = project.expected_leaves()
            spec = work / "naive.json"
            spec.write_text(json.dumps({
                "project": PROJECT, "entries": {k: c.entry for k, c in project.clouds.items()},
                "targets": [(kind, name, leaves[name]) for name, ks in project.targets for kind in ks]}))
            naive = run_measured([PYTHON, __file__, "--naive-worker", str(spec)], cwd=project.folder,
                                 env=project.env, timeout=1800)
            after = project.counters.snapshot()
            checked = json.loads(naive.stdout)
            if any(v["differ"] for v in checked.values()):
                raise SystemExit(f"bench: the naive reconciler found differences: {checked}")
        finally:
            if proxy is not None:
                proxy.__exit__(None, None, None)

    ours, theirs = project.counters.diff(before, middle), project.counters.diff(middle, after)
    print(f"no-change run over {secrets} secrets ({args.n} certificates; "
          f"{'every cloud' if args.every_cloud else 'spread over ' + ', '.join(kinds)})")
    print(f"{'':10} {'certsync calls':>15} {'naive calls':>12}   certsync detail")
    for kind in kinds:
        a, b = sum(ours.get(kind, {}).values()), sum(theirs.get(kind, {}).values())
        detail = ", ".join(f"{op} {n}" for op, n in sorted(ours.get(kind, {}).items()))
        print(f"{kind:10} {a:15d} {b:12d}   {detail}")
    calls_ours = sum(sum(v.values()) for v in ours.values())
    calls_naive = sum(sum(v.values()) for v in theirs.values())
    print(f"{'total':10} {calls_ours:15d} {calls_naive:12d}")
    print(f"wall time: certsync apply {certsync.seconds:.2f} s (peak RSS {certsync.max_rss_mb:.0f} MB), "
          f"naive {naive.seconds:.2f} s (peak RSS {naive.max_rss_mb:.0f} MB); both include interpreter "
          f"start and SDK imports")
    call_ratio = calls_naive / max(calls_ours, 1)
    time_ratio = naive.seconds / certsync.seconds
    ok = call_ratio >= CALLS_TARGET and time_ratio >= TIME_TARGET
    print(f"naive/certsync: calls {call_ratio:.1f}x (target >= {CALLS_TARGET:.0f}x), "
          f"time {time_ratio:.1f}x (target >= {TIME_TARGET:.0f}x): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
