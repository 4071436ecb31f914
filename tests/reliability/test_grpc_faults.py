"""Google over gRPC (certsync's default transport) while our emulator answers 20 % of the calls
UNAVAILABLE or RESOURCE_EXHAUSTED (seeded, `--fault-rate`): `apply` converges in one run or fails
only the targets it could not write, one `error:` line each, and the next run converges; with the
faults then turned off (Admin/SetFaults) `plan --detailed-exitcode` finds nothing to do and every
secret is there. test_faults.py covers all three clouds through an HTTP fault proxy (Google via
drongo over REST); this is the gRPC path. Size: CERTSYNC_FAULT_CERTS (default 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import grpc
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import CA_AND_PROFILE
from tests.support.gcp_harness import make_gcp_provider, start_gcp_emulator, stop

N = int(os.environ.get("CERTSYNC_FAULT_CERTS", "20"))


def _run(folder, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTSYNC_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "sync", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )


def _set_faults(endpoint: str, rate: float) -> dict:
    with grpc.insecure_channel(endpoint) as channel:
        return json.loads(
            channel.unary_unary("/certsync.emulator.v1.Admin/SetFaults")(json.dumps({"rate": rate}).encode())
        )


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def faulty_gcp():
    proc, endpoint = start_gcp_emulator("--fault-rate", "0.2", "--fault-seed", "20261201")
    yield endpoint
    stop(proc)


def test_grpc_apply_under_faults_converges(faulty_gcp, name_prefix, tmp_path):
    (tmp_path / "sync.toml").write_text(
        textwrap.dedent(CA_AND_PROFILE).replace(
            "[ca.root]", '[store]\nurl = "sqlite:///certsync.db"\nkey_file = "certsync.key"\n\n[ca.root]', 1
        )
        + f"""
[destination.gcp]
provider = "gcp"
project = "{name_prefix}"
endpoint = "{faulty_gcp}"
insecure = true
format = "pem"
"""
        + "".join(
            f"""
[certificate.{name_prefix}-g{i:03d}]
profile = "tls-server"
common_name = "g{i}.example.internal"
destinations = ["gcp"]
"""
            for i in range(N)
        )
    )
    assert _run(tmp_path, "init").returncode == 0
    started = time.monotonic()
    runs = []
    for _ in range(2):  # the first run, and the one that must converge
        result = _run(tmp_path, "apply")
        runs.append(result.returncode)
        assert "Traceback" not in result.stderr, result.stderr
        for line in _errors(result.stderr):  # a failure names its certificate and target, on one line
            assert line.startswith(f"error: push {name_prefix}-g") and " -> gcp/" in line, line
        if result.returncode == 0:
            break
        assert result.returncode == 1, result.stderr
    assert runs[-1] == 0, runs
    injected = _set_faults(faulty_gcp, 0.0)["injected"]
    print(
        f"\ngRPC faults: {injected} injected over {len(runs)} run(s) of {N} certificates, "
        f"exit codes {runs}, {time.monotonic() - started:.1f}s"
    )
    assert injected > 0
    assert _run(tmp_path, "plan", "--detailed-exitcode").returncode == 0
    provider = make_gcp_provider(faulty_gcp, "grpc", name_prefix)
    assert len({s.name for s in provider.list_managed()}) == N
