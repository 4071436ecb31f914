"""Secrets the config names by environment variable never reach a deploy hook, and a webhook's
Authorization header never follows a redirect (security review)."""

import http.server
import threading

import pytest

from sync import config
from sync.reconcile import hooks
from sync.webhook import DeliveryError, send

from .conftest import write_config

AWS = '[destination.a]\nprovider = "aws"\nregion = "eu-west-1"\ndeploy_hook = ["/bin/true"]\n'


def test_discovery_pfx_password_is_not_in_the_hook_environment(tmp_path, monkeypatch):
    var = f"HOOKSEC_DISC_PFX_{tmp_path.name.upper().replace('-', '_')}"
    monkeypatch.setenv(var, "disc-pfx-password")
    path = write_config(tmp_path / "c.toml", AWS + f'[discovery.files]\npkcs12_password_env = "{var}"\n')
    env = hooks.environment(config.load(path), {}, 1)
    assert var not in env and "disc-pfx-password" not in env.values()


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []
    target = ""

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/hook":
            self.send_response(302)
            self.send_header("Location", type(self).target)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _any

    def log_message(self, *args):
        pass


@pytest.fixture
def redirecting_server():
    handler = type("H", (_Recorder,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # a redirect to another origin (localhost vs 127.0.0.1: another host to the client)
    handler.target = f"http://localhost:{server.server_address[1]}/elsewhere"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_webhook_authorization_does_not_follow_a_redirect(redirecting_server):
    server, handler = redirecting_server
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with pytest.raises(DeliveryError) as err:
        send(url, {"x": 1}, timeout=5, attempts=1, headers={"Authorization": "Bearer hooksec-secret"})
    assert "hooksec-secret" not in str(err.value) and "HTTP 302" in str(err.value)
    assert [p for p, _ in handler.seen] == ["/hook"]  # nothing sent to the redirect's target
