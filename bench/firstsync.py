#!/usr/bin/env python3
"""A first sync at the clouds' limit: N new certificates to AWS, Google and Azure, each enforcing its quota.

    .venv/bin/python bench/firstsync.py [--n 2000] [--key ec-p256|rsa-2048] [--latency-ms 20]
                                        [--scale auto|X] [--runners 1|3] [--rss-compare]

Every certificate goes to all three clouds (first sync: issue, then create each secret). Each
cloud enforces its real quota multiplied by one scale factor (the same for every cloud), chosen so
that the slowest domain needs about a minute at 100% of its quota (`--scale auto`: N / 200), and
every call carries ~20 ms of injected latency (a network round trip):
  * Google: our emulator, 600 writes/min and 600 reads/min per project x scale (a 6 s sliding
    window); a first push is CreateSecret + AddSecretVersion + UpdateSecret (3 writes) and a
    GetSecret (1 read). RESOURCE_EXHAUSTED beyond.
  * Azure: our emulator, 4,000 transactions / 10 s per vault x scale (a 5 s window); a first push
    is a GET (404) and a PUT. 429 + Retry-After beyond.
  * AWS: LocalStack behind tests/support/rate_limiting_proxy.py, 50/s per API group x scale (1 s
    sliding windows); a first push is DescribeSecret + CreateSecret. ThrottlingException beyond.
certsync runs as a user runs it (`certsync apply`, the CLI in a subprocess) with each destination's
max_calls_per_second set to 95% of the scaled quota (its default share of a quota).

The quota-bound minimum is the time the slowest domain needs for its quota-counted calls at 100%
of its quota (issuance, start-up and listings not included). Calls are counted at the emulators /
the proxy: per secret (no secret may be written twice) and per second. The last line is the ratio
wall / minimum, the throttling errors surfaced, and the peak RSS. With --runners 3 the store is a
throwaway PostgreSQL server and three `certsync apply --shared --runner k` start at once. With
--rss-compare the run is repeated at N = 10,000 (its own auto scale: also about a minute) and the
peak RSS ratio printed.
Everything started here is stopped and its temp dirs removed; nothing is installed (LocalStack must
be available as for bench/paced.py; PostgreSQL, for --runners > 1, as for the store tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._clouds import Run  # noqa: E402
from tests.emulators.azure_harness import running_azure_emulator  # noqa: E402
from tests.support import gcp_harness  # noqa: E402
from tests.support.rate_limiting_proxy import AWS_LIMITS, RateLimitingProxy  # noqa: E402

PYTHON = sys.executable
HEADROOM = 0.95
THROTTLE_RE = re.compile(r"Throttl|RESOURCE_EXHAUSTED|TooManyRequests|HTTP 429|Rate exceeded|quota", re.I)
GCP_WINDOW, AZURE_WINDOW = 6.0, 5.0
# real quotas: Google 10 writes/s and 10 reads/s per project, Azure 400 transactions/s per vault,
# AWS 50 calls/s per API group (CreateSecret)
GCP_RATE, AZURE_RATE, AWS_RATE = 10.0, 400.0, 50.0
GCP_WRITES_PER_PUSH, AZURE_CALLS_PER_PUSH, AWS_CREATES_PER_PUSH = 3, 2, 1
PROJECT = "bench-firstsync"

CA_AND_PROFILE = """\
[store]
url = "{url}"
key_file = "certsync.key"

[ca.root]
subject = "CN=Bench Root CA,O=certsync bench"
key = "ec-p256"

[ca.issuing]
parent = "root"
subject = "CN=Bench Issuing CA,O=certsync bench"
key = "ec-p256"

