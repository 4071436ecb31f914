#!/usr/bin/env python3
"""Sync at scale: what does a run with nothing to do cost? certsync's no-change `apply` against a
naive reconciler that reads every secret's value and compares, side by side in one run.

    .venv/bin/python bench/noop.py [--n 2000] [--clouds aws,gcp,azure] [--every-cloud] [--naive-parallel]

Starts the emulators itself (localstack/emulators.py, free ports on 127.0.0.1, a temp state dir;
stopped at the end): LocalStack for AWS, our Google Secret Manager (gRPC) and Azure Key Vault
(HTTPS) emulators. N certificates are spread over the clouds (certificate i goes to cloud
i mod 3: json to AWS, pem to Google, pkcs12 to Azure), N secrets in all; --every-cloud sends each
certificate to every cloud instead (3N secrets). Then:

  1. `certsync init` and a first `certsync apply` push everything (not measured; pacing is off:
     the emulators are not the clouds' quotas); `certsync plan --detailed-exitcode` must say 0;
  2. measured, nothing to do: `certsync --output json apply`, the CLI in a subprocess as cron runs
     it; then the same in a subprocess that first imports what both contenders need (certsync,
     boto3, google-cloud-secret-manager, azure-identity/keyvault) and times the run after that;
  3. measured: the naive reconciler, in a subprocess with the same imports done first: it loads
     the config and the store (which certificate each destination should hold), reads every
     secret with the providers' own get() (the adapters certsync uses; AWS DescribeSecret +
     GetSecretValue, Google GetSecret + AccessSecretVersion, Azure GetSecret) in one loop over
     the targets, and compares the leaf certificate in each value with the store's (cheaper
     than rendering the expected payload). --naive-parallel also runs it with one loop per cloud
     in parallel threads (certsync lists the clouds in parallel).

API calls are counted at the emulators, not by certsync: AWS through a counting proxy
(tests/support/counting_proxy.py) both use, Google by the emulator's GetStats for this run's
project, Azure by the emulator's /_emulator/stats (token and 401-challenge calls included).
Wall times: whole process, and after the common imports (~0.6 s of interpreter and SDK imports
that any Python reconciler pays, whatever it does; on loopback emulators a call costs ~2-6 ms,
so at small N that fixed cost dominates the end-to-end ratio).
The last line: naive / certsync for calls and for time (targets >= 20x and >= 10x; the time
target is checked after imports; the end-to-end ratio is printed next to it).
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


# --- the two runs, each in its own process ------------------------------------------------------

WARM_IMPORTS = (
    "sync.cli",
    "boto3",
    "google.cloud.secretmanager",
    "azure.identity",
    "azure.keyvault.secrets",
    "providers.aws",
    "providers.gcp",
    "providers.azure",
)


def _warm() -> float:
    """Import what both runs need (Python, certsync, the three SDKs); returns the seconds it took."""
    import importlib

    started = time.perf_counter()
    for module in WARM_IMPORTS:
        importlib.import_module(module)
    return time.perf_counter() - started


def leaf_sha256(value, fmt: str) -> str:
    import base64
    import hashlib
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

    if isinstance(value, bytes):
        value = value.decode()
    if fmt == "json":
        leaf = x509.load_pem_x509_certificate(json.loads(value)["certificate"].encode())
    elif fmt == "pem":
        leaf = x509.load_pem_x509_certificates(value.encode())[0]
    else:
        leaf = pkcs12.load_pkcs12(base64.b64decode(value), None).cert.certificate
    return hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()


def naive_worker(parallel: bool) -> int:
    """Read every secret's value and compare: the store says which certificate each destination
    should hold, each provider's get() reads the value (AWS: DescribeSecret + GetSecretValue,
    Google: GetSecret + AccessSecretVersion, Azure: GetSecret), the leaf in it is compared with
    the store's. One loop over the targets (--naive-parallel: one loop per cloud, in parallel)."""
    import_seconds = _warm()
    started = time.perf_counter()
    import hashlib
    from sync import config as config_mod
    from sync.app import App
    from sync.reconcile.destinations import Providers

    cfg = config_mod.load("sync.toml")
    with App(cfg) as app, app.store.transaction() as tx:
        leaves = {row.name: hashlib.sha256(row.cert_der).hexdigest() for row in tx.certificates.latest_versions()}
    providers = Providers(cfg)
    targets = [(ref.to, ref.name, name) for name, spec in cfg.certificate.items() for ref in spec.targets(name)]

    def check(items) -> list[bool]:
        out = []
        for destination, remote_name, cert in items:
            remote = providers(destination).get(remote_name)
            fmt = cfg.destination[destination].format
            out.append(
                remote is not None and remote.value is not None and leaf_sha256(remote.value, fmt) == leaves.get(cert)
            )
        return out

    if parallel:
        groups: dict[str, list] = {}
        for target in targets:
            groups.setdefault(target[0], []).append(target)
        with ThreadPoolExecutor(len(groups)) as pool:
            results = [ok for part in pool.map(check, groups.values()) for ok in part]
    else:
        results = check(targets)
    print(
        json.dumps(
            {
                "import_seconds": import_seconds,
                "seconds": time.perf_counter() - started,
                "checked": len(results),
                "differ": results.count(False),
            }
        )
    )
    return 0


