"""Crash harness: run the real CLI against the three cloud emulators, SIGKILL it at random points,
rerun `apply` at once (as a scheduler would: no waiting for any TTL) and check what must hold.

Everything random comes from one seeded `random.Random`, so a failing trial can be replayed with
the seed the test prints. Kill points are either a delay from process start, drawn from a range
calibrated by one untouched run of the same kind, or "after the k-th write" counted by a proxy
in front of LocalStack (so some kills land exactly between two pushes).

The checks read the clouds with the official SDKs (tests/e2e/clouds.py) and the store file with
sqlite3, never through certsync's own bookkeeping:

* the rerun of `apply` exits 0, then `plan --detailed-exitcode` exits 0;
* every target holds the store's latest version (leaf serial read back == `list --output json`);
* no key lost: every certsync-tagged secret under this rig's prefix carries a leaf whose serial is
  a version in the store (a secret whose certificate the store does not know holds a private key
  nobody can rotate or revoke);
* no orphan: every certsync-tagged secret under the prefix is a configured target;
* `PRAGMA integrity_check` is "ok".
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.e2e.clouds import Cloud

FORMATS = {"aws": "json", "gcp": "pem", "azure": "pkcs12"}
AWS_WRITES = {
    "CreateSecret",
    "PutSecretValue",
    "UpdateSecret",
    "TagResource",
    "UntagResource",
    "DeleteSecret",
    "RestoreSecret",
}
AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}

CA_AND_PROFILE = """
[store]
url = "sqlite:///certsync.db"

[ca.root]
subject = "CN=Crash Root CA,O=certsync tests"
key = "ec-p384"

[ca.issuing]
parent = "root"
subject = "CN=Crash Issuing CA,O=certsync tests"
key = "ec-p256"
crl_url = "http://pki.example.internal/crl/issuing.crl"