[profile.bench]
ca = "issuing"
key = "{key}"
validity = "90d"
renew_before = "30d"
allowed_domains = ["*.bench.example.internal"]
usages = ["serverAuth"]
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Clouds:
    scale: float
    gcp: str = ""
    azure: str = ""
    azure_ca: str = ""
    aws: RateLimitingProxy | None = None

    def destinations(self) -> str:
        s = self.scale
        return (
            f'\n[destination.aws]\nprovider = "aws"\nregion = "us-east-1"\nendpoint_url = "{self.aws.url}"\n'
            f'format = "json"\nmax_calls_per_second = {AWS_RATE * s * HEADROOM:.3f}\n'
            f'\n[destination.gcp]\nprovider = "gcp"\nproject = "{PROJECT}"\nendpoint = "{self.gcp}"\n'
            f'insecure = true\nformat = "pem"\nmax_calls_per_second = {GCP_RATE * s * HEADROOM:.3f}\n'
            f'\n[destination.azure]\nprovider = "azure"\nvault_url = "{self.azure}"\nca_bundle = "{self.azure_ca}"\n'
            f'verify_challenge_resource = false\nformat = "pem"\n'
            f"max_calls_per_second = {AZURE_RATE * s * HEADROOM:.3f}\n"
        )

    def minimum(self, n: int) -> dict[str, float]:
        """Seconds each domain needs at 100% of its (scaled) quota for n first pushes."""
        s = self.scale
        return {
            "aws": n * AWS_CREATES_PER_PUSH / (AWS_RATE * s),
            "gcp": n * GCP_WRITES_PER_PUSH / (GCP_RATE * s),
            "azure": n * AZURE_CALLS_PER_PUSH / (AZURE_RATE * s),
        }

    def counts(self) -> dict[str, dict]:
        """Per cloud: writes per secret (max, number of secrets), peak admitted per second, throttled."""
        import grpc

        with grpc.insecure_channel(self.gcp) as channel:
            g = json.loads(channel.unary_unary("/certsync.emulator.v1.Admin/GetStats")(b"", timeout=10))
        gw = next((v for k, v in g["writes_by_secret"].items() if PROJECT in k), {})
        gps = next((v for k, v in g["writes_per_second"].items() if PROJECT in k), {})
        g_throttled = sum(c.get("RESOURCE_EXHAUSTED", 0) for c in g["errors"].values())
        a = _azure_stats(self.azure, self.azure_ca)
        a_throttled = sum(op["by_status"].get("429", 0) for op in a["operations"].values())
        aws = self.aws
        creates = [v for (group, _), v in aws.writes_by_secret.items() if group == "CreateSecret"]
        per_second: dict[int, int] = {}
        for t in aws.times["CreateSecret"]:
            per_second[int(t)] = per_second.get(int(t), 0) + 1
        return {
            "aws": dict(
                secrets=len(creates),
                max_writes=max(creates, default=0),
                per_push=AWS_CREATES_PER_PUSH,
                peak=max(per_second.values(), default=0),
                quota=AWS_RATE * self.scale,
                throttled=sum(aws.throttled.values()),
            ),
            "gcp": dict(
                secrets=len(gw),
                max_writes=max(gw.values(), default=0),
                per_push=GCP_WRITES_PER_PUSH,
                peak=max(gps.values(), default=0),
                quota=GCP_RATE * self.scale,
                throttled=g_throttled,
            ),
            "azure": dict(
                secrets=len(a["writes_by_secret"]),
                max_writes=max(a["writes_by_secret"].values(), default=0),
                per_push=1,
                peak=max(a["per_second"].values(), default=0),
                quota=AZURE_RATE * self.scale,
                throttled=a_throttled,
            ),
        }


def _azure_stats(url: str, ca: str) -> dict:
    import ssl
    import urllib.request

    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca))
    )
    with opener.open(url + "/_emulator/stats", timeout=10) as resp:
        return json.load(resp)


