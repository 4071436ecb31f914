"""Run the Azure Key Vault emulator (localstack/azure_emulator.py) for tests, and build clients.

    with running_azure_emulator(tmp_dir) as emu:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in emu.env().items():
                mp.setenv(k, v)
            provider = make_azure_provider(emu.url, emu.ca)

`emu.env()` is what DefaultAzureCredential needs to get tokens from the emulator: IDENTITY_ENDPOINT
and IDENTITY_HEADER (App Service managed identity). The credential must also trust the emulator's
CA for that HTTPS call: both builders below pass it (connection_verify); a client built some other
way needs REQUESTS_CA_BUNDLE=<ca.pem>. Set the env before the first call.
"""

from __future__ import annotations

import json
import os
import select
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "localstack" / "azure_emulator.py"


@dataclass
class AzureEmulator:
    url: str
    ca: Path
    state_dir: Path
    process: subprocess.Popen

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": "certsync-tests"}

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, token: str | None = None
    ) -> tuple[int, dict[str, str], Any]:
        """Raw HTTPS call (no SDK): returns status, headers (lower-case names), parsed JSON or None."""
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"content-type": "application/json", **(headers or {})}
        if token:
            hdrs["authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as resp:
                status, raw, rh = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as err:
            status, raw, rh = err.code, err.read(), err.headers
        return status, {k.lower(): v for k, v in rh.items()}, (json.loads(raw) if raw else None)

    def token(self) -> str:
        status, _, body = self.request(
            "GET",
            "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net",
            headers={"X-IDENTITY-HEADER": "certsync-tests"},
        )
        assert status == 200, body
        return body["access_token"]

    def stats(self) -> dict[str, Any]:
        return self.request("GET", "/_emulator/stats")[2]

    def calls(self, operation: str, status: int | None = None) -> int:
        op = self.stats()["operations"].get(operation, {"total": 0, "by_status": {}})
        return op["total"] if status is None else op["by_status"].get(str(status), 0)


@contextmanager
def running_azure_emulator(state_dir: Path, *args: str, timeout: float = 30.0) -> Iterator[AzureEmulator]:
    """Start the emulator on a free port, wait for its READY line, stop it (SIGTERM) afterwards."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "emulator.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port", "0", "--state-dir", str(state_dir), *args],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + timeout
        while not line.startswith("READY"):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None or not select.select([proc.stdout], [], [], left)[0]:
                raise RuntimeError(
                    f"azure emulator did not become ready: {(state_dir / 'emulator.log').read_text()[-2000:]}"
                )
            line = proc.stdout.readline()
        _, url, ca = line.split()
        yield AzureEmulator(url=url, ca=Path(ca.removeprefix("ca=")), state_dir=state_dir, process=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def make_secret_client(vault_url: str, ca_file: str | os.PathLike, **kwargs: Any) -> Any:
    """The official SecretClient with DefaultAzureCredential (needs emu.env() set)."""
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        vault_url,
        DefaultAzureCredential(connection_verify=str(ca_file)),
        verify_challenge_resource=False,
        connection_verify=str(ca_file),
        **kwargs,
    )


def make_azure_provider(vault_url: str, ca_file: str | os.PathLike, **kw: Any) -> Any:
    """An AzureProvider built exactly as certsync builds it from a destination (from_destination).

    kw: adopt, purge_on_delete, on_soft_deleted, name, and page_size (not a destination key: applied
    to the built provider). Needs emu.env() in the environment at first use.
    """
    from providers.azure import from_destination

    page_size = kw.pop("page_size", None)
    dest = SimpleNamespace(
        provider="azure", vault_url=vault_url, ca_bundle=str(ca_file), verify_challenge_resource=False, **kw
    )
    provider = from_destination(dest)
    provider.page_size = page_size
    return provider


def azure_contract_parts(vault_url: str, ca_file: str | os.PathLike) -> dict[str, Any]:
    """What tests/contract's Kit needs for kind "azure": Kit(kind="azure", **parts).

    Needs emu.env() (IDENTITY_ENDPOINT, IDENTITY_HEADER) set before it is called.
    """
    from azure.core.exceptions import ResourceNotFoundError

    from providers.azure import MAX_VALUE_BYTES

    raw = make_secret_client(vault_url, ca_file)

    def make(*, adopt: bool = False, page_size: int | None = None, soft_delete: bool = False) -> Any:
        # Key Vault always soft-deletes; without soft_delete the adapter purges on delete.
        return make_azure_provider(
            vault_url, ca_file, adopt=adopt, page_size=page_size, purge_on_delete=not soft_delete
        )

    def raw_value(name: str) -> str | None:
        try:
            return raw.get_secret(name).value
        except ResourceNotFoundError:
            return None

    def cleanup(prefix: str) -> None:
        for props in raw.list_properties_of_secrets():
            if props.name.startswith(prefix):
                raw.begin_delete_secret(props.name).wait()
        for deleted in raw.list_deleted_secrets():
            if deleted.name.startswith(prefix):
                raw.purge_deleted_secret(deleted.name)

    return {
        "make": make,
        "offline": lambda: make_azure_provider("https://127.0.0.1:9", ca_file, name="contract"),
        "create_foreign": lambda name, value: raw.set_secret(name, value, tags={"owner": "someone-else"}),
        "raw_value": raw_value,
        "cleanup": cleanup,
        "max_payload": MAX_VALUE_BYTES,
        "binary": False,
    }
