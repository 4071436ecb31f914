#!/usr/bin/env python3
"""Discovery at scale: `certsync discover` over 1,000 local TLS endpoints, concurrent (the default
settings: 100 connections at once) against sequential (concurrency = 1), in the same run.

    .venv/bin/python bench/discover.py [--n 1000] [--latency-ms 20] [--concurrency 100]

A helper process serves N TLS endpoints on 127.0.0.1 (one asyncio loop, N listening sockets, a
distinct EC P-256 certificate each). Loopback has no round trip, so each accepted connection
waits --latency-ms before its handshake, as a server a few network hops away would (0: pure
loopback, where both runs are CPU-bound on 2 cores and concurrency gains little). Each scan runs
in its own process (App.discover: connect, handshake, verify against the system store and
certsync's roots, record in a fresh SQLite store) and reports its wall time and peak RSS
(ru_maxrss). Checks: both scans find N certificates with no error. The last line: sequential /
concurrent time and both peak RSS figures. Exit status 0 when the checks pass and the ratio is
at least 5 (with latency) or 1 (without). Everything started here is stopped, temp dirs removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def serve(n: int, latency: float) -> None:
    """The helper: N endpoints; prints their ports as one JSON line, serves until stdin closes."""
    from tests.support.tls_endpoints import make, server_context, write_chain

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    folder = Path(tempfile.mkdtemp(prefix="certsync-bench-tls-"))
    contexts = [
        server_context(*write_chain(folder, f"e{i}", [make(f"e{i}.bench.test", sans=["127.0.0.1"])])) for i in range(n)
    ]

    class Delayed(asyncio.Protocol):
        """Reads nothing for `latency` (the ClientHello waits in the kernel), then does the handshake."""

        def __init__(self, ctx) -> None:
            self.ctx = ctx

        def connection_made(self, transport) -> None:
            transport.pause_reading()
            asyncio.get_running_loop().create_task(self.handshake(transport))

        async def handshake(self, transport) -> None:
            await asyncio.sleep(latency)
            try:
                tls = await asyncio.get_running_loop().start_tls(transport, self, self.ctx, server_side=True)
                tls.close()
            except (OSError, ConnectionError, ssl.SSLError):
                transport.close()

        def connection_lost(self, exc) -> None:
            pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers = [
            await loop.create_server(lambda ctx=ctx: Delayed(ctx), "127.0.0.1", 0, backlog=256) for ctx in contexts
        ]
        print(json.dumps([s.sockets[0].getsockname()[1] for s in servers]), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()


def scan(targets_file: str, concurrency: int, folder: str) -> None:
    """One measured scan, in this process: prints {seconds, rss_kb, found, errors}."""
    from sync import config as config_mod
    from sync.app import App
    from sync.discovery import scan as discovery

    (Path(folder) / "sync.toml").write_text(
        f'[store]\nurl = "sqlite:///{folder}/s.db"\nkey_file = "{folder}/k"\n'
        f'[discovery.tls]\ntarget_files = ["{targets_file}"]\nconcurrency = {concurrency}\nrate = 10000\n'
        'connect_timeout = "10s"\n'
    )
    config = config_mod.load(Path(folder) / "sync.toml")
    with App(config) as app:
        app.init()
        request = discovery.request_from(config)
        start = time.perf_counter()
        result = app.discover(request)
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "found": result.found,
                "errors": len(result.errors),
                "first_error": result.errors[0] if result.errors else None,
            }
        )
    )


def measured(targets_file: str, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="certsync-bench-scan-") as folder:
        out = subprocess.run(
            [sys.executable, __file__, "--scan", targets_file, "--concurrency", str(concurrency), "--folder", folder],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if out.returncode != 0:
            raise SystemExit(f"scan failed: {out.stderr.strip()[-500:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scan", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.n, args.latency_ms / 1000)
        return 0
    if args.scan:
        scan(args.scan, args.concurrency, args.folder)
        return 0
    bench_start = time.monotonic()
    helper = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--n", str(args.n), "--latency-ms", str(args.latency_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        ports = json.loads(helper.stdout.readline())
        with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="certsync-bench-targets-", delete=False) as fh:
            fh.write("".join(f"127.0.0.1:{p}\n" for p in ports))
            targets = fh.name
        print(
            f"{len(ports)} endpoints up in {time.monotonic() - bench_start:.1f}s "
            f"(latency {args.latency_ms:g} ms before each handshake)"
        )
        concurrent = measured(targets, args.concurrency)
        sequential = measured(targets, 1)
    finally:
        helper.stdin.close()
        helper.wait(30)
        if "targets" in locals():
            os.unlink(targets)
    rows = [("concurrent", args.concurrency, concurrent), ("sequential", 1, sequential)]
    print(f"{'scan':<11} {'conc':>4} {'found':>6} {'errors':>6} {'seconds':>8} {'per s':>7} {'peak RSS MiB':>12}")
    for name, conc, r in rows:
        print(
            f"{name:<11} {conc:>4} {r['found']:>6} {r['errors']:>6} {r['seconds']:>8.2f} "
            f"{r['found'] / r['seconds']:>7.0f} {r['rss_kb'] / 1024:>12.1f}"
        )
        if r["first_error"]:
            print(f"  first error: {r['first_error']}")
    ratio = sequential["seconds"] / concurrent["seconds"]
    ok = all(r["found"] == args.n and r["errors"] == 0 for _, _, r in rows) and ratio >= (5 if args.latency_ms else 1)
    print(f"bench time {time.monotonic() - bench_start:.0f}s")
    print(
        f"discover {args.n} endpoints: concurrent {concurrent['seconds']:.1f}s vs sequential "
        f"{sequential['seconds']:.1f}s = {ratio:.1f}x faster; peak RSS {concurrent['rss_kb'] / 1024:.0f} MiB "
        f"concurrent, {sequential['rss_kb'] / 1024:.0f} MiB sequential{'' if ok else ' (CHECK FAILED)'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