[profile.tls-server]
ca = "issuing"
key = "ec-p256"
validity = "90d"
renew_before = "30d"
allowed_domains = ["*.example.internal"]
usages = ["serverAuth"]
"""


def leaf_serial(payload: str, fmt: str) -> int:
    if fmt == "json":
        return x509.load_pem_x509_certificate(json.loads(payload)["certificate"].encode()).serial_number
    if fmt == "pem":
        return x509.load_pem_x509_certificates(payload.encode())[0].serial_number
    _key, leaf, _chain = pkcs12.load_key_and_certificates(base64.b64decode(payload), None)
    return leaf.serial_number


@dataclass
class Remote:
    """A certsync-tagged secret as an SDK lists it."""

    cloud: str
    name: str
    labels: dict
    serial: int | None = None  # leaf serial of the value read back; None if unreadable


@dataclass
class Trial:
    kind: str  # apply | renew | revoke
    kill: str  # how it was killed, e.g. "t=1.23s" or "aws write #5"
    exited_before_kill: bool = False
    violations: list[str] = field(default_factory=list)


class CrashRig:
    """One project folder, one name prefix, three destinations (AWS behind a counting proxy)."""

    def __init__(self, path: Path, emulators, prefix: str, aws_proxy) -> None:
        self.path, self.prefix, self.proxy = path, prefix, aws_proxy
        self.clouds = {kind: Cloud(kind, emulators.entry(kind), project=prefix) for kind in FORMATS}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CERTSYNC_")}
        self.env.update(AWS_ENV)
        self.env["PYTHONPATH"] = os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
        for cloud in self.clouds.values():
            self.env.update(cloud.env())
        self.certs: list[str] = []
        self._clients = {kind: getattr(cloud, f"_{kind}")() for kind, cloud in self.clouds.items()}

    # -- config --------------------------------------------------------------------------------------
    def add(self, n: int) -> list[str]:
        new = [f"{self.prefix}-c{len(self.certs) + i}" for i in range(n)]
        self.certs += new
        self.write()
        return new

    def write(self) -> None:
        body = textwrap.dedent(CA_AND_PROFILE)
        aws = self.clouds["aws"]
        body += aws.destination("aws", "json").replace(aws.entry["endpoint"], self.proxy.url)
        body += self.clouds["gcp"].destination("gcp", "pem")
        body += self.clouds["azure"].destination("azure", "pkcs12")
        for name in self.certs:
            short = name.rsplit("-", 1)[1]
            body += (
                f'\n[certificate.{name}]\nprofile = "tls-server"\ncommon_name = "{short}.example.internal"\n'
                'destinations = ["aws", "gcp", "azure"]\n'
            )
        (self.path / "sync.toml").write_text(body)

    # -- running the CLI -----------------------------------------------------------------------------
    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sync", *args],
            check=False,
            capture_output=True,
            text=True,
            cwd=self.path,
            env=self.env,
            timeout=timeout,
        )

    def timed(self, *args: str) -> float:
        """Run untouched; the duration (process start to exit). Fails loudly if it fails."""
        start = time.monotonic()
        result = self.run(*args)
        assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return time.monotonic() - start

    def aws_writes(self) -> int:
        return sum(n for call, n in self.proxy.calls.items() if call in AWS_WRITES)

    def run_killed(
        self, args: tuple[str, ...], *, delay: float | None = None, writes: int | None = None, limit: float = 120
    ) -> tuple[str, bool]:
        """Start the CLI, SIGKILL it after `delay` seconds or once the proxy has seen `writes` more
        AWS writes. Returns (description, exited_before_kill)."""
        base = self.aws_writes()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync", *args],
            cwd=self.path,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        start = time.monotonic()
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - start
                if (
                    (delay is not None and elapsed >= delay)
                    or (writes is not None and self.aws_writes() - base >= writes)
                    or elapsed > limit
                ):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    what = f"t={elapsed:.2f}s" if delay is not None else f"aws write #{writes} at t={elapsed:.2f}s"
                    return what, False
                time.sleep(0.002)
            return f"exited {proc.returncode} at t={time.monotonic() - start:.2f}s", True
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # -- reading the clouds with their SDKs ----------------------------------------------------------
    def listing(self) -> list[Remote]:
        """Every certsync-tagged secret under this prefix, in every cloud."""
        found: list[Remote] = []
        aws = self._clients["aws"]
        for page in aws.get_paginator("list_secrets").paginate():
            for s in page["SecretList"]:
                tags = {t["Key"]: t["Value"] for t in s.get("Tags", [])}
                if (
                    s["Name"].startswith(self.prefix)
                    and tags.get("managed-by") == "certsync"
                    and not s.get("DeletedDate")
                ):
                    found.append(Remote("aws", s["Name"], tags))
        for s in self._clients["gcp"].list_secrets(parent=f"projects/{self.prefix}"):
            labels = dict(s.labels)
            if labels.get("managed-by") == "certsync":
                found.append(Remote("gcp", s.name.rsplit("/", 1)[1], labels))
        for props in self._clients["azure"].list_properties_of_secrets():
            tags = dict(props.tags or {})
            if props.name.startswith(self.prefix) and tags.get("managed-by") == "certsync":
                found.append(Remote("azure", props.name, tags))
        return found

    def _read(self, remote: Remote) -> Remote:
        try:
            payload = self.clouds[remote.cloud].read(remote.name)
            remote.serial = leaf_serial(payload, FORMATS[remote.cloud]) if payload else None
        except Exception:  # an unreadable value is reported as such by the checks  # noqa: BLE001
            remote.serial = None
        return remote

    def read_all(self) -> list[Remote]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(self._read, self.listing()))

    # -- the store, read directly ------------------------------------------------------------------
    def store_serials(self) -> set[int]:
        with sqlite3.connect(f"file:{self.path / 'certsync.db'}?mode=ro", uri=True) as db:
            return {int(s, 16) for (s,) in db.execute("SELECT serial FROM certificates")}

    def integrity(self) -> str:
        with sqlite3.connect(f"file:{self.path / 'certsync.db'}?mode=ro", uri=True) as db:
            return ";".join(row[0] for row in db.execute("PRAGMA integrity_check"))

    # -- the invariants --------------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Rerun apply at once, then every invariant; the violations found (empty: all hold)."""
        bad: list[str] = []
        if os.environ.get("CERTSYNC_CRASH_BREAK_LOCK"):
            # Diagnosis only: drop the dead holder's lock row by hand, as a lock that dies with its
            # holder would, to see which invariants still fail behind the lock.
            with sqlite3.connect(self.path / "certsync.db") as db:
                db.execute("DELETE FROM locks")
        rerun = self.run("apply")
        if rerun.returncode != 0 or "Traceback" in rerun.stderr:
            bad.append(f"rerun apply exit {rerun.returncode}: {_last(rerun)}")
        plan = self.run("plan", "--detailed-exitcode")
        if plan.returncode != 0:
            bad.append(f"plan --detailed-exitcode exit {plan.returncode}: {_last(plan, stdout=True)}")
        integrity = self.integrity()
        if integrity != "ok":
            bad.append(f"PRAGMA integrity_check: {integrity}")
        listed = self.run("--output", "json", "list")
        latest: dict[str, int] = {}
        if listed.returncode == 0:
            for row in json.loads(listed.stdout)["certificates"]:
                if row["state"] == "active":
                    latest[row["name"]] = int(row["serial"], 16)
        else:
            bad.append(f"list exit {listed.returncode}: {_last(listed)}")
        remotes = self.read_all()
        by_target = {(r.cloud, r.name): r for r in remotes}
        known = self.store_serials()
        for name in self.certs:
            if name not in latest:
                bad.append(f"{name}: no active version in the store")
                continue
            for cloud in FORMATS:
                remote = by_target.get((cloud, name))
                if remote is None:
                    bad.append(f"{cloud}/{name}: missing")
                elif remote.serial != latest[name]:
                    bad.append(
                        f"{cloud}/{name}: holds serial {_hex(remote.serial)}, store's latest is {_hex(latest[name])}"
                    )
        configured = set(self.certs)
        for remote in remotes:
            if remote.serial is None or remote.serial not in known:
                bad.append(
                    f"LOST KEY {remote.cloud}/{remote.name}: serial {_hex(remote.serial)} is no version in the store"
                )
            if remote.name not in configured:
                bad.append(f"ORPHAN {remote.cloud}/{remote.name}")
        return bad

    def retire_all_and_count(self) -> tuple[list[Remote], list[str]]:
        """Remove every certificate from the config and apply; what is still tagged in the clouds."""
        self.certs = []
        self.write()
        result = self.run("apply")
        problems = [] if result.returncode == 0 else [f"final apply exit {result.returncode}: {_last(result)}"]
        left = self.listing()
        for remote in left:  # counted and reported by the caller; not left behind in shared emulators
            try:
                self.clouds[remote.cloud].delete_outside(remote.name)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"could not clean up {remote.cloud}/{remote.name}: {exc}")
        return left, problems


def _hex(serial: int | None) -> str:
    return "unreadable" if serial is None else format(serial, "x")


def _last(result: subprocess.CompletedProcess, stdout: bool = False) -> str:
    text = (result.stdout if stdout else "") + result.stderr
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("warning:")]
    return " | ".join(lines[-3:])[:400]
