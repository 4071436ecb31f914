"""`certsync apply` of N certificates to all three clouds while a fault proxy in front of each
emulator fails 20 % of the calls (429 with Retry-After, 500/503, connection resets, truncated
bodies, slow answers; seeded).

Property: a run either converges, or fails only the targets that were hit (one `error:` line each)
and the next run converges, with faults still injected at the same rate but only of the kinds that
every SDK retries by itself (429 with Retry-After, 503, slow: RETRIED_FAULTS; Google's REST client
rightly does not retry a 500 or a dropped connection, whose write may have landed); at the end `plan --detailed-exitcode` exits 0 and every
target holds the current version, read back from the emulator behind the proxy. Non-retryable
errors (403, 400) fail their destination only, within bounded time and bounded calls.

Size: CERTSYNC_FAULT_CERTS (default 30; the full run is 100), rate CERTSYNC_FAULT_RATE (0.2), seed
CERTSYNC_FAULT_SEED (20240601). Figures (faults injected, requests, time) are printed: run with -s.

    CERTSYNC_FAULT_CERTS=100 python -m pytest tests/reliability/test_faults.py -s -p no:cacheprovider

Google: drongo (REST) behind the proxy with `transport = "rest"`; the gRPC transport is faulted by our
emulator itself (`--fault-rate`), in test_grpc_faults.py.
"""

from __future__ import annotations

import base64
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.e2e.clouds import Cloud
from tests.e2e.conftest import AWS_ENV, Project
from tests.support.fault_proxy import RETRIED_FAULTS, FaultProxy

N_CERTS = int(os.environ.get("CERTSYNC_FAULT_CERTS", "30"))
RATE = float(os.environ.get("CERTSYNC_FAULT_RATE", "0.2"))
SEED = int(os.environ.get("CERTSYNC_FAULT_SEED", "20240601"))
MAX_RUNS = 2  # the first run, and the run that must converge