def certsync_worker() -> int:
    """`certsync --output json apply` in this process, timed after the same imports as the naive run."""
    import contextlib
    import io

    import_seconds = _warm()
    from sync import cli

    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        try:
            cli.main()  # sys.argv: certsync --output json apply, as the console script
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"import_seconds": import_seconds, "seconds": seconds, "summary": json.loads(out.getvalue())["summary"]}
        )
    )
    return 0


# --- the bench ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="certificates (default 2000)")
    parser.add_argument("--clouds", default="aws,gcp,azure", help="any of aws,gcp,azure (default all three)")
    parser.add_argument("--every-cloud", action="store_true", help="each certificate to every cloud (3N secrets)")
    parser.add_argument(
        "--naive-parallel",
        action="store_true",
        help="also run the naive reconciler with one loop per cloud, in parallel",
    )
    parser.add_argument("--worker", choices=["certsync", "naive", "naive-parallel"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "certsync":
        sys.argv = ["certsync", "--output", "json", "apply"]
        return certsync_worker()
    if args.worker:
        return naive_worker(args.worker == "naive-parallel")
    kinds = [k for k in args.clouds.split(",") if k]
    if not 1 <= args.n <= 20000 or not kinds or set(kinds) - {"aws", "gcp", "azure"}:
        parser.error("--n must be 1..20000 and --clouds a list of aws, gcp, azure")

    from _clouds import PYTHON, CountingProxy, Project, emulators, run_measured, temp_dir

    rows = []  # (label, run, calls by cloud, inner seconds)
    with temp_dir("certsync-noop-") as work, emulators(kinds, work) as entries:
        proxy = CountingProxy(entries["aws"]["endpoint"]).__enter__() if "aws" in entries else None
        try:
            project = Project(work / "project", entries, args.n, proxy, spread=not args.every_cloud)
            secrets = sum(len(k) for _, k in project.targets)
            project.run("init")
            seed = project.run("--output", "json", "apply", timeout=1800)
            print(
                f"seeded {secrets} secrets for {args.n} certificates on {', '.join(kinds)} in "
                f"{seed.seconds:.1f} s ({json.loads(seed.stdout).get('summary')})",
                file=sys.stderr,
            )
            plan = project.run("plan", "--detailed-exitcode", check=False)
            if plan.returncode != 0:
                raise SystemExit(f"bench: after the first apply, plan still sees changes:\n{plan.stdout[-2000:]}")

            def measured(label: str, argv: list[str], check) -> None:
                before = project.counters.snapshot()
                run = run_measured(argv, cwd=project.folder, env=project.env, timeout=1800)
                calls = project.counters.diff(before, project.counters.snapshot())
                rows.append((label, run, calls, check(run.stdout)))

            def certsync_check(stdout: str) -> float | None:
                document = json.loads(stdout)
                if document["summary"] != {"unchanged": secrets}:
                    raise SystemExit(f"bench: the no-change apply was not all unchanged: {document['summary']}")
                return document.get("seconds")

            def naive_check(stdout: str) -> float:
                document = json.loads(stdout)
                if document["checked"] != secrets or document["differ"]:
                    raise SystemExit(f"bench: the naive reconciler disagrees: {document}")
                return document["seconds"]

            measured(
                "certsync apply (CLI)",
                [PYTHON, "-m", "sync", "--output", "json", "apply"],
                lambda out: (certsync_check(out), None)[1],
            )
            measured("certsync apply (warm)", [PYTHON, __file__, "--worker", "certsync"], certsync_check)
            measured("naive get + compare", [PYTHON, __file__, "--worker", "naive"], naive_check)
            if args.naive_parallel:
                measured("naive, clouds in parallel", [PYTHON, __file__, "--worker", "naive-parallel"], naive_check)
        finally:
            if proxy is not None:
                proxy.__exit__(None, None, None)

    print(
        f"no-change run over {secrets} secrets ({args.n} certificates, "
        f"{'each on every cloud' if args.every_cloud else 'spread over ' + ', '.join(kinds)})"
    )
    print(
        f"{'run':27} "
        + " ".join(f"{k + ' calls':>11}" for k in kinds)
        + f" {'calls':>7} {'wall s':>7} {'after imports s':>16} {'peak RSS MB':>12}"
    )
    for label, run, calls, inner in rows:
        per = [sum(calls.get(k, {}).values()) for k in kinds]
        print(
            f"{label:27} " + " ".join(f"{n:11d}" for n in per) + f" {sum(per):7d} {run.seconds:7.2f} "
            f"{(f'{inner:.2f}' if inner is not None else '-'):>16} {run.max_rss_mb:12.0f}"
        )
    ours = rows[0][2]
    print(
        "certsync calls: "
        + "; ".join(f"{k}: " + ", ".join(f"{op} {n}" for op, n in sorted(ours.get(k, {}).items())) for k in kinds)
    )
    cli_run, warm, naive = rows[0][1], rows[1], rows[2]
    call_ratio = sum(sum(v.values()) for v in naive[2].values()) / max(1, sum(sum(v.values()) for v in ours.values()))
    time_ratio = naive[3] / warm[3]
    e2e_ratio = naive[1].seconds / cli_run.seconds
    ok = call_ratio >= CALLS_TARGET and time_ratio >= TIME_TARGET
    print(
        f"naive/certsync: calls {call_ratio:.1f}x (target >= {CALLS_TARGET:.0f}x), time {time_ratio:.1f}x after "
        f"imports (target >= {TIME_TARGET:.0f}x), {e2e_ratio:.1f}x end to end: {'met' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
