"""Insecure transports (a plaintext Google channel, an http:// AWS endpoint, Azure's challenge
check off) are for emulators on this machine: refused for any other host unless the destination
says allow_insecure_transport = true, and warned about (one stderr line per destination) whenever used."""

import subprocess
import sys

import pytest

from sync import config

from .conftest import write_config
from .test_config import load_error

GCP = '[destination.g]\nprovider = "gcp"\nproject = "p"\nendpoint = "{host}"\ninsecure = true\n'
AWS = '[destination.a]\nprovider = "aws"\nregion = "us-east-1"\nendpoint_url = "{host}"\n'
AZURE = '[destination.az]\nprovider = "azure"\nvault_url = "{host}"\nverify_challenge_resource = false\n'

REFUSED = [
    (GCP.format(host="secretmanager.googleapis.com:443"), "destination.g.insecure"),
    (GCP.format(host="10.1.2.3:8085"), "destination.g.insecure"),
    (GCP.format(host="127.0.0.1.example.com:8085"), "destination.g.insecure"),
    (AWS.format(host="http://secrets.example.internal:4566"), "destination.a.endpoint_url"),
    (AWS.format(host="http://169.254.169.254"), "destination.a.endpoint_url"),
    (AWS.format(host="http://localhost.example.com:4566"), "destination.a.endpoint_url"),
    (AWS.format(host="HTTP://192.168.1.1:4566"), "destination.a.endpoint_url"),
    (AZURE.format(host="https://v.vault.azure.net"), "destination.az.verify_challenge_resource"),
    (AZURE.format(host="https://[::2]:8443"), "destination.az.verify_challenge_resource"),
]


@pytest.mark.parametrize("extra, key", REFUSED)
def test_insecure_transport_off_loopback_is_refused(tmp_path, extra, key):
    message = load_error(tmp_path, extra)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{tmp_path / 'bad.toml'}: {key}: ")
    assert "allow_insecure_transport = true" in message and "localhost, 127.0.0.0/8 or ::1" in message


@pytest.mark.parametrize(
    "extra",
    [
        GCP.format(host="localhost:8085"),
        GCP.format(host="127.0.0.1:8085"),
        GCP.format(host="[::1]:8085"),
        GCP.format(host="127.3.4.5:8085"),
        AWS.format(host="http://127.0.0.1:4566"),
        AWS.format(host="http://LOCALHOST:4566/"),
        AWS.format(host="http://[::1]:4566"),
        AWS.format(host="https://secrets.example.internal"),
        AZURE.format(host="https://127.0.0.1:8443"),
        AZURE.format(host="https://localhost:8443/"),
    ],
)
def test_insecure_transport_on_loopback_is_allowed(tmp_path, extra):
    config.load(write_config(tmp_path / "ok.toml", extra))


@pytest.mark.parametrize("extra", [r[0] for r in REFUSED])
def test_allow_insecure_transport_overrides(tmp_path, extra):
    config.load(write_config(tmp_path / "ok.toml", extra + "allow_insecure_transport = true\n"))


def test_the_override_alone_is_no_excuse_for_gcp_without_an_endpoint(tmp_path):
    message = load_error(
        tmp_path, '[destination.g]\nprovider = "gcp"\nproject = "p"\ninsecure = true\nallow_insecure_transport = true\n'
    )
    assert f"{tmp_path / 'bad.toml'}: destination.g.insecure: " in message and "endpoint" in message


def _run(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "sync", "--config", str(tmp_path / "sync.toml"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def test_cli_refuses_with_one_line_exit_2_and_writes_nothing(tmp_path):
    write_config(tmp_path / "sync.toml", AWS.format(host="http://secrets.example.internal:4566"))
    result = _run(tmp_path, "init")
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'sync.toml'}: destination.a.endpoint_url: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sync.toml"]


def test_cli_warns_once_per_insecure_destination(tmp_path):
    write_config(
        tmp_path / "sync.toml",
        GCP.format(host="127.0.0.1:8085")
        + AWS.format(host="http://127.0.0.1:4566")
        + AZURE.format(host="https://v.vault.azure.net")
        + "allow_insecure_transport = true\n"
        + '[destination.safe]\nprovider = "aws"\nregion = "us-east-1"\n',
    )
    result = _run(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    warnings = [l for l in result.stderr.splitlines() if l.startswith("warning: ")]
    assert len(warnings) == 3, result.stderr
    assert [w.split("'")[1] for w in warnings] == ["g", "a", "az"]
    assert all("insecure" in w.lower() or "plaintext" in w for w in warnings)
    assert "allow_insecure_transport" in warnings[2]
