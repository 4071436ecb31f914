#!/usr/bin/env python3
"""Sync at scale: does certsync's pacing use the clouds' write quotas without being throttled?

    .venv/bin/python bench/paced.py [--clouds aws,gcp,azure] [--n 500|aws=500,gcp=40,azure=200] [--no-unpaced]

Each cloud gets a quota that answers with its real throttling error beyond it:
  * Google: our emulator with `--write-quota-per-minute 60 --quota-window-seconds 6`: the real rate
    (600 writes/min = 10/s per project) in a 10x shorter sliding window, so a run of seconds can
    hit it; RESOURCE_EXHAUSTED beyond. A first push is 3 writes (CreateSecret, AddSecretVersion,
    UpdateSecret labels) plus one read (GetSecret). certsync: default pacing (95% = 9.5 writes/s).
  * Azure: our emulator with `--throttle-per-10s 200 --throttle-window 5` (40 transactions/s: the
    real 4000 per 10 s is 400/s, more than 2 cores can drive through TLS); every transaction
    counts (a push is GET + PUT); 429 + Retry-After beyond. certsync paces at 95% of that quota:
    max_calls_per_second = 38 (its default, 95% of 400/s, cannot be used against a scaled vault).
  * AWS: LocalStack behind tests/support/rate_limiting_proxy.py (sliding 1 s windows, 50/s per
    API group as on the AWS quotas page; CreateSecret 50/s assumed; ThrottlingException beyond).
    A first push is DescribeSecret + CreateSecret. certsync: default pacing (95% = 47.5/s).

The certificates are issued first (an apply without destinations); the store is then copied for
each measured run, so the runs below are push-only applies (the CLI, as a user runs it): once with
the default pacing, once with pacing off (max_calls_per_second = 100000). Calls are counted at the
emulators / the proxy, not by certsync (the unpaced run writes other names, "u-cNNNN", and uses
another Google project). Achieved rate = quota-limited calls admitted from the first to the last
one, less one push's worth, over that time: (n - 1) / span for one call per push (the emulators
are polled every 50 ms; the proxy has exact times). Listing calls made while planning are left
out. The last line gives the lowest share of the quota over the clouds and the throttling errors
certsync surfaced (failures), which must be 0. Exit status 0 when every cloud reaches >= 90% of its
quota with no failure, else 1. Everything started here is stopped, temp dirs removed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.emulators.azure_harness import running_azure_emulator  # noqa: E402
from tests.support import gcp_harness  # noqa: E402
from tests.support.rate_limiting_proxy import RateLimitingProxy  # noqa: E402

PYTHON = sys.executable
CLOUDS = ("gcp", "azure", "aws")
DEFAULT_N = {"aws": 500, "gcp": 40, "azure": 200}
TARGET = 0.90
HEADROOM = 0.95  # certsync's default share of a quota (sync/reconcile/pacing.py)
UNPACED = 100_000  # max_calls_per_second that turns pacing off

GCP_WINDOW, GCP_WRITES_PER_WINDOW = 6.0, 60  # 10 writes/s
AZURE_WINDOW, AZURE_PER_WINDOW = 5.0, 200  # 40 transactions/s
AWS_WINDOW = 1.0
GCP_WRITES = (
    "CreateSecret",
    "AddSecretVersion",
    "UpdateSecret",
    "DeleteSecret",
    "DestroySecretVersion",
    "DisableSecretVersion",
    "EnableSecretVersion",
)
THROTTLE_RE = re.compile(r"Throttl|RESOURCE_EXHAUSTED|TooManyRequests|HTTP 429|Rate exceeded", re.I)

CA_AND_PROFILE = """\
[store]
url = "sqlite:///certsync.db"
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
key = "ec-p256"
validity = "90d"
renew_before = "30d"
allowed_domains = ["*.bench.example.internal"]
usages = ["serverAuth"]
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the clouds ----------------------------------------------------------------------------------