def run_measured(argv: list[str], *, cwd: Path, env: dict, timeout: float, check: bool = True) -> Run:
    """bench/_clouds.run_measured, plus the child's CPU time (user + system) in .cpu."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - started > timeout:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise SystemExit(f"bench: {' '.join(argv[-3:])} took more than {timeout:.0f} s")
        time.sleep(0.01)
    out.seek(0), err.seek(0)
    run = Run(
        time.perf_counter() - started,
        usage.ru_maxrss / 1024,
        os.waitstatus_to_exitcode(status),
        out.read().decode(),
        err.read().decode(),
    )
    run.cpu = usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]
    if check and run.returncode != 0:
        raise SystemExit(f"bench: `{' '.join(argv[2:])}` exited {run.returncode}:\n{run.stderr[-3000:]}")
    return run


@contextlib.contextmanager
def clouds_running(tmp: Path, scale: float, latency_ms: float):
    clouds = Clouds(scale)
    with contextlib.ExitStack() as stack:
        state = tmp / "aws-emulator"
        started = subprocess.run(
            [PYTHON, str(ROOT / "localstack" / "emulators.py"), "--state-dir", str(state), "start", "aws"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        stack.callback(
            subprocess.run,
            [PYTHON, str(ROOT / "localstack" / "emulators.py"), "--state-dir", str(state), "stop"],
            capture_output=True,
            timeout=120,
        )
        if started.returncode != 0:
            raise SystemExit(f"bench: LocalStack did not start: {started.stderr.strip()[-800:]}")
        upstream = json.loads((state / "state.json").read_text())["emulators"]["aws"]["endpoint"]
        limits = {g: (calls, round(limit * scale)) for g, (calls, limit) in AWS_LIMITS.items()}
        clouds.aws = stack.enter_context(RateLimitingProxy(upstream, limits, window=1.0, latency=latency_ms / 1000))
        per_window = round(GCP_RATE * scale * GCP_WINDOW)
        proc, clouds.gcp = gcp_harness.start_gcp_emulator(
            "--write-quota-per-minute",
            str(per_window),
            "--read-quota-per-minute",
            str(per_window),
            "--quota-window-seconds",
            str(GCP_WINDOW),
            "--latency-ms",
            str(latency_ms),
            "--workers",
            "64",
        )
        stack.callback(gcp_harness.stop, proc)
        emu = stack.enter_context(
            running_azure_emulator(
                tmp / "azure",
                "--throttle-per-10s",
                str(round(AZURE_RATE * scale * AZURE_WINDOW)),
                "--throttle-window",
                str(AZURE_WINDOW),
                "--latency-ms",
                str(latency_ms),
            )
        )
        clouds.azure, clouds.azure_ca = emu.url, str(emu.ca)
        yield clouds, emu.env() | {"REQUESTS_CA_BUNDLE": str(emu.ca)}


def write_config(folder: Path, clouds: Clouds, n: int, key: str, url: str, prefix: str) -> None:
    parts = [CA_AND_PROFILE.format(url=url, key=key), clouds.destinations()]
    for i in range(n):
        name = f"{prefix}{i:05d}"
        parts.append(
            f'\n[certificate.{name}]\nprofile = "bench"\ncommon_name = "{name}.bench.example.internal"\n'
            f'destinations = ["aws", "gcp", "azure"]\n'
        )
    (folder / "sync.toml").write_text("".join(parts))


@dataclass
class Outcome:
    n: int
    runners: int
    wall: float
    minimum: dict[str, float]
    rss_mb: float
    cpu: float
    failed: int
    surfaced: int
    counts: dict[str, dict]

    @property
    def bound(self) -> float:
        return max(self.minimum.values())

    @property
    def ratio(self) -> float:
        return self.wall / self.bound


def first_sync(tmp: Path, clouds: Clouds, env: dict, n: int, key: str, runners: int, prefix: str) -> Outcome:
    folder = tmp / f"project-{prefix}"
    folder.mkdir()
    url = "sqlite:///certsync.db"
    with contextlib.ExitStack() as stack:
        if runners > 1:
            from tests.support.postgres import Cluster

            cluster = Cluster().start()
            stack.callback(cluster.stop)
            url = cluster.url
        write_config(folder, clouds, n, key, url, prefix)
        run_measured([PYTHON, "-m", "sync", "init"], cwd=folder, env=env, timeout=120)
        log(
            f"first sync of {n} {key} certificates to aws, gcp, azure ({runners} runner(s)); "
            f"bound {max(clouds.minimum(n).values()):.1f}s"
        )
        started = time.perf_counter()
        if runners == 1:
            runs = [
                run_measured(
                    [PYTHON, "-m", "sync", "--output", "json", "apply"], cwd=folder, env=env, timeout=1800, check=False
                )
            ]
        else:
            runs = _parallel(folder, env, runners)
        wall = time.perf_counter() - started
    failed = surfaced = 0
    if len(runs) > 1:
        log("runners' wall times: " + ", ".join(f"{r.seconds:.1f}s" for r in runs))
    for run in runs:
        try:
            doc = json.loads(run.stdout)
        except ValueError:
            raise SystemExit(f"bench: apply exited {run.returncode} without a report: {run.stderr[-1500:]}") from None
        for r in doc["results"]:
            if r["status"] == "failed":
                failed += 1
                surfaced += bool(THROTTLE_RE.search(r.get("error") or ""))
                if failed <= 3:
                    log(f"failed: {r['action']} {r['certificate']} {r.get('destination')}: {r.get('error')}")
    return Outcome(
        n,
        runners,
        wall,
        clouds.minimum(n),
        max(r.max_rss_mb for r in runs),
        sum(r.cpu for r in runs),
        failed,
        surfaced,
        clouds.counts(),
    )


def _parallel(folder: Path, env: dict, runners: int):
    """k runners started at once (threads only wait on their child)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(runners) as pool:
        futures = [
            pool.submit(
                run_measured,
                [PYTHON, "-m", "sync", "--output", "json", "apply", "--shared", "--runner", str(k)],
                cwd=folder,
                env=env,
                timeout=1800,
                check=False,
            )
            for k in range(runners)
        ]
        return [f.result() for f in futures]


