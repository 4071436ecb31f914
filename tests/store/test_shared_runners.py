"""Three `certsync apply --shared` started at once on one PostgreSQL store share the work.

Three quota domains (two Google projects on our emulator, one Azure vault on ours), each enforcing
a quota and adding a few ms per call; the writes are counted at the emulators, per secret and per
second: every secret is written by one push only (never twice), no quota is overrun (no throttling
answer), every certificate is issued once. No timing assertion: the emulators' quotas are the judge.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import grpc
import pytest

from tests.emulators.azure_harness import running_azure_emulator
from tests.support import gcp_harness

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
N = 24
# The quotas' windows are the real ones (Google: a minute, Azure: 10 s) shortened to 10 s, not less:
# pacing charges a push's calls when the push starts, so a stall of the machine (this one is shared)
# that bunches up calls must stay within the 5% of a window certsync leaves free (0.5 s here).
GCP_PER_WINDOW, GCP_WINDOW = 200, 10.0  # 20 writes/s per project
AZURE_PER_WINDOW, AZURE_WINDOW = 500, 10.0  # 50 transactions/s per vault


def _config(url: str, gcp: str, vault: str, ca: str) -> str:
    head = f"""
    [store]
    url = "{url}"
    key_file = "certsync.key"

    [ca.root]
    subject = "CN=Runners Root CA"
    key = "ec-p256"

    [ca.issuing]
    parent = "root"
    subject = "CN=Runners Issuing CA"
    key = "ec-p256"

    [profile.tls]
    ca = "issuing"
    key = "ec-p256"
    validity = "90d"
    allowed_domains = ["*.example.internal"]

    [destination.g1]
    provider = "gcp"
    project = "runners-one"
    endpoint = "{gcp}"
    insecure = true
    format = "pem"
    max_calls_per_second = 19

    [destination.g2]
    provider = "gcp"
    project = "runners-two"
    endpoint = "{gcp}"
    insecure = true
    format = "pem"
    max_calls_per_second = 19

    [destination.kv]
    provider = "azure"
    vault_url = "{vault}"
    ca_bundle = "{ca}"
    verify_challenge_resource = false
    format = "pem"
    max_calls_per_second = 47.5
    """
    certs = "".join(
        f'\n[certificate.c{i:02d}]\nprofile = "tls"\ndns_names = ["c{i:02d}.example.internal"]\n'
        f'destinations = ["g1", "g2", "kv"]\n'
        for i in range(N)
    )
    return textwrap.dedent(head) + certs


def _gcp_stats(endpoint: str) -> dict:
    with grpc.insecure_channel(endpoint) as channel:
        return json.loads(channel.unary_unary("/certsync.emulator.v1.Admin/GetStats")(b"", timeout=10))


def _azure_stats(url: str, ca: str) -> dict:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca))
    )
    with opener.open(url + "/_emulator/stats", timeout=10) as resp:
        return json.load(resp)


def _busiest(per_second: dict[str, int], window: float) -> int:
    """The most calls in any `window` whole seconds, from per-second counts."""
    counts = {int(k): v for k, v in per_second.items()}
    span = int(window)
    return max(sum(counts.get(t + i, 0) for i in range(span)) for t in counts)


@pytest.fixture
def gcp():
    proc, endpoint = gcp_harness.start_gcp_emulator(
        "--write-quota-per-minute",
        str(GCP_PER_WINDOW),
        "--read-quota-per-minute",
        str(GCP_PER_WINDOW),
        "--quota-window-seconds",
        str(GCP_WINDOW),
        "--latency-ms",
        "5",
    )
    yield endpoint
    gcp_harness.stop(proc)


def test_three_runners_share_the_work_without_writing_twice_or_overrunning_a_quota(
    postgres_url, gcp, tmp_path, monkeypatch
):
    monkeypatch.delenv("CERTSYNC_MASTER_KEY", raising=False)
    with running_azure_emulator(
        tmp_path / "azure",
        "--throttle-per-10s",
        str(AZURE_PER_WINDOW),
        "--throttle-window",
        str(AZURE_WINDOW),
        "--latency-ms",
        "5",
    ) as emu:
        (tmp_path / "sync.toml").write_text(_config(postgres_url, gcp, emu.url, str(emu.ca)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTSYNC_", "GOOGLE_", "IDENTITY_"))}
        env |= emu.env() | {
            "REQUESTS_CA_BUNDLE": str(emu.ca),
            "PYTHONPATH": str(REPO),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        cli = [sys.executable, "-m", "sync"]
        subprocess.run([*cli, "init"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
        procs = [
            subprocess.Popen(
                [*cli, "--output", "json", "apply", "--shared", "--runner", str(k)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(3)
        ]
        outputs = [p.communicate(timeout=240) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outputs]
        azure = _azure_stats(emu.url, str(emu.ca))
        again = subprocess.run(
            [*cli, "--output", "json", "apply", "--shared"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    google = _gcp_stats(gcp)

    # every certificate issued once, by one runner; every push done by one runner
    reports = [json.loads(out) for out, _ in outputs]
    issued = [
        r["certificate"] for rep in reports for r in rep["results"] if r["action"] == "issue" and r["status"] == "done"
    ]
    assert sorted(issued) == [f"c{i:02d}" for i in range(N)]
    pushed = [
        (r["destination"], r["certificate"])
        for rep in reports
        for r in rep["results"]
        if r["action"] == "push" and r["status"] == "done"
    ]
    assert len(pushed) == len(set(pushed)) == 3 * N
    for dest in ("g1", "g2", "kv"):  # one domain, one runner (its lock)
        assert (
            sum(
                any(
                    r["destination"] == dest and r["action"] == "push" and r["status"] == "done" for r in rep["results"]
                )
                for rep in reports
            )
            == 1
        )
    # at the clouds: each secret written by exactly one push (Google: 3 writes, Azure: 1 PUT) ...
    for project in ("runners-one", "runners-two"):
        assert google["writes_by_secret"][project] == {f"c{i:02d}": 3 for i in range(N)}
    assert azure["writes_by_secret"] == {f"c{i:02d}": 1 for i in range(N)}
    # ... and together under each domain's quota: no throttling answer, no second over its rate
    assert not any(c.get("RESOURCE_EXHAUSTED") for c in google["errors"].values()), google["errors"]
    assert not any(op["by_status"].get("429") for op in azure["operations"].values())
    for project in ("runners-one", "runners-two"):
        assert _busiest(google["writes_per_second"][project], GCP_WINDOW) <= GCP_PER_WINDOW
    assert _busiest(azure["per_second"], AZURE_WINDOW) <= AZURE_PER_WINDOW
    # a runner coming later finds everything in sync: nothing written
    assert again.returncode == 0, again.stderr
    assert all(r["status"] == "unchanged" for r in json.loads(again.stdout)["results"])