@dataclass
class Cloud:
    kind: str
    n: int
    quota_rate: float  # quota-limited calls per second
    quota_text: str
    limited: str  # what the quota counts
    endpoint: str = ""
    extra: dict = field(default_factory=dict)

    def dest_name(self, paced: bool) -> str:
        return self.kind if paced else f"{self.kind}-unpaced"

    def destination(self, paced: bool) -> str:
        name = self.dest_name(paced)
        if self.kind == "aws":
            body = f'provider = "aws"\nregion = "us-east-1"\nendpoint_url = "{self.endpoint}"\nformat = "json"'
            rate = None
        elif self.kind == "gcp":
            project = "bench-paced" if paced else "bench-unpaced"
            body = (
                f'provider = "gcp"\nproject = "{project}"\nendpoint = "{self.endpoint}"\ninsecure = true\n'
                'format = "pem"'
            )
            rate = None
        else:
            body = (
                f'provider = "azure"\nvault_url = "{self.endpoint}"\nca_bundle = "{self.extra["ca"]}"\n'
                'verify_challenge_resource = false\nformat = "pem"'
            )
            rate = round(self.quota_rate * HEADROOM, 3)  # 95% of the scaled-down vault quota
        if not paced:
            rate = UNPACED
        if rate is not None:
            body += f"\nmax_calls_per_second = {rate}"
        return f"\n[destination.{name}]\n{body}\n"


def cert_names(n: int) -> list[str]:
    return [f"c{i:04d}" for i in range(n)]


def write_config(path: Path, clouds: list[Cloud], n_max: int, paced: bool | None) -> None:
    """paced None: no destinations (issuance only)."""
    parts = [CA_AND_PROFILE]
    if paced is not None:
        parts += [c.destination(paced) for c in clouds]
    for i, name in enumerate(cert_names(n_max)):
        targets = []
        if paced is not None:
            prefix = "" if paced else "u-"
            targets = [f'{{ to = "{c.dest_name(paced)}", name = "{prefix}{name}" }}' for c in clouds if i < c.n]
        parts.append(
            f'\n[certificate.{name}]\nprofile = "bench"\ncommon_name = "{name}.bench.example.internal"\n'
            f'dns_names = ["{name}.bench.example.internal"]\ndestinations = [{", ".join(targets)}]\n'
        )
    path.write_text("".join(parts))


# --- counting at the clouds ----------------------------------------------------------------------


class GcpProbe:
    """Writes admitted / throttled for one project, from the emulator's Admin/GetStats."""

    def __init__(self, endpoint: str) -> None:
        import grpc

        self.channel = grpc.insecure_channel(endpoint)
        self.call = self.channel.unary_unary("/certsync.emulator.v1.Admin/GetStats")
        self.project = ""

    def __call__(self) -> tuple[int, int]:
        stats = json.loads(self.call(b"", timeout=5))
        mine = stats["by_project"].get(self.project, {})
        seen = sum(mine.get(m, 0) for m in GCP_WRITES)
        # errors are per method, not per project: only one project is busy at a time here
        throttled = sum(stats["errors"].get(m, {}).get("RESOURCE_EXHAUSTED", 0) for m in GCP_WRITES)
        return seen - throttled, throttled

    def close(self) -> None:
        self.channel.close()


class AzureProbe:
    """Transactions admitted (authenticated, not throttled) / 429s, from GET /_emulator/stats.

    The listing pages (GetSecrets) count against the vault's quota too, but certsync makes them
    while planning, before the push phase: they are left out of the push-phase rate."""

    def __init__(self, url: str, ca: str) -> None:
        host, port = url.removeprefix("https://").split(":")
        self.conn = http.client.HTTPSConnection(
            host, int(port), timeout=5, context=ssl.create_default_context(cafile=ca)
        )

    def __call__(self) -> tuple[int, int]:
        for attempt in (1, 2):
            try:
                self.conn.request("GET", "/_emulator/stats")
                stats = json.loads(self.conn.getresponse().read())
                break
            except (OSError, http.client.HTTPException):
                self.conn.close()
                if attempt == 2:
                    raise
        admitted = throttled = 0
        for op, counts in stats["operations"].items():
            if op in ("ManagedIdentityToken", "Unknown"):
                continue
            by = counts["by_status"]
            throttled += by.get("429", 0)
            if op in ("GetSecrets", "GetDeletedSecrets", "GetSecretVersions"):
                continue
            admitted += counts["total"] - by.get("429", 0) - by.get("401", 0)
        return admitted, throttled

    def close(self) -> None:
        self.conn.close()


