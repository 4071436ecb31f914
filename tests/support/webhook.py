"""A local webhook receiver (http.server on 127.0.0.1, a free port, in a thread), for the alerting
tests. (The in-memory provider they use is in tests/support/memory.py.)"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "XXsecretTOKENdoNotLeakXX"


@dataclass
class Webhook:
    url: str
    received: list[dict] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200

    @property
    def bodies(self) -> list[dict]:
        return [r["body"] for r in self.received]


class _Server:
    def __init__(self) -> None:
        hook_ref: dict = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                hook: Webhook = hook_ref["hook"]
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "authorization": self.headers.get("Authorization"),
                        "body": json.loads(data),
                    }
                )
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.httpd.server_address[1]
        self.hook = hook_ref["hook"] = Webhook(f"http://127.0.0.1:{port}/services/T000/B000/{TOKEN}")
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self.hook

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def webhook_server() -> _Server:
    return _Server()
