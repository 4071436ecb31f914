"""End-to-end: the certsync CLI, as a user runs it, against the cloud emulators."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.counting_proxy import CountingProxy

CA_AND_PROFILE = """
[ca.root]
subject = "CN=E2E Root CA,O=certsync tests"
key = "ec-p384"

[ca.issuing]
parent = "root"
subject = "CN=E2E Issuing CA,O=certsync tests"
key = "ec-p256"
crl_url = "http://pki.example.internal/crl/issuing.crl"

[profile.tls-server]
ca = "issuing"
validity = "90d"
renew_before = "30d"
allowed_domains = ["*.example.internal"]
usages = ["serverAuth"]
"""

AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


class Project:
    """A temp folder with a config; `run` invokes the CLI in it."""

    def __init__(self, path, env):
        self.path, self.env = path, env

    def write(self, body: str) -> None:
        (self.path / "sync.toml").write_text(textwrap.dedent(CA_AND_PROFILE) + textwrap.dedent(body))

    def run(self, *args, expect=0):
        result = subprocess.run(
            [sys.executable, "-m", "sync", *args],
            capture_output=True,
            text=True,
            cwd=self.path,
            env=self.env,
            timeout=300,
        )
        assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        return result

    def json(self, *args, expect=0):
        return json.loads(self.run("--output", "json", *args, expect=expect).stdout)


@pytest.fixture
def project(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTSYNC_") or k == "CERTSYNC_EMULATORS_STATE"}
    env.update(AWS_ENV)
    return Project(tmp_path, env)


@pytest.fixture(scope="session")
def aws_endpoint(emulators):
    return emulators.entry("aws")["endpoint"]


@pytest.fixture
def aws_proxy(aws_endpoint):
    with CountingProxy(aws_endpoint) as proxy:
        yield proxy


@pytest.fixture
def secretsmanager(aws_endpoint):
    import boto3

    return boto3.client(
        "secretsmanager",
        endpoint_url=aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
