"""Helpers for tests/server/test_acme.py: the real clients (certbot in a cached venv, npm
acme-client in a cached folder, both installed once under a file lock so xdist workers share
them), a tiny http-01 token server, a tiny DNS server answering TXT, and a bare-bones JWS client
for the requests real clients never send (wrong url, reused nonce, someone else's order)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import josepy
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
CERTBOT_VENV = REPO / ".venv-certbot"
NODE_DIR = REPO / ".cache" / "acme-client"
ACME_CLIENT_VERSION = "5.4.0"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- installing the real clients ---------------------------------------------------------------------------
def _installer_env() -> dict[str, str]:
    """The environment for pip and npm: without a CA bundle a test put in this process's environment
    (an emulator's self-signed root there would make the package index untrusted); pip and npm keep
    their own configuration (PIP_CERT, pip.conf, npm's cafile)."""
    return {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}


def certbot() -> Path:
    """certbot from PyPI in <repo>/.venv-certbot (made once)."""
    binary = CERTBOT_VENV / "bin" / "certbot"
    with FileLock(str(REPO / ".venv-certbot.lock")):
        if not binary.exists():
            subprocess.run([sys.executable, "-m", "venv", str(CERTBOT_VENV)], check=True, timeout=300)
            subprocess.run(
                [str(CERTBOT_VENV / "bin" / "pip"), "install", "-q", "certbot"],
                check=True,
                timeout=900,
                env=_installer_env(),
            )
    return binary


def acme_client() -> Path:
    """node_modules holding npm's acme-client (installed once)."""
    modules = NODE_DIR / "node_modules"
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    with FileLock(str(NODE_DIR.parent / "acme-client.lock")):
        if not (modules / "acme-client" / "package.json").exists():
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(NODE_DIR),
                    f"acme-client@{ACME_CLIENT_VERSION}",
                ],
                check=True,
                timeout=600,
                capture_output=True,
                env=_installer_env(),
            )
    return modules


# -- http-01 and dns-01 responders -----------------------------------------------------------------------
class TokenServer:
    """Serves /.well-known/acme-challenge/TOKEN from a dict, on 127.0.0.1:port."""

    def __init__(self, port: int) -> None:
        tokens: dict[str, str] = {}
        self.tokens = tokens

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.path.rsplit("/", 1)[-1]
                body = tokens.get(token)
                self.send_response(200 if body else 404)
                self.end_headers()
                self.wfile.write((body or "").encode())

            def log_message(self, *args) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> TokenServer:
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class TxtServer:
    """A UDP DNS server (dnslib) answering TXT queries from a JSON file {name: [values]}."""

    def __init__(self, records_file: Path) -> None:
        from dnslib import QTYPE, RR, TXT
        from dnslib.server import BaseResolver, DNSServer

        self.records_file = records_file
        records_file.write_text("{}")

        class Resolver(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                if request.q.qtype == QTYPE.TXT:
                    for value in json.loads(records_file.read_text()).get(name, []):
                        reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(value), ttl=1))
                return reply

        self.port = free_port(socket.SOCK_DGRAM)
        self.server = DNSServer(Resolver(), port=self.port, address="127.0.0.1")
        self.server.start_thread()

    def set(self, name: str, value: str) -> None:
        records = json.loads(self.records_file.read_text())
        records.setdefault(name.lower(), []).append(value)
        self.records_file.write_text(json.dumps(records))

    def stop(self) -> None:
        self.server.stop()


# -- a bare JWS client ----------------------------------------------------------------------------------
def b64(data: bytes) -> str:
    return josepy.b64.b64encode(data).decode()


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def problem(self) -> str:
        return self.json.get("type", "")


class Client:
    def __init__(self, directory_url: str, cafile: Path | None = None) -> None:
        self.ssl = ssl.create_default_context(cafile=str(cafile)) if cafile else None
        self.directory_url = directory_url
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid: str | None = None
        self.saved_nonce: str | None = None  # the last answer's Replay-Nonce, used by the next request
        self.directory = self.request("GET", directory_url).json

    def request(
        self, method: str, url: str, body: dict | None = None, content_type: str = "application/jose+json"
    ) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": content_type} if data else {}
        )
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
                reply = Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as exc:
            reply = Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
        self.saved_nonce = reply.headers.get("replay-nonce")
        return reply

    def nonce(self) -> str:
        saved, self.saved_nonce = self.saved_nonce, None
        return saved or self.request("HEAD", self.directory["newNonce"]).headers["replay-nonce"]

    def jwk(self, key=None) -> dict:
        return josepy.JWKEC(key=(key or self.key).public_key()).to_json()

    def thumbprint(self) -> str:
        return b64(josepy.JWKEC(key=self.key.public_key()).thumbprint(hash_function=hashes.SHA256))

    def jws(
        self,
        url: str,
        payload: dict | None,
        *,
        nonce: str | None = None,
        use_jwk: bool = False,
        key=None,
        url_header: str | None = None,
        with_nonce: bool = True,
    ) -> dict:
        key = key or self.key
        protected: dict = {"alg": "ES256", "url": url_header or url}
        if with_nonce:
            protected["nonce"] = nonce or self.nonce()
        if use_jwk or self.kid is None:
            protected["jwk"] = self.jwk(key)
        else:
            protected["kid"] = self.kid
        p64 = b64(json.dumps(protected).encode())
        body64 = "" if payload is None else b64(json.dumps(payload).encode())
        r, s = decode_dss_signature(key.sign(f"{p64}.{body64}".encode(), ec.ECDSA(hashes.SHA256())))
        return {"protected": p64, "payload": body64, "signature": b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))}

    def post(self, url: str, payload: dict | None, **kw) -> Reply:
        return self.request("POST", url, self.jws(url, payload, **kw))

    def register(self, payload: dict | None = None) -> Reply:
        reply = self.post(self.directory["newAccount"], payload or {"termsOfServiceAgreed": True}, use_jwk=True)
        if reply.status in (200, 201):
            self.kid = reply.headers["location"]
        return reply

    def eab(self, kid: str, mac_key_b64: str) -> dict:
        protected = b64(json.dumps({"alg": "HS256", "kid": kid, "url": self.directory["newAccount"]}).encode())
        payload = b64(json.dumps(self.jwk()).encode())
        mac = hmac.HMAC(josepy.b64.b64decode(mac_key_b64), hashes.SHA256())
        mac.update(f"{protected}.{payload}".encode())
        return {"protected": protected, "payload": payload, "signature": b64(mac.finalize())}

    def new_order(self, *names: str) -> Reply:
        return self.post(self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names]})
