#!/usr/bin/env python3
"""Sync at scale: does a no-change run's memory stay flat as the number of secrets grows?

    .venv/bin/python bench/memory.py [--sizes 2000,10000] [--cloud gcp|aws]

For each size N: our Google Secret Manager emulator (default; it lists 10,000 secrets in one call,
LocalStack needs 100 pages) is started in a temp state dir on 127.0.0.1, N certificates are issued
and pushed to it by certsync's own `apply` (pacing off: the emulator is not the cloud's quota),
then a no-change `certsync apply` runs in a subprocess, twice:

  * the CLI as cron runs it: its peak RSS (os.wait4 ru_maxrss of that process alone) and wall time;
  * the same run under tracemalloc (`python -X tracemalloc`): the peak of the Python heap.

The RSS includes what any run carries whatever N (interpreter, certsync, SQLAlchemy, the SDK);
the heap peak is what N adds. Last line: RSS at the largest N over RSS at the smallest (target
<= 2x), and the heap peak per secret. Emulators stopped and temp dirs removed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

TARGET = 2.0
TRACED = """
import sys, tracemalloc
tracemalloc.start()
sys.argv = ["certsync", "apply"]
from sync import cli
try:
    cli.main()
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
print("TRACEMALLOC_PEAK", tracemalloc.get_traced_memory()[1], file=sys.stderr)
"""


def measure(n: int, cloud: str) -> dict:
    from _clouds import PYTHON, CountingProxy, Project, emulators, run_measured, temp_dir

    with temp_dir(f"certsync-memory-{n}-") as work, emulators([cloud], work) as entries:
        proxy = CountingProxy(entries["aws"]["endpoint"]).__enter__() if cloud == "aws" else None
        try:
            project = Project(work / "project", entries, n, proxy)
            project.run("init")
            seed = project.run("apply", timeout=1800)
            before = project.counters.snapshot()
            cli = project.run("--output", "json", "apply")
            calls = project.counters.diff(before, project.counters.snapshot())
            summary = json.loads(cli.stdout)["summary"]
            if summary != {"unchanged": n}:
                raise SystemExit(f"bench: the no-change apply at N={n} was not all unchanged: {summary}")
            traced = run_measured([PYTHON, "-c", TRACED], cwd=project.folder, env=project.env, timeout=1800)
            peak = int(
                next(line.split()[1] for line in traced.stderr.splitlines() if line.startswith("TRACEMALLOC_PEAK"))
            )
        finally:
            if proxy is not None:
                proxy.__exit__(None, None, None)
    return {
        "n": n,
        "seed_s": seed.seconds,
        "rss_mb": cli.max_rss_mb,
        "wall_s": cli.seconds,
        "heap_mb": peak / 2**20,
        "calls": sum(calls.get(cloud, {}).values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated N (default 2000,10000)")
    parser.add_argument("--cloud", choices=["gcp", "aws"], default="gcp", help="the one destination (default gcp)")
    args = parser.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    if not sizes or sizes[0] < 1 or sizes[-1] > 20000:
        parser.error("--sizes: numbers from 1 to 20000")
    rows = []
    for n in sizes:
        rows.append(measure(n, args.cloud))
        print(f"N={n}: seeded in {rows[-1]['seed_s']:.1f} s", file=sys.stderr)
    print(f"no-change `certsync apply`, one destination ({args.cloud} emulator)")
    print(
        f"{'secrets':>8} {'API calls':>10} {'wall s':>7} {'peak RSS MB':>12} {'peak heap MB':>13} "
        f"{'heap KB/secret':>15}"
    )
    for r in rows:
        print(
            f"{r['n']:8d} {r['calls']:10d} {r['wall_s']:7.2f} {r['rss_mb']:12.0f} {r['heap_mb']:13.1f} "
            f"{r['heap_mb'] * 1024 / r['n']:15.1f}"
        )
    growth = rows[-1]["rss_mb"] / rows[0]["rss_mb"]
    ok = growth <= TARGET
    print(
        f"peak RSS at N={rows[-1]['n']} / N={rows[0]['n']}: {growth:.2f}x (target <= {TARGET:.0f}x: "
        f"{'met' if ok else 'MISSED'}); heap peak {rows[-1]['heap_mb'] - rows[0]['heap_mb']:.1f} MB more "
        f"for {rows[-1]['n'] - rows[0]['n']} more secrets"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