def report(o: Outcome) -> None:
    print(
        f"N = {o.n}, {o.runners} runner(s): wall {o.wall:.1f}s, quota-bound minimum {o.bound:.1f}s "
        f"(" + ", ".join(f"{k} {v:.1f}s" for k, v in o.minimum.items()) + f"), peak RSS {o.rss_mb:.0f} MB, "
        f"certsync CPU {o.cpu:.1f}s ({o.cpu / o.wall:.0%} of wall; machine load {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores)"
    )
    head = ("cloud", "secrets", "max writes/secret", "writes/push", "peak calls/s", "quota/s", "throttled")
    rows = [head] + [
        (
            k,
            str(c["secrets"]),
            str(c["max_writes"]),
            str(c["per_push"]),
            str(c["peak"]),
            f"{c['quota']:.0f}",
            str(c["throttled"]),
        )
        for k, c in o.counts.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for i, r in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--key", default="ec-p256", choices=("ec-p256", "ec-p384", "rsa-2048", "rsa-3072"))
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--scale", default="auto", help="quota multiplier for every cloud (auto: N / 200, ~1 minute)")
    p.add_argument("--runners", type=int, default=1, help="certsync apply --shared processes on one PostgreSQL store")
    p.add_argument(
        "--rss-compare", action="store_true", help="also run N = 10,000 (about a minute too): peak RSS ratio"
    )
    args = p.parse_args(argv)
    scale = args.n / 200 if args.scale == "auto" else float(args.scale)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CERTSYNC_", "AWS_", "IDENTITY_", "GOOGLE_")) and k != "REQUESTS_CA_BUNDLE"
    }
    env |= {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
    }
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="certsync-firstsync-") as tmp_name:
        tmp = Path(tmp_name)
        sizes = [args.n] + ([10_000] if args.rss_compare and args.n != 10_000 else [])
        for i, n in enumerate(sizes):
            # --rss-compare: each size at its own auto scale (about a minute each; peak RSS is compared)
            size_scale = n / 200 if args.scale == "auto" else scale
            with clouds_running(tmp / f"clouds{i}", size_scale, args.latency_ms) as (clouds, cloud_env):
                outcomes.append(first_sync(tmp, clouds, env | cloud_env, n, args.key, args.runners, f"c{i}x"))
            report(outcomes[-1])
    o = outcomes[0]
    twice = [k for k, c in o.counts.items() if c["max_writes"] > c["per_push"]]
    over = [k for k, c in o.counts.items() if c["throttled"]]
    bound = ""
    if o.ratio >= 1.15:  # what held it back: key generation, or this machine's CPU, not the quotas
        bound = (
            " (crypto-bound: issuance dominates)"
            if args.key.startswith("rsa")
            else f" (CPU-bound here: certsync used {o.cpu / o.wall:.0%} of a core, load {os.getloadavg()[0]:.1f})"
        )
    rss = ""
    if len(outcomes) > 1:
        big = outcomes[1]
        rss = (
            f"; peak RSS N=10000 / N={args.n}: {big.rss_mb / o.rss_mb:.2f}x ({big.rss_mb:.0f} MB; that run: "
            f"{big.ratio:.2f}x, {big.failed} failures, {big.surfaced} of them throttling)"
        )
    print(
        f"first sync {o.n} {args.key}, {o.runners} runner(s), scale {scale:g}, {args.latency_ms:g} ms/call: "
        f"wall/quota-bound minimum = {o.ratio:.2f}x ({o.wall:.1f}s / {o.bound:.1f}s){bound}; "
        f"{o.surfaced} throttling errors surfaced ({o.failed} failures); throttling answers at the clouds: "
        f"{sum(c['throttled'] for c in o.counts.values())}; secrets written twice: {', '.join(twice) or 'none'}; "
        f"peak RSS {o.rss_mb:.0f} MB{rss}"
    )
    return 0 if o.failed == 0 and not twice and not over else 1


if __name__ == "__main__":
    sys.exit(main())
