"""`certsync serve` itself: health, metrics behind a token, rate limits, the access log (never a
secret), plain HTTP refused off loopback, the plain-HTTP revocation listener, the server's own
certificate renewed without a restart, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509

from tests.support.server import CertsyncServer, env


def get(url: str, *, token: str | None = None, context: ssl.SSLContext | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with CertsyncServer(tmp_path_factory.mktemp("core"), server_toml="rate_limit = 120") as s:
        yield s


def test_healthz_and_a_problem_for_an_unknown_path(server):
    status, _, body = get(server.url + "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = get(server.url + "/no/such/thing")
    assert status == 404 and headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 404


def test_metrics_need_a_read_token(server):
    status, headers, _ = get(server.url + "/metrics")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    token = server.token("scraper", "read")
    status, headers, body = get(server.url + "/metrics", token=token)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert "certsync_server_requests_total" in text and "certsync_ca_not_after_seconds" in text


def test_access_log_is_json_without_the_token(server):
    token = server.token("logcheck", "read")
    get(server.url + "/metrics?token=" + token, token=token)
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    entry = next(e for e in reversed(lines) if e["path"] == "/metrics")
    assert {"time", "client", "method", "path", "status", "ms", "bytes"} <= set(entry)
    assert token not in server.log() and token[8:30] not in server.log()


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    with CertsyncServer(tmp_path, server_toml="rate_limit = 12") as s:
        statuses = [get(s.url + "/crl/issuing.crl")[0] for _ in range(14)]
        assert statuses[:10] == [200] * 10 and statuses[-1] == 429
        status, headers, body = get(s.url + "/crl/issuing.crl")
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert json.loads(body)["status"] == 429
        assert get(s.url + "/healthz")[0] == 200  # probes are never limited


def run_cli(server: CertsyncServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sync", "--config", str(server.config), *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )


def test_plain_http_off_loopback_is_refused(tmp_path):
    s = CertsyncServer(tmp_path)
    result = run_cli(s, "serve", "--listen", "0.0.0.0:0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: server.listen: 0.0.0.0:0 is not a loopback address and no TLS is configured: set tls_certificate "
        "(or tls_cert_file + tls_key_file), or plain_http = true behind a TLS-terminating proxy"
    ]
    bad = run_cli(s, "serve", "--listen", "nonsense")
    assert bad.returncode == 2 and "--listen" in bad.stderr and "Traceback" not in bad.stderr


def test_server_config_errors_are_one_line(tmp_path):
    s = CertsyncServer(tmp_path)
    s.config.write_text(s.config.read_text().replace("[server]\n", '[server]\nclient_cert_header = "X-Cert"\n'))
    result = run_cli(s, "serve")
    assert result.returncode == 2
    assert "server: client_cert_header needs trusted_proxies" in result.stderr.replace("Value error, ", "")
    assert len(result.stderr.strip().splitlines()) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_plain_http_listener_serves_only_revocation(tmp_path):
    port = free_port()
    with CertsyncServer(tmp_path, tls=True, server_toml=f'http_listen = "127.0.0.1:{port}"') as s:
        plain = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while f"listening on {plain}" not in s.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get(plain + "/crl/issuing.crl")[0] == 200
        assert get(plain + "/healthz")[0] == 200
        assert get(plain + "/metrics")[0] == 404  # the rest only over TLS
        assert s.url.startswith("https://")


def presented_serial(server: CertsyncServer) -> int:
    context = ssl.create_default_context(cafile=str(server.root_pem))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_renewed_server_certificate_is_presented_without_a_restart(tmp_path):
    with CertsyncServer(tmp_path, tls=True, server_toml='tls_check_every = "1s"') as s:
        before = presented_serial(s)
        s.cli("renew", "certsync-server")
        deadline = time.monotonic() + 15
        while presented_serial(s) == before and time.monotonic() < deadline:
            time.sleep(0.3)
        after = presented_serial(s)
        current = json.loads(s.cli("--output", "json", "list").stdout)
        serial = next(c["serial"] for c in current["certificates"] if c["name"] == "certsync-server")
        assert after != before and after == int(serial, 16)
        assert "now presenting certificate 'certsync-server'" in s.log()


def test_sigterm_stops_cleanly(tmp_path):
    s = CertsyncServer(tmp_path).start()
    assert get(s.url + "/healthz")[0] == 200
    started = time.monotonic()
    s.process.send_signal(signal.SIGTERM)
    assert s.process.wait(20) == 0
    assert time.monotonic() - started < 10
    assert "Traceback" not in s.log()
