"""Shared by bench/noop.py and bench/memory.py: the emulators in a temp state dir, a project folder
with a config of N certificates, the CLI as a subprocess (wall time and peak RSS), and API calls
counted at the emulators (AWS through tests/support/counting_proxy.py, Google by the emulator's
GetStats for our project, Azure by GET /_emulator/stats), never by certsync itself.
Everything binds to 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.clouds import Cloud  # noqa: E402
from tests.support.counting_proxy import CountingProxy  # noqa: E402

PYTHON = sys.executable
LAUNCHER = ROOT / "localstack" / "emulators.py"
FORMATS = {"aws": "json", "gcp": "pem", "azure": "pkcs12"}
PROJECT = "certsync-bench"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}

CA_AND_PROFILE = """
[store]
url = "sqlite:///certsync.db"
key_file = "certsync.key"

[ca.root]
subject = "CN=Bench Root CA,O=certsync bench"
key = "ec-p384"

[ca.issuing]
parent = "root"
subject = "CN=Bench Issuing CA,O=certsync bench"
key = "ec-p256"
crl_url = "http://pki.example.internal/crl/issuing.crl"

[profile.tls]
ca = "issuing"
key = "ec-p256"
validity = "90d"
renew_before = "30d"
allowed_domains = ["*.example.internal"]
usages = ["serverAuth"]
"""


@contextlib.contextmanager
def emulators(kinds: list[str], workdir: Path):
    """Start the named emulators (free ports) into workdir/emulators; stop them at the end."""
    state_dir = workdir / "emulators"
    started = subprocess.run(
        [PYTHON, str(LAUNCHER), "--state-dir", str(state_dir), "start", *kinds],
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        if started.returncode != 0:
            raise SystemExit(f"bench: emulators did not start:\n{started.stderr}")
        state = json.loads((state_dir / "state.json").read_text())
        yield {kind: state["emulators"][kind] for kind in kinds}
    finally:
        subprocess.run([PYTHON, str(LAUNCHER), "--state-dir", str(state_dir), "stop"], capture_output=True, timeout=120)


@dataclass
class Counters:
    """API calls seen at each emulator (for our GCP project only)."""

    clouds: dict[str, Cloud]
    proxy: CountingProxy | None

    def snapshot(self) -> dict[str, dict[str, int]]:
        seen: dict[str, dict[str, int]] = {}
        for kind, cloud in self.clouds.items():
            if kind == "aws":
                seen[kind] = dict(self.proxy.calls)
            elif kind == "gcp":
                import grpc

                with grpc.insecure_channel(cloud.entry["endpoint"]) as channel:
                    stats = json.loads(channel.unary_unary("/certsync.emulator.v1.Admin/GetStats")(b""))
                calls = next((v for k, v in stats["by_project"].items() if PROJECT in k), {})
                seen[kind] = dict(calls.get("calls", calls))
            else:
                context = ssl.create_default_context(cafile=cloud.entry["ca_bundle"])
                with urllib.request.build_opener(
                    urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
                ).open(cloud.entry["endpoint"] + "/_emulator/stats", timeout=10) as resp:
                    stats = json.load(resp)
                seen[kind] = {op: v["total"] for op, v in stats["operations"].items()}
        return seen

    @staticmethod
    def diff(before: dict, after: dict) -> dict[str, dict[str, int]]:
        return {
            kind: {
                op: n - before.get(kind, {}).get(op, 0) for op, n in ops.items() if n - before.get(kind, {}).get(op, 0)
            }
            for kind, ops in after.items()
        }


class Project:
    """A folder with sync.toml for N certificates over the given clouds, and the CLI run in it."""

    def __init__(
        self, folder: Path, entries: dict[str, dict], n: int, proxy: CountingProxy | None, spread: bool = True
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.kinds = list(entries)
        self.clouds = {kind: Cloud(kind, entry, project=PROJECT) for kind, entry in entries.items()}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CERTSYNC_")} | AWS_ENV
        for cloud in self.clouds.values():
            self.env.update(cloud.env())
        blocks = []
        for kind, cloud in self.clouds.items():
            if kind == "aws" and proxy is not None:  # certsync and the naive reader go through it
                cloud = Cloud(kind, {**cloud.entry, "endpoint": proxy.url}, project=PROJECT)
                self.clouds[kind] = cloud
            # the emulators are not the clouds: no pacing to their real quotas while seeding
            blocks.append(cloud.destination(kind, FORMATS[kind], "max_calls_per_second = 100000"))
        # spread: certificate i goes to cloud i mod len(clouds); else every certificate to every cloud
        self.targets = [(f"c{i}", [self.kinds[i % len(self.kinds)]] if spread else list(self.kinds)) for i in range(n)]
        certs = "".join(
            f'\n[certificate.{name}]\nprofile = "tls"\ncommon_name = "{name}.example.internal"\n'
            f"destinations = {json.dumps(kinds)}\n"
            for name, kinds in self.targets
        )
        (folder / "sync.toml").write_text(textwrap.dedent(CA_AND_PROFILE) + "".join(blocks) + certs)
        self.counters = Counters(self.clouds, proxy)

    def run(self, *args: str, timeout: float = 900, check: bool = True) -> Run:
        return run_measured([PYTHON, "-m", "sync", *args], cwd=self.folder, env=self.env, timeout=timeout, check=check)

    def expected_leaves(self) -> dict[str, str]:
        """cert name -> SHA-256 of its active leaf (DER), read from the store (not timed)."""
        import hashlib
        from sync import config
        from sync.app import App

        cfg = config.load(self.folder / "sync.toml")
        with App(cfg) as app, app.store.transaction() as tx:
            return {row.name: hashlib.sha256(row.cert_der).hexdigest() for row in tx.certificates.latest_versions()}


@dataclass
class Run:
    seconds: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(argv: list[str], *, cwd: Path, env: dict, timeout: float, check: bool = True) -> Run:
    """Run argv; wall time and the child's own peak RSS (os.wait4, not the bench's)."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise SystemExit(f"bench: {' '.join(argv[-3:])} took more than {timeout:.0f} s")
        time.sleep(0.005)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0), err.seek(0)
    run = Run(seconds, usage.ru_maxrss / 1024, proc.returncode, out.read().decode(), err.read().decode())
    if check and run.returncode != 0:
        raise SystemExit(f"bench: `{' '.join(argv[2:])}` exited {run.returncode}:\n{run.stderr[-3000:]}")
    return run


@contextlib.contextmanager
def temp_dir(prefix: str):
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
