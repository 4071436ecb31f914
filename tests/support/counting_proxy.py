"""A plain HTTP forwarding proxy that counts API calls on their way to an emulator.

It sits between certsync and the emulator, so the counts are independent of certsync's own
bookkeeping. AWS JSON calls are named by their X-Amz-Target header, anything else by method
and path. Subclasses may answer some calls themselves (`answer`), e.g. ThrottlingProxy.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def observe(self, name: str, body: bytes | None) -> None:
        """Hook for subclasses: sees each call and its body first (in the handler's thread)."""

    def settled(self, name: str, status: int) -> None:
        """Hook for subclasses: the upstream's status for a forwarded call (in the handler's thread)."""

    def answer(self, name: str) -> tuple[int, dict[str, str], bytes] | None:
        """Hook for subclasses: (status, headers, body) to answer the call `name` here instead
        of forwarding it; None forwards. The call is counted either way."""
        return None

    def lose_response(self, name: str) -> bool:
        """Hook: True forwards the call `name` upstream, then resets the connection instead of
        answering (a write that reached the cloud whose answer was lost)."""
        return False

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                target = self.headers.get("X-Amz-Target")
                name = target.split(".")[-1] if target else f"{self.command} {self.path.split('?')[0]}"
                proxy.count(name)
                proxy.observe(name, body)
                canned = proxy.answer(name)
                if canned is not None:
                    status, canned_headers, data = canned
                    self._reply(status, list(canned_headers.items()), data)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                proxy.settled(name, response.status)
                if proxy.lose_response(name):
                    self.close_connection = True  # RST: the client sees a reset, not an answer
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                self._reply(response.status, response.getheaders(), data, response.reason)

            def _reply(
                self, status: int, headers: list[tuple[str, str]], data: bytes, reason: str | None = None
            ) -> None:
                self.send_response(status, reason)
                for key, value in headers:
                    if key.lower() not in _HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

        return Handler


class LostResponseProxy(CountingProxy):
    """Forwards every call; the first `times` calls named `lost` reach the emulator, and then the
    connection is reset before the answer (the SDK sees a connection error and retries)."""

    def __init__(self, upstream: str, lost: str, times: int = 1) -> None:
        super().__init__(upstream)
        self.lost, self.left = lost, times

    def lose_response(self, name: str) -> bool:
        with self._lock:
            if name == self.lost and self.left > 0:
                self.left -= 1
                return True
        return False
