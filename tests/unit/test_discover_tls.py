"""`certsync discover --tls/--cidr` against local endpoints on loopback: openssl s_server and Python
TLS servers with a certsync-issued certificate (with and without its intermediate), an expired
self-signed one, a wrong-host one and a weak (RSA-1024, SHA-1) one; then `list --discovered`,
metrics, the gone marking on a rescan, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.support.tls_endpoints import NOW, Servers, make, server_context, write_chain
from tests.unit.conftest import write_config


def cli(*args, cwd, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "sync", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s_server(cert, key, chain=None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    args = [
        "openssl",
        "s_server",
        "-accept",
        f"127.0.0.1:{port}",
        "-cert",
        str(cert),
        "-key",
        str(key),
        "-www",
        "-quiet",
    ] + (["-cert_chain", str(chain)] if chain else [])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("openssl s_server did not start")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The store (certsync's api certificate issued), the endpoints, their ports."""
    work = tmp_path_factory.mktemp("discover")
    write_config(work / "sync.toml")
    cli("init", "-q", cwd=work)
    cli("apply", "-q", cwd=work)
    pem = cli("export", "api", "--format", "pem", cwd=work).stdout
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n", pem, re.S)
    key = load_pem_private_key(
        re.search(r"-----BEGIN PRIVATE KEY-----.+?-----END PRIVATE KEY-----\n", pem, re.S).group(0).encode(), None
    )
    (work / "api.crt").write_text(blocks[0])
    (work / "inter.crt").write_text(blocks[1])
    from cryptography.hazmat.primitives import serialization

    (work / "api.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    managed, p_managed = s_server(work / "api.crt", work / "api.key", work / "inter.crt")
    missing, p_missing = s_server(work / "api.crt", work / "api.key")  # intermediate left out
    expired = make("old.test", not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=2))
    root = make("Foreign Root", ca=True)
    wrong = make("www.other.test", issuer=root, sans=["www.other.test"])
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-sha1",
            "-nodes",
            "-subj",
            "/CN=weak.test",
            "-days",
            "60",
            "-keyout",
            str(work / "weak.key"),
            "-out",
            str(work / "weak.crt"),
        ],
        check=True,
        capture_output=True,
    )  # cryptography no longer signs with SHA-1
    servers = Servers()
    ports = servers.start(
        [server_context(*write_chain(work, n, c)) for n, c in (("expired", [expired]), ("wrong", [wrong, root]))]
        + [server_context(work / "weak.crt", work / "weak.key")]
    )
    smtp = servers.start([server_context(work / "api.crt", work / "api.key")], smtp=True)[0]
    imap = servers.start([server_context(*write_chain(work, "imap", [wrong, root]))], imap=True)[0]
    yield {
        "work": work,
        "managed": p_managed,
        "missing": p_missing,
        "expired": ports[0],
        "wrong": ports[1],
        "weak": ports[2],
        "smtp": smtp,
        "imap": imap,
        "servers": servers,
        "expired_cert": expired,
        "ctx": server_context,
    }
    servers.close()
    for proc in (managed, missing):
        proc.terminate()
        proc.wait(5)


def by_subject(work, *args) -> dict:
    rows = json.loads(cli("list", "--discovered", "--output", "json", *args, cwd=work).stdout)["discovered"]
    return {r["subject"]: r for r in rows}


def leaf_details(row, location) -> dict:
    return next(loc["details"] for loc in row["locations"] if loc["location"] == location)


