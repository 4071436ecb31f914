"""`certsync agent` end to end: a real `certsync serve` (TLS, trusted through the CA bundle), the
agent as a user runs it (`certsync agent --once`, and as a daemon stopped by SIGTERM), and a real
nginx from Debian running unprivileged from a prefix in tmp_path.

The agent replaces nginx's placeholder certificate with an enrolled one (checked with
`openssl s_client -verify_return_error` against the root), then renews it (`--force`) while a
thread loops TLS handshakes against nginx: none fails during the switch, and the served serial
changes after the agent's `nginx -s reload`. The server's audit trail holds the agent's reports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.server import CertsyncServer, env

NAME = "web"
HOST = "web.example.internal"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

# skipped locally without nginx; under CI (scripts/test.sh installs it) a missing nginx fails
pytestmark = pytest.mark.skipif(
    NGINX is None and not os.environ.get("CI"), reason="nginx is not installed (scripts/test.sh installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx with its own prefix, config, pid and logs in `folder`, in the foreground."""

    def __init__(self, folder: Path, cert: Path, key: Path) -> None:
        self.prefix, self.port = folder, free_port()
        for sub in ("logs", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.conf = folder / "nginx.conf"
        temps = "\n".join(
            f"  {kind}_temp_path {folder}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.conf.write_text(f"""
worker_processes 1;
error_log {folder}/logs/error.log notice;
pid {folder}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  access_log off;
{temps}
  server {{
    listen 127.0.0.1:{self.port} ssl;
    server_name {HOST};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ return 200 "ok\\n"; }}
  }}
}}
""")
        self.process: subprocess.Popen | None = None

    def command(self, *args: str) -> list[str]:
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf), *args]

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command("-g", "daemon off;"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, self.log()
                time.sleep(0.05)
        raise AssertionError(f"nginx did not listen on {self.port}:\n{self.log()}")

    def log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def served_serial(port: int, root: Path, folder: Path) -> str | None:
    """openssl s_client against nginx, verifying the chain to the root and the host name; None
    when that fails (the placeholder nginx starts with)."""
    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            HOST,
            "-verify_hostname",
            HOST,
            "-CAfile",
            str(root),
            "-verify_return_error",
        ],
        input=b"",
        capture_output=True,
        timeout=30,
        cwd=folder,
    )
    if result.returncode != 0 or b"Verify return code: 0 (ok)" not in result.stdout:
        return None
    cert = x509.load_pem_x509_certificate(result.stdout.split(b"Server certificate\n", 1)[1])
    return format(cert.serial_number, "x")


class Handshakes(threading.Thread):
    """Loops TLS handshakes against nginx (Python ssl, verifying against the root) and records the
    serial each one saw, and every failure."""

    def __init__(self, port: int, root: Path) -> None:
        super().__init__(daemon=True)
        import ssl

        self.context = ssl.create_default_context(cafile=str(root))
        self.port, self.serials, self.failures = port, [], []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
                    with self.context.wrap_socket(raw, server_hostname=HOST) as tls:
                        der = tls.getpeercert(binary_form=True)
                self.serials.append(format(x509.load_der_x509_certificate(der).serial_number, "x"))
            except OSError as exc:  # ssl.SSLError is an OSError
                self.failures.append(repr(exc))

    def seen(self) -> list[str]:
        """The distinct serials, in the order first seen."""
        return list(dict.fromkeys(self.serials))


def placeholder(folder: Path) -> tuple[Path, Path]:
    """A self-signed pair nginx starts with (what a fresh host has before the agent runs)."""
    cert, key = folder / "web.fullchain.pem", folder / "web.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={HOST}",
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def agent(config: Path, token: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "sync", "agent", "--agent-config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env(), "CERTSYNC_AGENT_TOKEN": token},
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One TLS server for the module (its start is most of the time these tests take)."""
    with CertsyncServer(tmp_path_factory.mktemp("agent-server"), tls=True, server_toml="rate_limit = 0") as running:
        yield running


def test_agent_deploys_to_nginx_and_renews_with_no_failed_handshake(tmp_path, server):
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    fullchain, key = placeholder(tls_dir)
    nginx = Nginx(tmp_path / "nginx", fullchain, key)
    token = server.token("web-1-agent", "read", "sign", "renew")
    config = tmp_path / "agent.toml"
    config.write_text(f"""
server = "{server.url}"
ca_bundle = "{server.root_pem}"
host = "web-1"
[certificate.{NAME}]
dns_names = ["{HOST}"]
fullchain = "{fullchain}"
cert = "{tls_dir}/web.crt"
key = "{key}"
reload = {json.dumps(nginx.command("-s", "reload"))}
reload_timeout = "20s"
""")
    nginx.start()
    try:
        assert served_serial(nginx.port, server.root_pem, tmp_path) is None  # the placeholder does not verify
        first = json.loads(agent(config, token, "--once", "--output", "json").stdout)["certificates"][0]
        assert (first["status"], first["reported"]) == ("deployed", True), first
        # `nginx -s reload` signals the master and returns: wait for the new workers
        # and for the old workers, which still answer with the placeholder until they exit: ten in a row
        _wait(
            lambda: all(served_serial(nginx.port, server.root_pem, tmp_path) == first["serial"] for _ in range(10)),
            "the first serial from every worker",
        )
        assert oct(key.stat().st_mode & 0o777) == "0o600"

        clients = Handshakes(nginx.port, server.root_pem)
        clients.start()
        _wait(lambda: len(clients.serials) >= 20, "handshakes before the renewal")
        renewed = json.loads(agent(config, token, "--once", "--force", "--output", "json").stdout)["certificates"][0]
        assert renewed["status"] == "deployed" and renewed["serial"] != first["serial"]
        _wait(lambda: renewed["serial"] in clients.serials, "nginx serving the renewed certificate")
        count = len(clients.serials)
        _wait(lambda: len(clients.serials) >= count + 20, "handshakes after the renewal")
        clients.halt.set()
        clients.join(30)

        print(f"handshakes: {len(clients.serials)} ok, {len(clients.failures)} failed, serials {clients.seen()}")
        assert clients.failures == []
        assert clients.seen() == [first["serial"], renewed["serial"]]
        assert served_serial(nginx.port, server.root_pem, tmp_path) == renewed["serial"]
    finally:
        nginx.stop()
    events = json.loads(server.cli("audit", "--output", "json", "--action", "deploy", "--certificate", NAME).stdout)[
        "events"
    ]
    assert sorted((e["serial"], e["outcome"], e["detail"]["host"]) for e in events) == sorted(
        [(first["serial"], "ok", "web-1"), (renewed["serial"], "ok", "web-1")]
    )


def test_agent_daemon_enrolls_and_stops_on_sigterm(tmp_path, server):
    out = tmp_path / "tls"
    out.mkdir()
    token = server.token("daemon-agent", "read", "sign", "renew")
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[store]
url = "sqlite:///ignored.db"
[agent]
server = "{server.url}"
ca_bundle = "{server.root_pem}"
[agent.certificate.daemon]
dns_names = ["daemon.example.internal"]
fullchain = "{out}/daemon.pem"
key = "{out}/daemon.key"
""")
    process = subprocess.Popen(
        [sys.executable, "-m", "sync", "agent", "--agent-config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env(), "CERTSYNC_AGENT_TOKEN": token},
    )
    try:
        _wait(lambda: (out / "daemon.key").exists() or process.poll() is not None, "the daemon's first deployment")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert stdout.startswith("daemon: deployed: serial ")
    assert "certsync agent: stopped" in stderr


def _wait(condition, what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {limit:g}s for {what}")
        time.sleep(0.05)