@pytest.fixture
def project(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTSYNC_") or k == "CERTSYNC_EMULATORS_STATE"}
    env.update(AWS_ENV)
    return Project(tmp_path, env)


class Clouds:
    """The three emulators, each behind its own FaultProxy; config blocks point at the proxies."""

    def __init__(self, emulators, stack: ExitStack, prefix: str, rate: float, seed: int):
        self.prefix = prefix
        self.aws = Cloud("aws", emulators.entry("aws"))
        self.azure = Cloud("azure", emulators.entry("azure"))
        self.drongo = emulators.entry("drongo")["endpoint"]
        azure_dir = Path(self.azure.entry["ca_bundle"]).parent
        self.proxies = {
            "aws": stack.enter_context(FaultProxy(self.aws.entry["endpoint"], rate=rate, seed=seed, flavor="aws")),
            "gcp": stack.enter_context(FaultProxy(self.drongo, rate=rate, seed=seed + 1, flavor="google")),
            "azure": stack.enter_context(
                FaultProxy(
                    self.azure.entry["endpoint"],
                    rate=rate,
                    seed=seed + 2,
                    flavor="azure",
                    tls=(str(azure_dir / "server.pem"), str(azure_dir / "server-key.pem")),
                    upstream_ca=self.azure.entry["ca_bundle"],
                )
            ),
        }

    def destinations(self, only: tuple[str, ...] = ("aws", "gcp", "azure")) -> str:
        p = self.proxies
        blocks = {
            "aws": f'provider = "aws"\nregion = "us-east-1"\nendpoint_url = "{p["aws"].url}"\nformat = "json"',
            "gcp": (
                f'provider = "gcp"\nproject = "{self.prefix}"\nendpoint = "{p["gcp"].hostport}"\n'
                'transport = "rest"\ninsecure = true\nformat = "pem"'
            ),
            "azure": (
                f'provider = "azure"\nvault_url = "{p["azure"].url}"\n'
                f'ca_bundle = "{self.azure.entry["ca_bundle"]}"\nverify_challenge_resource = false\n'
                'format = "pkcs12"'
            ),
        }
        return "".join(f"\n[destination.{kind}]\n{blocks[kind]}\n" for kind in only)

    def env(self) -> dict[str, str]:
        return self.azure.env()  # managed-identity tokens straight from the emulator

    def read_serial(self, kind: str, name: str) -> str | None:
        """The leaf serial (hex) of what the emulator behind the proxy holds, or None."""
        if kind == "gcp":
            from google.api_core import exceptions
            from providers import gcp

            client = gcp.build_client(self.drongo.removeprefix("http://"), "rest", insecure=True)
            try:
                payload = client.access_secret_version(
                    name=f"projects/{self.prefix}/secrets/{name}/versions/latest"
                ).payload.data.decode()
            except exceptions.NotFound:
                return None
            leaf = x509.load_pem_x509_certificates(payload.encode())[0]
        else:
            payload = (self.aws if kind == "aws" else self.azure).read(name)
            if payload is None:
                return None
            if kind == "aws":
                leaf = x509.load_pem_x509_certificate(json.loads(payload)["certificate"].encode())
            else:
                leaf = pkcs12.load_key_and_certificates(base64.b64decode(payload), None)[1]
        return format(leaf.serial_number, "x")

    def figures(self) -> dict:
        return {kind: proxy.figures() for kind, proxy in self.proxies.items()}


def _certificates(prefix: str, n: int) -> str:
    return "".join(
        f"""
[certificate.{prefix}-c{i:03d}]
profile = "tls-server"
common_name = "c{i}.example.internal"
dns_names = ["c{i}.example.internal"]
destinations = ["aws", "gcp", "azure"]
"""
        for i in range(n)
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_apply_under_faults_converges(emulators, name_prefix, project):
    with ExitStack() as stack:
        clouds = Clouds(emulators, stack, name_prefix, RATE, SEED)
        project.env.update(clouds.env())
        project.write(clouds.destinations() + _certificates(name_prefix, N_CERTS))
        project.run("init")

        started, runs, failed_lines = time.monotonic(), [], []
        for attempt in range(MAX_RUNS):
            t0 = time.monotonic()
            result = _apply(project)
            runs.append((result.returncode, round(time.monotonic() - t0, 1)))
            lines = _error_lines(result.stderr)
            if result.returncode == 0:
                assert not lines, result.stderr
                break
            # only the targets hit: one line each, naming the certificate and the destination
            assert result.returncode == 1, result.stderr
            assert lines, f"exit 1 without an error line:\n{result.stderr}"
            for line in lines:
                assert (
                    f" {name_prefix}-c" in line
                    and any(f"-> {d}/" in line for d in ("aws", "gcp", "azure"))
                    or line.startswith("error: run ")
                ), line
            assert len(lines) < 3 * N_CERTS, "a fault failed more than its own targets"
            failed_lines.append(len(lines))
            for proxy in clouds.proxies.values():
                proxy.set_rate(RATE, RETRIED_FAULTS)
        else:
            pytest.fail(f"no convergence in {MAX_RUNS} runs under {RATE:.0%} faults: {runs}\n{result.stderr}")
        elapsed = time.monotonic() - started
        figures = clouds.figures()

        for proxy in clouds.proxies.values():  # read back and plan without faults
            proxy.set_rate(0.0)
        project.run("plan", "--detailed-exitcode")
        listing = project.json("list")
        rows = listing["certificates"] if isinstance(listing, dict) else listing
        serials = {row["name"]: row["serial"].lower().lstrip("0") for row in rows}
        assert len(serials) == N_CERTS
        for name, serial in serials.items():
            for kind in ("aws", "gcp", "azure"):
                assert clouds.read_serial(kind, name) == serial, f"{kind}/{name} does not hold the current version"

    injected = sum(f["failed_by_fault"] for f in figures.values())
    requests = sum(f["requests"] for f in figures.values())
    print(
        f"\nfaults: {N_CERTS} certificates x 3 clouds at {RATE:.0%}, seed {SEED}: runs {runs}, "
        f"error lines per failed run {failed_lines}, {elapsed:.1f}s in all"
    )
    for kind, f in figures.items():
        print(f"  {kind}: {f['requests']} requests, {f['forwarded']} forwarded, faults {f['faults']}")
    print(
        f"  total: {injected} failing faults injected in {requests} requests "
        f"({injected / max(requests, 1):.0%}); {sum(failed_lines)} target failures left after the SDKs' "
        f"retries, all repaired by the next run"
    )
    assert injected > 0


def _apply(project):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "sync", "apply"],
        capture_output=True,
        text=True,
        cwd=project.path,
        env=project.env,
        timeout=600,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.parametrize("kind,status", [("aws", 403), ("gcp", 400), ("azure", 403)])
def test_non_retryable_errors_fail_their_destination_only(emulators, name_prefix, project, kind, status):
    """Every call to one destination is refused with a non-retryable status: that destination's
    targets fail (one line each), the others succeed, and the refused calls are few and quick."""
    n = 5
    with ExitStack() as stack:
        clouds = Clouds(emulators, stack, name_prefix, 0.0, SEED)
        other = "gcp" if kind != "gcp" else "aws"
        project.env.update(clouds.env())
        clouds.proxies[kind].deny("", status)
        body = clouds.destinations((kind, other)) + "".join(
            f"""
[certificate.{name_prefix}-d{i}]
profile = "tls-server"
common_name = "d{i}.example.internal"
dns_names = ["d{i}.example.internal"]
destinations = ["{kind}", "{other}"]
"""
            for i in range(n)
        )
        project.write(body)
        project.run("init")
        t0 = time.monotonic()
        result = _apply(project)
        elapsed = time.monotonic() - t0
        assert result.returncode == 1, result.stderr
        lines = _error_lines(result.stderr)
        assert lines and all(f"-> {kind}/" in line or line.startswith("error: run ") for line in lines), result.stderr
        assert not any(f"-> {other}/" in line for line in lines)
        refused = clouds.proxies[kind].denied
        for i in range(n):
            assert clouds.read_serial(other, f"{name_prefix}-d{i}") is not None
    print(
        f"\n{kind} refusing with {status}: {refused} calls refused for {n} certificates, "
        f"{len(lines)} error lines, {elapsed:.1f}s"
    )
    assert refused <= 4 * n + 4, f"{refused} calls to a destination that refuses with {status}: retried"
    assert elapsed < 60
