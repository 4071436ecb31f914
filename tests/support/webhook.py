"""A local webhook receiver (http.server on 127.0.0.1, a free port, in a thread) and an in-memory
provider, for the alerting and metrics tests."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from providers.base import RemoteSecret
from sync.errors import ProviderError

TOKEN = "XXsecretTOKENdoNotLeakXX"


@dataclass
class Webhook:
    url: str
    received: list[dict] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)    # answers to give, in order; then 200

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
                hook.received.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                      "body": json.loads(data)})
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


class MemoryProvider:
    """The Provider protocol over a dict; `fail = True` makes every put fail."""
    kind = "aws"

    def __init__(self) -> None:
        self.secrets: dict[str, RemoteSecret] = {}
        self.fail = False
        self._version = 0

    def list_managed(self):
        return iter([RemoteSecret(s.name, s.labels, s.version) for s in self.secrets.values() if s.managed])

    def get(self, name):
        return self.secrets.get(name)

    def put(self, name, payload, *, content_type, labels):
        if self.fail:
            raise ProviderError("simulated outage")
        self._version += 1
        secret = RemoteSecret(name, dict(labels), str(self._version), value=payload, content_type=content_type)
        self.secrets[name] = secret
        return secret

    def delete(self, name, *, purge=False):
        self.secrets.pop(name, None)