class AwsProbe:
    """The quota-limited calls of a push (CreateSecret, PutSecretValue, TagResource groups), from the proxy."""

    GROUPS = ("CreateSecret", "PutSecretValue+UpdateSecret", "TagResource+UntagResource")

    def __init__(self, proxy: RateLimitingProxy) -> None:
        self.proxy = proxy

    def __call__(self) -> tuple[int, int]:
        return (sum(self.proxy.admitted[g] for g in self.GROUPS), sum(self.proxy.throttled.values()))

    def mark(self) -> dict[str, int]:
        return {g: len(self.proxy.times[g]) for g in self.GROUPS}

    def rate(self, mark: dict[str, int]) -> tuple[str, int, float, float]:
        """(busiest group, its calls, span, calls/s) since `mark`, from exact arrival times."""
        best = ("CreateSecret", 0, 0.0, 0.0)
        for g in self.GROUPS:
            times = self.proxy.times[g][mark[g] :]
            if len(times) > best[1]:
                span = times[-1] - times[0] if len(times) > 1 else 0.0
                best = (g, len(times), span, (len(times) - 1) / span if span > 0 else 0.0)
        return best

    def close(self) -> None:
        pass


class Sampler(threading.Thread):
    """Polls the emulators' counters every `period` seconds while a run goes on."""

    def __init__(self, probes: dict, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.probes, self.period = probes, period
        self.series: dict[str, list[tuple[float, int, int]]] = {k: [] for k in probes}
        self._done = threading.Event()

    def sample(self) -> None:
        for kind, probe in self.probes.items():
            admitted, throttled = probe()
            self.series[kind].append((time.monotonic(), admitted, throttled))

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.period)

    def finish(self) -> None:
        self._done.set()
        self.join()
        self.sample()  # the final counts, after the run has ended


def sampled_rate(series: list[tuple[float, int, int]], pushes: int) -> tuple[int, int, float, float]:
    """(admitted, throttled, span, rate) from polled cumulative counters.

    The span runs from the first poll that saw a call to the first poll that saw the final count
    (both lag their event by 0..period, the same on average). Like (n - 1) / span for single
    calls, one push's worth of calls is left out of the count: the calls of P pushes paced at
    rate r span (P - 1) pushes' time."""
    _, a0, th0 = series[0]
    _, a_end, th_end = series[-1]
    calls = a_end - a0
    first = next((t for t, a, _ in series if a > a0), None)
    last = next((t for t, a, _ in series if a == a_end), None)
    if first is None or last is None or last <= first or not pushes:
        return calls, th_end - th0, 0.0, 0.0
    span = last - first
    return calls, th_end - th0, span, (calls - calls / pushes) / span


# --- running certsync ----------------------------------------------------------------------------


