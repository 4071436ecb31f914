import base64
import os
import textwrap
from pathlib import Path

import pytest

BASE_CONFIG = """
[ca.root]
subject = "CN=Test Root CA,O=certsync tests"
key = "ec-p384"
validity = "3650d"

[ca.issuing]
parent = "root"
subject = "CN=Test Issuing CA,O=certsync tests"
key = "ec-p256"
validity = "1825d"
crl_url = "http://pki.example.internal/crl/issuing.crl"
ocsp_url = "http://pki.example.internal/ocsp"

[profile.tls-server]
ca = "issuing"
key = "ec-p256"
allowed_keys = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]
validity = "90d"
renew_before = "30d"
allowed_domains = ["*.example.internal", "example.internal"]
allowed_ips = ["10.0.0.0/8"]
usages = ["serverAuth", "clientAuth"]

[certificate.api]
profile = "tls-server"
common_name = "api.example.internal"
dns_names = ["api.example.internal", "www.example.internal"]
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temp folder with a config file; the master key comes from a key file in it."""
    monkeypatch.delenv("CERTSYNC_MASTER_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sync.toml").write_text(textwrap.dedent(BASE_CONFIG))
    return tmp_path


def write_config(path: Path, extra: str = "", base: str = BASE_CONFIG) -> Path:
    path.write_text(textwrap.dedent(base) + textwrap.dedent(extra))
    return path


@pytest.fixture
def master_key_env(monkeypatch):
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("CERTSYNC_MASTER_KEY", key)
    return key
