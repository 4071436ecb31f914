"""The dashboard over TLS (no browser needed): the session cookie is Secure there, a client
certificate listed in `[server] dashboard_clients` reads the pages without a token, and one that
is not listed (though it chains to certsync's CA) is refused."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from tests.support.server import CertsyncServer

EXTRA = """
[certificate.ops-reader]
profile = "web"
common_name = "ops.example.internal"
dns_names = ["ops.example.internal"]

[certificate.other-client]
profile = "web"
common_name = "other.example.internal"
dns_names = ["other.example.internal"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with CertsyncServer(
        tmp_path_factory.mktemp("dashboard-tls"),
        tls=True,
        extra_toml=EXTRA,
        server_toml='rate_limit = 0\ndashboard_clients = ["CN=ops.example.internal"]',
    ) as running:
        yield running


def context(server, client: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(server.root_pem))
    if client:
        payload = json.loads(server.cli("export", client, "--format", "json").stdout)
        cert, key = server.folder / f"{client}.pem", server.folder / f"{client}.key"
        cert.write_text(payload["certificate"] + "".join(payload["certificate_chain"]))
        key.write_text(payload["private_key"])
        key.chmod(0o600)
        ctx.load_cert_chain(cert, key)
    return ctx


def fetch(server, path: str, ctx: ssl.SSLContext, *, data: bytes | None = None, headers: dict | None = None):
    url = server.url.replace("127.0.0.1", "localhost") + path
    request = urllib.request.Request(url, data=data, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect)
    try:
        with opener.open(request, timeout=60) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()


def test_the_session_cookie_is_secure_under_tls(server):
    reader = server.token("tls-viewer", "read")
    origin = server.url.replace("127.0.0.1", "localhost")
    status, headers, _ = fetch(
        server,
        "/dashboard/login",
        context(server),
        data=f"token={reader}".encode(),
        headers={"Origin": origin, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 303
    assert "Secure" in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"]
    status, _, body = fetch(
        server, "/dashboard/certificates", context(server), headers={"Cookie": f"certsync_dashboard={reader}"}
    )
    assert status == 200 and "ops-reader" in body


def test_a_listed_client_certificate_reads_without_a_token(server):
    status, _, body = fetch(server, "/dashboard/certificates/ops-reader", context(server, "ops-reader"))
    assert status == 200 and "certificate: CN=ops.example.internal" in body
    status, _, body = fetch(server, "/dashboard/", context(server, "other-client"))
    assert status == 401 and "ops-reader" not in body
    status, _, _ = fetch(server, "/dashboard/", context(server))
    assert status == 401
