"""An HTTP(S) forwarding proxy that injects faults, at a rate and with a seeded RNG, in front of an
emulator: the cloud misbehaving the ways the real ones do.

Faults (one drawn per faulted request, uniformly from `faults`):

  429       "too many requests" with Retry-After, in the cloud's own error shape (`flavor`)
  500, 503  server errors, likewise
  reset     the connection is reset before the request reaches the emulator (no write happened)
  truncate  the request IS forwarded (the write happened), then the response body is cut short and
            the connection reset: the client cannot tell whether its write landed
  slow      the response is delayed by `slow_seconds` (not an error)

`deny(substring, status)` answers every request whose path or body contains `substring` with a
non-retryable error (403, 400...) instead: a destination whose credentials or input are wrong.

Counts (for the test's figures, independent of certsync's own bookkeeping): `requests` (every
request seen), `forwarded`, `faults` (Counter by kind), `denied`, and `calls` by call name (AWS by
its X-Amz-Target, others by method and path).

    with FaultProxy(upstream, rate=0.2, seed=7, flavor="aws") as proxy:
        ... point the client at proxy.url ...
    proxy.faults, proxy.requests

For an HTTPS upstream (the Azure emulator) pass `tls=(cert_pem, key_pem)` (the proxy serves those)
and `upstream_ca` (a CA file the proxy trusts for its own connection to the upstream).
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}
ALL_FAULTS = ("429", "500", "503", "reset", "truncate", "slow")
# What every cloud's SDK retries by itself (Google's REST transport does not retry a 500 or a
# dropped connection: a write may have landed, and Secret Manager's own retry settings agree).
RETRIED_FAULTS = ("429", "503", "slow")

# Error bodies each cloud's SDK parses (and, for 429/5xx, retries).
_AWS_CODES = {
    429: "ThrottlingException",
    500: "InternalServiceError",
    503: "ServiceUnavailable",
    403: "AccessDeniedException",
    400: "InvalidRequestException",
}
_GOOGLE_STATUS = {
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    403: "PERMISSION_DENIED",
    400: "INVALID_ARGUMENT",
}
_AZURE_CODES = {
    429: "Throttled",
    500: "InternalServerError",
    503: "ServiceUnavailable",
    403: "Forbidden",
    400: "BadParameter",
}


def error_response(flavor: str, status: int, message: str) -> tuple[dict[str, str], bytes]:
    """(headers, body) of an error as the cloud of `flavor` (aws | google | azure) spells it."""
    if flavor == "aws":
        return (
            {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "fault-proxy"},
            json.dumps({"__type": _AWS_CODES.get(status, "InternalFailure"), "message": message}).encode(),
        )
    if flavor == "google":
        return (
            {"Content-Type": "application/json"},
            json.dumps(
                {"error": {"code": status, "message": message, "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}}
            ).encode(),
        )
    return (
        {"Content-Type": "application/json"},
        json.dumps({"error": {"code": _AZURE_CODES.get(status, "Unknown"), "message": message}}).encode(),
    )


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        seed: int = 0,
        flavor: str = "aws",
        faults: tuple[str, ...] = ALL_FAULTS,
        slow_seconds: float = 0.3,
        retry_after: int = 1,
        tls: tuple[str, str] | None = None,
        upstream_ca: str | None = None,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within 0..1, not {rate}")
        unknown = set(faults) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {ALL_FAULTS}")
        parts = urlsplit(upstream)
        self.upstream_https = parts.scheme == "https"
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or (443 if self.upstream_https else 80)
        self.upstream_context = ssl.create_default_context(cafile=upstream_ca) if self.upstream_https else None
        self.rate, self.flavor, self.fault_kinds = rate, flavor, tuple(faults)
        self.slow_seconds, self.retry_after = slow_seconds, retry_after
        self.rng = random.Random(seed)
        self.denials: list[tuple[str, int]] = []
        self.requests = 0
        self.forwarded = 0
        self.denied = 0
        self.faults: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._tls = None
        if tls:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(*tls)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- configuration and figures -------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def deny(self, substring: str, status: int) -> None:
        """Answer `status` (not retryable: 400, 403...) to every request mentioning `substring`."""
        with self._lock:
            self.denials.append((substring, status))

    def set_rate(self, rate: float, faults: tuple[str, ...] | None = None) -> None:
        """Change the rate (and the kinds drawn) from the next request on."""
        with self._lock:
            self.rate = rate
            if faults is not None:
                self.fault_kinds = tuple(faults)

    @property
    def injected(self) -> int:
        """Faults that failed a request (slow responses succeed, so they are not counted here)."""
        return sum(n for kind, n in self.faults.items() if kind != "slow")

    def figures(self) -> dict:
        return {
            "requests": self.requests,
            "forwarded": self.forwarded,
            "faults": dict(self.faults),
            "failed_by_fault": self.injected,
            "denied": self.denied,
        }

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- decisions -----------------------------------------------------------------------------------
    def _decide(self, name: str, path: str, body: bytes | None) -> tuple[str, int | None]:
        """('deny', status) | ('fault', kind) | ('forward', None); counts the request."""
        text = path + (body or b"").decode("utf-8", "replace")
        with self._lock:
            self.requests += 1
            self.calls[name] += 1
            for substring, status in self.denials:
                if substring in text:
                    self.denied += 1
                    return "deny", status
            if self.rate and self.rng.random() < self.rate:
                kind = self.rng.choice(self.fault_kinds)
                self.faults[kind] += 1
                return "fault", kind
            return "forward", None

    # -- the server ----------------------------------------------------------------------------------
    def _upstream(self) -> http.client.HTTPConnection:
        if self.upstream_https:
            return http.client.HTTPSConnection(
                self.upstream_host, self.upstream_port, timeout=60, context=self.upstream_context
            )
        return http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                if proxy._tls is not None:
                    self.request = proxy._tls.wrap_socket(self.request, server_side=True)
                super().setup()

            def handle(self) -> None:
                try:
                    super().handle()
                except (ssl.SSLError, ConnectionError, OSError):
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

            def _reset(self) -> None:
                """Close with RST: the client sees 'connection reset', not a clean close."""
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.wfile.flush()
                    self.connection.close()
                except OSError:
                    pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                target = self.headers.get("X-Amz-Target")
                path = self.path.split("?")[0]
                name = target.split(".")[-1] if target else f"{self.command} {path}"
                action, detail = proxy._decide(name, self.path, body)
                if action == "deny":
                    headers, data = error_response(proxy.flavor, detail, f"denied by the fault proxy ({detail})")
                    self._reply(detail, list(headers.items()), data)
                    return
                if action == "fault" and detail == "reset":
                    self._reset()
                    return
                if action == "fault" and detail in ("429", "500", "503"):
                    status = int(detail)
                    headers, data = error_response(proxy.flavor, status, f"injected fault {status}")
                    if status == 429:
                        headers["Retry-After"] = str(proxy.retry_after)
                    self._reply(status, list(headers.items()), data)
                    return
                if action == "fault" and detail == "slow":
                    time.sleep(proxy.slow_seconds)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = proxy._upstream()
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                with proxy._lock:
                    proxy.forwarded += 1
                if action == "fault" and detail == "truncate":
                    self._reply(
                        response.status,
                        response.getheaders(),
                        data,
                        response.reason,
                        cut=max(1, len(data) // 2) if data else 0,
                    )
                    self._reset()
                    return
                self._reply(response.status, response.getheaders(), data, response.reason)

            def _reply(
                self,
                status: int,
                headers: list[tuple[str, str]],
                data: bytes,
                reason: str | None = None,
                cut: int | None = None,
            ) -> None:
                self.send_response(status, reason)
                for key, value in headers:
                    if key.lower() not in _HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                # a truncated body still announces its full length (at least one byte more than sent)
                self.send_header("Content-Length", str(max(len(data), 1) if cut is not None else len(data)))
                self.end_headers()
                self.wfile.write(data if cut is None else data[:cut] if len(data) > 1 else b"")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

        return Handler
