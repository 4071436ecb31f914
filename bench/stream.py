#!/usr/bin/env python3
"""Sync at scale: does a first sync run at the destination's quota, with memory that does not grow
with N? A streaming `apply` (issue -> render -> push per quota domain, bounded queues) measured
against the quota-bound minimum, and optionally against another checkout, side by side in one run.

    .venv/bin/python bench/stream.py [--n 2000] [--rsa-n 150] [--rate 200] [--latency-ms 20]
                                     [--memory-n 2000,10000] [--repeat 2] [--baseline DIR]

Each measurement is one `App.apply()` (the library path `certsync apply` takes) in a fresh
subprocess on a fresh SQLite store (init not timed): N new certificates, one destination of AWS's
kind paced at --rate calls/s (max_calls_per_second; a push is one call), concurrency 8, whose
calls take --latency-ms each (an in-memory secret store, tests/support/memory.py, that sleeps that
long per write and keeps no values, so its own memory does not grow with N).

  * ec-p256, --n certificates: wall time against the quota-bound minimum N / rate (the time the
    pushes need at 100% of the rate), and when the first push landed;
  * rsa-2048, --rsa-n certificates: the same; RSA key generation (~30-40 ms a key per core here)
    can bound this one rather than the quota: the line says which, from the crypto-bound minimum
    (keys / cores / keygen rate, measured here with a bare loop);
  * memory: peak RSS of the process (ru_maxrss) at each --memory-n (ec-p256, --rate x 10, no
    latency, so the run is short), and its ratio largest / smallest.

With --baseline DIR (another checkout, e.g. `git archive main | tar -x -C /tmp/base`), every
measurement also runs with that tree's code (PYTHONPATH=DIR), the two taking turns (--repeat
times, median), so load from elsewhere hits both alike. Nothing leaves the machine; temp dirs are
removed. Last line: wall / quota-bound minimum for each key type (target <= 1.15 for ec-p256) and
the RSS ratio (target < 1.5), for this tree and the baseline.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_WALL, TARGET_RSS = 1.15, 1.5

CHILD = r"""
import json, resource, sys, threading, time
from pathlib import Path
args = json.loads(sys.argv[1])
from sync import config as config_mod
from sync.app import App
from tests.support.memory import MemoryCloud, MemoryProvider

class Sink(MemoryProvider):
    '''A write takes `latency` seconds; the value is not kept (only names and labels).'''
    first = None
    lock = threading.Lock()
    def put(self, name, payload, *, content_type, labels):
        time.sleep(args["latency"])
        with Sink.lock:
            if Sink.first is None:
                Sink.first = time.perf_counter()
        return super().put(name, "", content_type=content_type, labels=labels)

folder = Path(args["folder"])
data = {
    "store": {"url": f"sqlite:///{folder / 'certsync.db'}"},
    "ca": {"root": {"subject": "CN=Bench Root CA", "key": "ec-p384"},
           "issuing": {"parent": "root", "subject": "CN=Bench Issuing CA", "key": "ec-p256"}},
    "profile": {"tls": {"ca": "issuing", "key": args["key"], "validity": "90d", "renew_before": "30d",
                        "allowed_domains": ["*.example.internal"], "usages": ["serverAuth"]}},
    "destination": {"vault": {"provider": "aws", "region": "eu-west-1", "concurrency": 8,
                              "max_calls_per_second": args["rate"]}},
    "certificate": {f"c{i}": {"profile": "tls", "common_name": f"c{i}.example.internal",
                              "destinations": ["vault"]} for i in range(args["n"])},
}
cfg = config_mod.from_dict(data, source="bench", base_dir=folder)
App(cfg).init()
cloud = MemoryCloud()
started = time.perf_counter()
report = App(cfg, providers=lambda d: Sink(cloud)).apply()
wall = time.perf_counter() - started
summary = report.summary()
if summary != {"issue": args["n"], "push": args["n"]}:
    raise SystemExit(f"bench: unexpected summary {summary}")
