"""The REST API fuzzed from its own OpenAPI document by schemathesis (its CLI, every check):
no 5xx, every response as documented (status, content type, headers, schema), schema-breaking
requests refused, bearer auth enforced. Once with a token holding every scope, once with a token
whose scope allows only reads (writes must all be refused, as documented)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import CertsyncServer, env

HERE = Path(__file__).parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXTRA = """
[certificate.held]
profile = "web"
dns_names = ["held.example.internal"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with CertsyncServer(
        tmp_path_factory.mktemp("fuzz"), server_toml="rate_limit = 0", extra_toml=EXTRA, apply=True
    ) as running:
        yield running


def schemathesis(server, secret: str, *, examples: int) -> subprocess.CompletedProcess:
    if not SCHEMATHESIS.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "-H",
            f"Authorization: Bearer {secret}",
            "--max-examples",
            str(examples),
            "--seed",
            "12",
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        env=env(),
        timeout=600,
        cwd=server.folder,
    )


def check(result: subprocess.CompletedProcess, server) -> str:
    out = result.stdout.decode(errors="replace")
    assert result.returncode == 0, out[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", out)
    assert counts and int(counts.group(1)) >= 200, out[-2000:]  # the coverage, fuzzing and stateful phases ran
    assert all(phase in out for phase in ("Coverage", "Fuzzing", "Stateful")), out[-2000:]
    assert '"status": 5' not in server.log() and "internal error" not in server.log()
    return out


def test_fuzz_with_every_scope(server):
    secret = server.token("fuzz-all", "read", "issue", "sign", "renew", "revoke")
    out = check(schemathesis(server, secret, examples=30), server)
    assert "8 selected / 8 total" in out
    assert secret not in server.log()


def test_fuzz_with_a_read_only_token(server):
    secret = server.token("fuzz-read", "read")
    check(schemathesis(server, secret, examples=15), server)