def certsync(workdir: Path, env: dict, *args: str, timeout: float = 240) -> tuple[int, dict | None, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [PYTHON, "-m", "sync", "--config", str(workdir / "sync.toml"), "--output", "json", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    try:
        doc = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        doc = None
    return proc.returncode, doc, proc.stderr, seconds


def copy_store(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    with sqlite3.connect(src / "certsync.db") as a, sqlite3.connect(dst / "certsync.db") as b:
        a.backup(b)
    os.chmod(dst / "certsync.db", 0o600)
    shutil.copy2(src / "certsync.key", dst / "certsync.key")


@dataclass
class Row:
    cloud: str
    mode: str
    quota: str
    pushed: int
    n: int
    calls: int
    throttled: int
    span: float
    rate: float
    pct: float
    failed: int
    failed_throttled: int
    apply_s: float
    note: str = ""


def measure(
    mode: str, workdir: Path, env: dict, clouds: list[Cloud], probes: dict, aws_probe: AwsProbe | None
) -> tuple[list[Row], list[str]]:
    for c in clouds:
        if c.kind == "gcp":
            probes["gcp"].project = "bench-paced" if mode == "paced" else "bench-unpaced"
    sampler = Sampler(probes)
    sampler.sample()
    aws_mark = aws_probe.mark() if aws_probe else None
    sampler.start()
    try:
        rc, doc, stderr, apply_s = certsync(workdir, env, "apply")
    finally:
        sampler.finish()
    errors = []
    if doc is None:
        errors.append(f"{mode}: apply exit {rc}, no JSON report: {stderr.strip()[-800:]}")
        doc = {"results": []}
    rows = []
    for c in clouds:
        dest = c.dest_name(mode == "paced")
        results = [r for r in doc["results"] if r["destination"] == dest and r["action"] == "push"]
        failed = [r for r in results if r["status"] == "failed"]
        done = sum(1 for r in results if r["status"] == "done")
        calls, throttled, span, rate = sampled_rate(sampler.series[c.kind], done)
        note = ""
        if c.kind == "aws":
            note, calls, span, rate = aws_probe.rate(aws_mark)
        for r in failed[:3]:
            errors.append(f"{mode} {dest}: {r['remote_name']}: {r['error']}")
        rows.append(
            Row(
                c.kind,
                mode,
                c.quota_text,
                done,
                c.n,
                calls,
                throttled,
                span,
                rate,
                rate / c.quota_rate,
                len(failed),
                sum(1 for r in failed if THROTTLE_RE.search(r["error"] or "")),
                apply_s,
                note,
            )
        )
    return rows, errors


# --- main ----------------------------------------------------------------------------------------


def parse_n(text: str | None, clouds: list[str]) -> dict[str, int]:
    n = {c: DEFAULT_N[c] for c in clouds}
    if text:
        if "=" not in text:
            return {c: int(text) for c in clouds}
        for part in text.split(","):
            k, v = part.split("=")
            n[k.strip()] = int(v)
    return n


def start_aws(state_dir: Path) -> str:
    subprocess.run(
        [PYTHON, str(ROOT / "localstack" / "emulators.py"), "--state-dir", str(state_dir), "start", "aws"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return json.loads((state_dir / "state.json").read_text())["emulators"]["aws"]["endpoint"]


def stop_aws(state_dir: Path) -> None:
    subprocess.run(
        [PYTHON, str(ROOT / "localstack" / "emulators.py"), "--state-dir", str(state_dir), "stop"],
        capture_output=True,
        timeout=60,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clouds", default="aws,gcp,azure")
    p.add_argument("--n", default=None, help="certificates per cloud: one number, or aws=500,gcp=40,azure=200")
    p.add_argument("--no-unpaced", action="store_true", help="skip the run with pacing off")
    args = p.parse_args(argv)
    kinds = [c for c in CLOUDS if c in {x.strip() for x in args.clouds.split(",")}]
    if not kinds:
        p.error("--clouds: name at least one of aws, gcp, azure")
    n = parse_n(args.n, kinds)
    bench_start = time.monotonic()

    tmp = Path(tempfile.mkdtemp(prefix="certsync-paced-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CERTSYNC_", "AWS_", "IDENTITY_", "GOOGLE_")) and k not in ("REQUESTS_CA_BUNDLE",)
    }
    env |= {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
    }
    clouds: dict[str, Cloud] = {}
    probes: dict = {}
    aws_probe = None
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, True)
        # issuance (not measured) while the emulators start
        issue_dir = tmp / "issue"
        issue_dir.mkdir()
        futures = {}
        if "aws" in kinds:
            aws_state = tmp / "aws-emulator"
            stack.callback(stop_aws, aws_state)  # after the pool below has waited for the start
            pool = stack.enter_context(ThreadPoolExecutor(1))
            futures["aws"] = pool.submit(start_aws, aws_state)
        if "gcp" in kinds:
            proc, endpoint = gcp_harness.start_gcp_emulator(
                "--write-quota-per-minute", str(GCP_WRITES_PER_WINDOW), "--quota-window-seconds", str(GCP_WINDOW)
            )
            stack.callback(gcp_harness.stop, proc)
            q = GCP_WRITES_PER_WINDOW / GCP_WINDOW
            clouds["gcp"] = Cloud("gcp", n["gcp"], q, f"{GCP_WRITES_PER_WINDOW}/{GCP_WINDOW:g}s", "writes", endpoint)
            probes["gcp"] = GcpProbe(endpoint)
            stack.callback(probes["gcp"].close)
        if "azure" in kinds:
            emu = stack.enter_context(
                running_azure_emulator(
                    tmp / "azure", "--throttle-per-10s", str(AZURE_PER_WINDOW), "--throttle-window", str(AZURE_WINDOW)
                )
            )
            q = AZURE_PER_WINDOW / AZURE_WINDOW
            clouds["azure"] = Cloud(
                "azure",
                n["azure"],
                q,
                f"{AZURE_PER_WINDOW}/{AZURE_WINDOW:g}s",
                "transactions",
                emu.url,
                {"ca": str(emu.ca)},
            )
            env |= emu.env() | {"REQUESTS_CA_BUNDLE": str(emu.ca)}
            probes["azure"] = AzureProbe(emu.url, str(emu.ca))
            stack.callback(probes["azure"].close)

        n_max = max(n.values())
        write_config(issue_dir / "sync.toml", [], n_max, None)
        for cmd in (("init",), ("apply",)):
            rc, doc, stderr, secs = certsync(issue_dir, env, *cmd)
            if rc != 0:
                raise SystemExit(f"issuance: certsync {cmd[0]} exited {rc}: {stderr.strip()[-800:]}")
        log(f"issued {n_max} certificates in {secs:.1f}s (not measured)")

        if "aws" in kinds:
            upstream = futures["aws"].result()
            proxy = stack.enter_context(RateLimitingProxy(upstream, window=AWS_WINDOW))
            clouds["aws"] = Cloud("aws", n["aws"], 50.0, "50/1s per API", "CreateSecret", proxy.url)
            aws_probe = probes["aws"] = AwsProbe(proxy)
        order = [clouds[k] for k in kinds]

        rows, errors = [], []
        for mode in ("paced",) + (() if args.no_unpaced else ("unpaced",)):
            workdir = tmp / mode
            copy_store(issue_dir, workdir)
            write_config(workdir / "sync.toml", order, n_max, paced=(mode == "paced"))
            if mode == "unpaced" and "azure" in clouds:
                time.sleep(AZURE_WINDOW)  # let the vault's window clear (GCP: other project)
            log(f"{mode} push: " + ", ".join(f"{c.kind} {c.n}" for c in order))
            got, errs = measure(mode, workdir, env, order, probes, aws_probe)
            rows += got
            errors += errs

    print_table(rows)
    for e in errors[:12]:
        print(f"  ! {e}")
    paced = [r for r in rows if r.mode == "paced"]
    unpaced = [r for r in rows if r.mode == "unpaced"]
    surfaced = sum(r.failed_throttled for r in paced)
    failures = sum(r.failed for r in paced)
    worst = min(r.pct for r in paced)
    ok = worst >= TARGET and failures == 0
    print(f"bench time {time.monotonic() - bench_start:.0f}s")
    tail = ""
    if unpaced:
        tail = (
            f"; unpaced: {sum(r.throttled for r in unpaced)} throttling answers, "
            f"{sum(r.failed_throttled for r in unpaced)} surfaced"
        )
    print(
        f"paced: achieved {worst:.0%} of quota ("
        + ", ".join(f"{r.cloud} {r.pct:.0%}" for r in paced)
        + f"), {surfaced} throttling errors surfaced ({sum(r.throttled for r in paced)} throttling answers"
        + f", {failures} failures){tail}"
    )
    return 0 if ok else 1


def print_table(rows: list[Row]) -> None:
    head = (
        "cloud",
        "mode",
        "quota",
        "pushed",
        "limited calls",
        "throttled",
        "span s",
        "rate/s",
        "of quota",
        "failed (throttling)",
        "apply s",
    )
    lines = [head]
    for r in rows:
        lines.append(
            (
                r.cloud,
                r.mode,
                r.quota,
                f"{r.pushed}/{r.n}",
                f"{r.calls}" + (f" {r.note}" if r.note else ""),
                str(r.throttled),
                f"{r.span:.1f}",
                f"{r.rate:.1f}",
                f"{r.pct:.0%}",
                f"{r.failed} ({r.failed_throttled})",
                f"{r.apply_s:.1f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for i, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main())
