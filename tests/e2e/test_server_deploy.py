"""A profile's deploy_to: what `certsync serve` enrolls under it is pushed to the cloud (chain only,
the key stays with the client), in the background; one a previous server process enrolled but did
not push is pushed when the next one starts. Read back from LocalStack with boto3."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import AWS_ENV
from tests.support.server import CertsyncServer


def csr_pem(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def extra(endpoint: str) -> str:
    return f"""
[destination.aws]
provider = "aws"
region = "us-east-1"
endpoint_url = "{endpoint}"

[profile.deployed]
ca = "issuing"
allowed_domains = ["*.example.internal"]
deploy_to = ["aws"]
"""


def wait_for_secret(secretsmanager, secret_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return secretsmanager.get_secret_value(SecretId=secret_id)
        except secretsmanager.exceptions.ResourceNotFoundException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture
def aws_env(monkeypatch):
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)


def test_enrolled_through_the_api_is_pushed_chain_only(tmp_path, aws_env, aws_endpoint, secretsmanager):
    name = f"app-{uuid.uuid4().hex[:8]}"
    with CertsyncServer(tmp_path, extra_toml=extra(aws_endpoint)) as server:
        token = server.token("signer", "sign", profile="deployed")
        body = json.dumps({"csr": csr_pem("app.example.internal"), "name": name}).encode()
        request = urllib.request.Request(
            server.url + "/api/v1/sign",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as reply:
            assert reply.status == 201
        value = wait_for_secret(secretsmanager, name)["SecretString"]
        assert "BEGIN CERTIFICATE" in value and "PRIVATE KEY" not in value
        tags = {t["Key"]: t["Value"] for t in secretsmanager.describe_secret(SecretId=name)["Tags"]}
        assert tags["managed-by"] == "certsync" and tags["certsync-cert"] == name
        deadline = time.monotonic() + 10
        while True:
            events = json.loads(server.cli("--output", "json", "audit", "--action", "certificate.push").stdout)[
                "events"
            ]
            if events or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert events, server.cli("--output", "json", "audit").stdout.decode() + server.log()
        assert events[0]["outcome"] == "ok" and events[0]["certificate"] == name


def test_an_enrollment_left_unpushed_is_pushed_when_the_server_starts(tmp_path, aws_env, aws_endpoint, secretsmanager):
    name = f"dev-{uuid.uuid4().hex[:8]}"
    server = CertsyncServer(tmp_path, extra_toml=extra(aws_endpoint))
    (tmp_path / "dev.csr").write_text(csr_pem("dev.example.internal"))
    server.cli("sign", "--csr", str(tmp_path / "dev.csr"), "--profile", "deployed", "--name", name)  # no --to
    with pytest.raises(secretsmanager.exceptions.ResourceNotFoundException):
        secretsmanager.get_secret_value(SecretId=name)
    with server:
        assert "BEGIN CERTIFICATE" in wait_for_secret(secretsmanager, name)["SecretString"]