def test_discover_endpoints_facts_and_listing(lab):
    work, p = lab["work"], lab
    targets = [
        f"127.0.0.1:{p['managed']}/api.example.internal",
        f"127.0.0.1:{p['missing']}/api.example.internal",
        f"localhost:{p['expired']}",
        f"127.0.0.1:{p['wrong']}/www.wrong.test",
        f"127.0.0.1:{p['weak']}",
        f"smtp://127.0.0.1:{p['smtp']}/api.example.internal",
        f"imap://127.0.0.1:{p['imap']}/www.other.test",
        f"127.0.0.1:{free_port()}",
    ]
    args = [a for t in targets for a in ("--tls", t)]
    result = cli("discover", *args, "--output", "json", cwd=work)
    summary = json.loads(result.stdout)
    assert summary["sources"] == ["tls"]
    # api leaf + its intermediate, expired, wrong-host leaf + foreign root, weak
    assert (summary["found"], summary["managed"], summary["new"]) == (6, 2, 6), summary
    assert [e["location"] for e in summary["errors"]] == [f"tls://127.0.0.1:{targets[-1].split(':')[1]}"]
    assert summary["errors"][0]["error"] == "connection refused"
    assert "connection refused" in result.stderr  # reported, not fatal (exit 0)

    rows = by_subject(work)
    api = rows["CN=api.example.internal"]
    assert (
        api["managed"]
        and api["sans"] == ["DNS:api.example.internal", "DNS:www.example.internal"]
        and api["key"] == "ec-p256"
    )
    assert api["issuer"] == "CN=Test Issuing CA,O=certsync tests" and not api["self_signed"]
    managed = leaf_details(api, f"tls://127.0.0.1:{p['managed']}/api.example.internal")
    assert managed["verifies_certsync"] and not managed["verifies_system"] and managed["hostname_match"]
    assert managed["chain_complete"] and managed["protocol"] in ("TLSv1.3", "TLSv1.2") and managed["chain_length"] == 2
    missing = leaf_details(api, f"tls://127.0.0.1:{p['missing']}/api.example.internal")
    assert not missing["verifies_certsync"] and not missing["chain_complete"] and missing["chain_length"] == 1
    assert leaf_details(api, f"tls://127.0.0.1:{p['smtp']}/api.example.internal")["starttls"] == "smtp"
    assert set(api["problems"]) == {"incomplete-chain", "untrusted"}  # where served without its intermediate

    old = rows["CN=old.test"]
    assert old["self_signed"] and not old["managed"] and old["days_left"] < 0
    assert old["not_after"][:10] == (NOW - timedelta(days=2)).strftime("%Y-%m-%d")
    assert {"expired", "untrusted"} <= set(old["problems"])
    assert leaf_details(old, f"tls://localhost:{p['expired']}")["hostname_match"] is False

    wrong = rows["CN=www.other.test"]
    details = leaf_details(wrong, f"tls://127.0.0.1:{p['wrong']}/www.wrong.test")
    assert details["hostname_match"] is False and details["chain_complete"] and not details["verifies_system"]
    assert "hostname-mismatch" in wrong["problems"] and not wrong["self_signed"]
    imap = leaf_details(wrong, f"tls://127.0.0.1:{p['imap']}/www.other.test")
    assert imap["starttls"] == "imap" and imap["hostname_match"] and imap["chain_length"] == 2

    weak = rows["CN=weak.test"]
    assert weak["key"] == "rsa-1024" and {"weak-key", "weak-signature"} <= set(weak["problems"])
    assert weak["signature_algorithm"] == "sha1WithRSAEncryption"

    expiring = by_subject(work, "--expiring", "30d")
    assert list(expiring) == ["CN=old.test"]
    unmanaged = by_subject(work, "--unmanaged")
    assert "CN=api.example.internal" not in unmanaged and "CN=Test Issuing CA,O=certsync tests" not in unmanaged
    assert {"CN=old.test", "CN=www.other.test", "CN=weak.test", "CN=Foreign Root"} == set(unmanaged)
    text = cli("list", "--discovered", "--expiring", "30d", cwd=work).stdout
    assert "old.test" in text and "expired" in text and "api.example" not in text

    metrics = cli("metrics", cwd=work).stdout
    fp = old["fingerprint"][:16]
    assert f'certsync_discovered_problem{{fingerprint="{fp}",problem="expired"}} 1.0' in metrics
    assert re.search(
        rf'certsync_discovered_not_after_seconds{{fingerprint="{fp}",managed="false",'
        r'subject="CN=old.test"} [0-9.e+]+',
        metrics,
    )


def test_rescan_marks_gone_only_what_answered_differently(lab):
    work, p, servers = lab["work"], lab, lab["servers"]
    expired, weak = f"127.0.0.1:{p['expired']}", f"127.0.0.1:{p['weak']}"
    cli("discover", "--tls", expired, "--tls", weak, cwd=work)
    # the expired endpoint now serves a new certificate; the weak one is down
    servers.stop(p["expired"])
    fresh = make("fresh.test")
    servers.start([lab["ctx"](*write_chain(work, "fresh", [fresh]))], port=p["expired"])
    servers.stop(p["weak"])
    out = cli("discover", "--tls", expired, "--tls", weak, cwd=work).stdout
    assert "1 location(s) gone" in out and "1 error(s)" in out
    rows = by_subject(work)
    assert "CN=fresh.test" in rows
    assert all(loc["location"] != f"tls://{expired}" for loc in rows.get("CN=old.test", {"locations": []})["locations"])
    assert f"tls://{weak}" in [loc["location"] for loc in rows["CN=weak.test"]["locations"]]  # down is not gone


def test_cidr_on_loopback(lab):
    out = json.loads(
        cli(
            "discover", "--cidr", "127.0.0.1/32", "--ports", str(lab["managed"]), "--output", "json", cwd=lab["work"]
        ).stdout
    )
    assert (out["found"], out["managed"], out["errors"]) == (2, 2, [])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tls", "nonsense"], "'nonsense' is not a TLS target"),
        (["--tls", "host:99999"], "is not a TLS target"),
        (["--cidr", "10.0.0.0/8", "--ports", "443"], "10.0.0.0/8 has 16777216 addresses, more than max_hosts (65536)"),
        (["--cidr", "10.0.0.0/24", "--max-hosts", "16"], "more than max_hosts (16)"),
        (["--cidr", "not-a-network"], "is not an IP network"),
        (["--cidr", "127.0.0.1/32", "--ports", "443,http"], "is not a port"),
        ([], "nothing to scan"),
    ],
)
def test_bad_input_is_one_line_exit_2(lab, args, message):
    result = cli("discover", *args, cwd=lab["work"], check=False)
    assert result.returncode == 2, result.stderr
    assert (
        message in result.stderr and len(result.stderr.strip().splitlines()) <= 2 and "Traceback" not in result.stderr
    )


def test_unmanaged_needs_discovered(lab):
    result = cli("list", "--unmanaged", cwd=lab["work"], check=False)
    assert result.returncode == 2 and "--unmanaged goes with --discovered" in result.stderr


def test_silent_endpoint_times_out(lab):
    """A listener that never answers the ClientHello: one error after connect_timeout, not a hang."""
    write_config(lab["work"] / "sync.toml", '\n[discovery.tls]\nconnect_timeout = "1s"\n')
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        port = silent.getsockname()[1]
        start = time.monotonic()
        out = json.loads(cli("discover", "--tls", f"127.0.0.1:{port}", "--output", "json", cwd=lab["work"]).stdout)
    assert out["errors"] == [{"location": f"tls://127.0.0.1:{port}", "error": "no answer within 1s"}]
    assert time.monotonic() - start < 10