print(json.dumps({"wall": wall, "first_push": (Sink.first or started) - started,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(tree: Path, n: int, key: str, rate: float, latency: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="certsync-stream-"))
    try:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        args = json.dumps({"folder": str(folder), "n": n, "key": key, "rate": rate, "latency": latency})
        done = subprocess.run(
            [sys.executable, "-c", CHILD, args], cwd=tree, env=env, capture_output=True, text=True, timeout=1800
        )
        if done.returncode != 0:
            raise SystemExit(f"bench: run failed ({tree}): {done.stderr.strip().splitlines()[-1:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def rsa_keys_per_second(count: int = 6) -> float:
    from cryptography.hazmat.primitives.asymmetric import rsa

    started = time.perf_counter()
    for _ in range(count):
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return count / (time.perf_counter() - started)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def median_runs(trees: dict[str, Path], repeat: int, *args) -> dict[str, dict]:
    """Each tree's median figures over `repeat` runs, the trees taking turns."""
    runs: dict[str, list[dict]] = {label: [] for label in trees}
    for _ in range(repeat):
        for label, tree in trees.items():
            runs[label].append(child(tree, *args))
    return {label: {k: statistics.median(r[k] for r in found) for k in found[0]} for label, found in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="ec-p256 certificates (default 2000)")
    parser.add_argument("--rsa-n", type=int, default=150, help="rsa-2048 certificates (default 150)")
    parser.add_argument("--rate", type=float, default=200.0, help="the destination's calls/s (default 200)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="time a write takes (default 20)")
    parser.add_argument("--memory-n", default="2000,10000", help="sizes for the RSS rows (default 2000,10000)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement, median (default 2)")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with, in the same run")
    args = parser.parse_args()
    sizes = sorted(int(x) for x in args.memory_n.split(",") if x)
    if not (
        1 <= args.n <= 20000
        and 1 <= args.rsa_n <= 2000
        and sizes
        and sizes[0] >= 1
        and sizes[-1] <= 20000
        and 1 <= args.repeat <= 5
        and 1 <= args.rate <= 100000
        and 0 <= args.latency_ms <= 1000
    ):
        parser.error("bounds: --n 1..20000, --rsa-n 1..2000, --memory-n 1..20000, --repeat 1..5, --rate 1..100000")
    if args.baseline is not None and not (args.baseline / "sync" / "reconcile" / "apply.py").exists():
        parser.error(f"--baseline {args.baseline}: not a certsync checkout")
    os.environ.setdefault("CERTSYNC_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    trees = {"this tree": ROOT}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    latency = args.latency_ms / 1000

    rows, ratios = [], {label: {} for label in trees}
    for key, n in (("ec-p256", args.n), ("rsa-2048", args.rsa_n)):
        floor = n / args.rate
        found = median_runs(trees, args.repeat, n, key, args.rate, latency)
        for label, r in found.items():
            ratios[label][key] = r["wall"] / floor
            rows.append((key, label, n, r["wall"], r["first_push"], floor, r["rss_mb"]))
    keygen = rsa_keys_per_second()
    crypto_floor = args.rsa_n / keygen / cores()
    memory = {label: [] for label in trees}
    for n in sizes:
        found = median_runs(trees, 1, n, "ec-p256", args.rate * 10, 0.0)
        for label, r in found.items():
            memory[label].append((n, r["rss_mb"], r["wall"]))

    print(
        f"{'key':9} {'code':10} {'n':>6} {'wall s':>8} {'1st push s':>11} {'quota min s':>12} "
        f"{'wall/min':>9} {'peak RSS MB':>12}"
    )
    for key, label, n, wall, first, floor, rss in rows:
        print(f"{key:9} {label:10} {n:6d} {wall:8.2f} {first:11.2f} {floor:12.2f} {wall / floor:9.2f} {rss:12.0f}")
    print(
        f"rsa-2048 crypto-bound minimum: {crypto_floor:.2f} s ({args.rsa_n} keys at {keygen:.0f}/s per core x "
        f"{cores()} cores) vs quota-bound {args.rsa_n / args.rate:.2f} s: "
        f"{'crypto' if crypto_floor > args.rsa_n / args.rate else 'the quota'} bounds it"
    )
    for label, found in memory.items():
        print(f"memory ({label}): " + ", ".join(f"N={n}: {rss:.0f} MB in {wall:.1f} s" for n, rss, wall in found))
    parts = []
    for label in trees:
        rss_ratio = memory[label][-1][1] / memory[label][0][1]
        parts.append(
            f"{label}: ec-p256 wall/quota-min {ratios[label]['ec-p256']:.2f} (target <= {TARGET_WALL}), "
            f"rsa-2048 {ratios[label]['rsa-2048']:.2f}, RSS N={sizes[-1]}/N={sizes[0]} {rss_ratio:.2f} "
            f"(target < {TARGET_RSS})"
        )
    print("; ".join(parts))
    ok = (
        ratios["this tree"]["ec-p256"] <= TARGET_WALL
        and memory["this tree"][-1][1] / memory["this tree"][0][1] < TARGET_RSS
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
