"""The fault proxy itself (tests/support/fault_proxy.py) against a tiny local HTTP server: every fault
kind arrives as a client sees it, the RNG is seeded, and the counts add up."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.fault_proxy import FaultProxy


class _Upstream:
    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(body)
                data = b'{"ok": true, "padding": "' + b"x" * 64 + b'"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    server = _Upstream()
    yield server
    server.close()


def _post(proxy, body=b"{}"):
    conn = http.client.HTTPConnection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), timeout=10)
    try:
        conn.request("POST", "/call", body=body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("flavor", ["aws", "google", "azure"])
def test_429_carries_retry_after_in_the_clouds_shape(upstream, flavor):
    with FaultProxy(upstream.url, rate=1.0, faults=("429",), flavor=flavor, retry_after=3) as proxy:
        status, headers, body = _post(proxy)
    assert status == 429 and headers["Retry-After"] == "3"
    doc = json.loads(body)
    assert {
        "aws": doc.get("__type") == "ThrottlingException",
        "google": doc.get("error", {}).get("status") == "RESOURCE_EXHAUSTED",
        "azure": doc.get("error", {}).get("code") == "Throttled",
    }[flavor]
    assert upstream.seen == [] and proxy.faults == {"429": 1} and proxy.requests == 1


def test_reset_never_reaches_the_upstream(upstream):
    with FaultProxy(upstream.url, rate=1.0, faults=("reset",)) as proxy:
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            _post(proxy)
    assert upstream.seen == [] and proxy.faults["reset"] == 1


def test_truncate_forwards_then_cuts_the_body(upstream):
    with FaultProxy(upstream.url, rate=1.0, faults=("truncate",)) as proxy:
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            _post(proxy, b'{"write": 1}')
    assert upstream.seen == [b'{"write": 1}']  # the write happened; the answer was lost
    assert proxy.forwarded == 1


def test_slow_and_5xx(upstream):
    with FaultProxy(upstream.url, rate=1.0, faults=("slow",), slow_seconds=0.05) as proxy:
        assert _post(proxy)[0] == 200
    with FaultProxy(upstream.url, rate=1.0, faults=("500", "503")) as proxy:
        assert {_post(proxy)[0] for _ in range(20)} == {500, 503}


def test_deny_matches_path_or_body_and_is_counted(upstream):
    with FaultProxy(upstream.url) as proxy:
        proxy.deny("forbidden-one", 403)
        assert _post(proxy, b'{"SecretId": "forbidden-one"}')[0] == 403
        assert _post(proxy, b'{"SecretId": "fine"}')[0] == 200
    assert proxy.denied == 1 and proxy.requests == 2 and len(upstream.seen) == 1


def test_rate_is_seeded_and_roughly_kept(upstream):
    def run(seed):
        with FaultProxy(upstream.url, rate=0.2, seed=seed, faults=("500",)) as proxy:
            return [_post(proxy)[0] for _ in range(200)]

    first, again = run(11), run(11)
    assert first == again
    assert 20 <= first.count(500) <= 60
