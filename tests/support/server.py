"""A real `certsync serve` for tests: a config folder with a two-level CA, the store initialised,
the server started as a subprocess on a free port (port 0, the port read from its
"listening on" line), stopped with SIGTERM at the end.

    with CertsyncServer(tmp_path, extra_toml="...") as server:
        server.url            # http://127.0.0.1:PORT  (https:// with tls=True)
        server.cli("token", "create", "t1", "--profile", "web")   # the CLI on the same config
        server.root_pem       # the root CA (PEM file) to trust
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BASE_TOML = """
[ca.root]
subject = "CN=certsync Test Root,O=certsync tests"
[ca.issuing]
subject = "CN=certsync Test Issuing,O=certsync tests"
parent = "root"

[profile.web]
ca = "issuing"
allowed_domains = ["*.example.internal", "example.internal"]
usages = ["serverAuth", "clientAuth"]
validity = "30d"
"""

TLS_TOML = """
[profile.server]
ca = "issuing"
allowed_domains = ["localhost"]
allowed_ips = ["127.0.0.1/32"]
validity = "30d"

[certificate.certsync-server]
profile = "server"
common_name = "localhost"
ip_addresses = ["127.0.0.1"]
"""


def env() -> dict[str, str]:
    """The environment a certsync subprocess runs with: this checkout's code first."""
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


class CertsyncServer:
    def __init__(
        self,
        folder: Path,
        *,
        extra_toml: str = "",
        server_toml: str = "",
        tls: bool = False,
        store_url: str | None = None,
        start_timeout: float = 30.0,
        apply: bool = False,
    ) -> None:
        """server_toml: lines of the [server] table; extra_toml: more tables (certificates, profiles).
        tls: the server presents the managed certificate `certsync-server` (localhost, 127.0.0.1)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.log_path = self.folder / "serve.log"
        server_lines = ['listen = "127.0.0.1:0"', server_toml]
        if tls:
            server_lines.append('tls_certificate = "certsync-server"')
        store = f'[store]\nurl = "{store_url}"\n' if store_url else ""
        self.config = self.folder / "sync.toml"
        self.config.write_text(
            store + "[server]\n" + "\n".join(server_lines) + "\n" + BASE_TOML + (TLS_TOML if tls else "") + extra_toml
        )
        self.cli("init")
        if tls or apply:
            self.cli("apply")
        self.root_pem = self.folder / "root.pem"
        self.chain_pem = self.folder / "issuing.pem"
        self._write_ca_files()

    # -- the CLI on the same config --------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "sync", "--config", str(self.config), *args],
            capture_output=True,
            env=env(),
            cwd=self.folder,
            input=input,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"certsync {' '.join(args)} exited {result.returncode}: {result.stderr.decode(errors='replace')}"
            )
        return result

    def token(self, name: str, *scopes: str, profile: str = "web") -> str:
        args = ["token", "create", name, "--profile", profile]
        for scope in scopes:
            args += ["--scope", scope]
        return self.cli(*args).stdout.decode().strip()

    def _write_ca_files(self) -> None:
        code = (
            "import sys; from sync import config; from sync.app import App; "
            "from cryptography.hazmat.primitives.serialization import Encoding as E\n"
            "a = App(config.load(sys.argv[1]))\n"
            "with a.store.transaction() as tx:\n"
            "    for n in ('root', 'issuing'):\n"
            "        open(sys.argv[2] + '/' + n + '.pem', 'wb').write("
            "tx.authorities.checked(tx.authorities.active(n)).public_bytes(E.PEM))\n"
            "a.close()\n"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(self.config), str(self.folder)],
            check=True,
            env=env(),
            cwd=self.folder,
            timeout=60,
        )

    # -- the server ------------------------------------------------------------------------------------
    def start(self, *extra: str) -> CertsyncServer:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sync", "--config", str(self.config), "serve", *extra],
            stdout=log,
            stderr=log,
            env=env(),
            cwd=self.folder,
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            found = re.search(r"listening on (https?://[\d.]+:\d+)", self.log())
            if found:
                self.url = found.group(1)
                return self
            if self.process.poll() is not None:
                raise AssertionError(f"certsync serve exited {self.process.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"certsync serve did not start within {self.start_timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> CertsyncServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
