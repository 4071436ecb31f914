"""Run Google Secret Manager emulators for tests, and build the adapter against them.

Two independent emulators: ours (localstack/gcp_emulator.py, gRPC) and drongo (PyPI, REST).
Shared by tests/emulators and tests/contract, so that test modules never import each other.

    proc, endpoint = start_gcp_emulator("--default-page-size", "2")    # "127.0.0.1:PORT"
    provider = make_gcp_provider(endpoint, "grpc", "my-project")
    emulator_stats(endpoint)["by_project"]["my-project"]["ListSecrets"]
    stop(proc)
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc

from providers.gcp import GcpProvider, build_client

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "localstack" / "gcp_emulator.py"

# drongo 0.8's standalone server, with Nagle's algorithm off on its handler (otherwise each
# call waits ~44 ms for delayed ACKs). Its CLI cannot set that, so start it like this:
DRONGO_CODE = (
    "import sys, drongo.server as s; "
    "s.DrongoHTTPRequestHandler.disable_nagle_algorithm = True; "
    "s.run(host='127.0.0.1', port=int(sys.argv[1]))"
)


def _wait_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return line.strip()
    proc.kill()
    raise RuntimeError(f"{proc.args!r} did not print {prefix!r} within {timeout}s")


def start_gcp_emulator(*args: str, timeout: float = 20.0) -> tuple[subprocess.Popen, str]:
    """Our emulator on a free port: (process, "127.0.0.1:port"), ready to serve."""
    proc = subprocess.Popen(
        [sys.executable, str(EMULATOR), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=tempfile.TemporaryFile(),
        text=True,
    )
    line = _wait_line(proc, "READY port=", timeout)
    return proc, f"127.0.0.1:{int(line.split('=')[1])}"


def start_drongo(timeout: float = 20.0) -> tuple[subprocess.Popen, str]:
    """drongo on a free port; ready once GET /drongo/health answers 200."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", DRONGO_CODE, "0"],
        stdout=subprocess.PIPE,
        stderr=tempfile.TemporaryFile(),
        text=True,
    )
    line = _wait_line(proc, "drongo server listening on http://", timeout)
    endpoint = line.rsplit("http://", 1)[1]
    with urllib.request.urlopen(f"http://{endpoint}/drongo/health", timeout=5) as resp:
        assert resp.status == 200 and "secretmanager" in json.load(resp)["services"]
    return proc, endpoint


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


def make_gcp_provider(endpoint: str, transport: str, project: str, **kw) -> GcpProvider:
    """The adapter on a plaintext emulator endpoint; kw: adopt, keep_versions, retry, ..."""
    return GcpProvider(build_client(endpoint, transport, insecure=True), project, **kw)


def emulator_stats(endpoint: str) -> dict:
    """Call counts kept by our emulator (Admin/GetStats; not counted itself)."""
    with grpc.insecure_channel(endpoint) as channel:
        return json.loads(channel.unary_unary("/certsync.emulator.v1.Admin/GetStats")(b""))
