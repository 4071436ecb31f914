"""certsync against AWS Secrets Manager on LocalStack, checked with boto3, openssl and pkilint."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

WRITES = {
    "CreateSecret",
    "PutSecretValue",
    "UpdateSecret",
    "TagResource",
    "UntagResource",
    "DeleteSecret",
    "RestoreSecret",
}


def config(name_prefix, proxy, fmt="json", extra=""):
    return f"""
[destination.aws]
provider = "aws"
region = "us-east-1"
endpoint_url = "{proxy.url}"
format = "{fmt}"

[certificate.{name_prefix}-api]
profile = "tls-server"
common_name = "api.example.internal"
dns_names = ["api.example.internal", "www.example.internal"]
destinations = ["aws", {{ to = "aws", name = "{name_prefix}/web-tls" }}]
{extra}"""


def openssl_verify(tmp: Path, document: dict) -> str:
    (tmp / "root.pem").write_text(document["ca_certificate"])
    (tmp / "chain.pem").write_text(document["certificate_chain"])
    (tmp / "leaf.pem").write_text(document["certificate"])
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            str(tmp / "root.pem"),
            "-untrusted",
            str(tmp / "chain.pem"),
            str(tmp / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_apply_pushes_readable_certificates_then_makes_no_writes(
    project, aws_proxy, secretsmanager, name_prefix, tmp_path
):
    project.write(config(name_prefix, aws_proxy))
    project.run("init")
    report = project.json("apply")
    assert report["ok"] and report["summary"] == {"issue": 1, "push": 2}

    value = secretsmanager.get_secret_value(SecretId=f"{name_prefix}-api")
    document = json.loads(value["SecretString"])
    assert set(document) == {
        "certificate",
        "private_key",
        "certificate_chain",
        "ca_certificate",
        "serial",
        "not_after",
        "fingerprint_sha256",
    }
    assert openssl_verify(tmp_path, document).strip().endswith("leaf.pem: OK")
    leaf = x509.load_pem_x509_certificate(document["certificate"].encode())
    key = serialization.load_pem_private_key(document["private_key"].encode(), None)
    assert key.public_key() == leaf.public_key()
    assert document["serial"] == format(leaf.serial_number, "x")
    assert len(x509.load_pem_x509_certificates(document["certificate_chain"].encode())) == 1
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "lint_pkix_cert"), "lint", "-s", "WARNING", str(tmp_path / "leaf.pem")],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    tags = {t["Key"]: t["Value"] for t in secretsmanager.describe_secret(SecretId=f"{name_prefix}/web-tls")["Tags"]}
    assert tags["managed-by"] == "certsync" and tags["certsync-cert"] == f"{name_prefix}-api"
    assert len(tags["certsync-fp"]) == 32

    aws_proxy.reset()
    again = project.json("apply")
    assert again["ok"] and again["summary"] == {"unchanged": 2}
    assert not WRITES & set(aws_proxy.calls), aws_proxy.calls
    assert "GetSecretValue" not in aws_proxy.calls  # decided from the listing (tags), not the values
    assert set(aws_proxy.calls) == {"ListSecrets"}


def test_drift_is_shown_and_repaired(project, aws_proxy, secretsmanager, name_prefix):
    project.write(config(name_prefix, aws_proxy))
    project.run("init")
    project.run("apply")
    secretsmanager.delete_secret(SecretId=f"{name_prefix}-api", ForceDeleteWithoutRecovery=True)
    secretsmanager.put_secret_value(SecretId=f"{name_prefix}/web-tls", SecretString="tampered")
    plan = project.run("plan", "--detailed-exitcode", expect=2).stdout
    assert "drift: deleted outside certsync" in plan
    assert "drift: value replaced outside certsync" in plan
    project.run("apply")
    for name in (f"{name_prefix}-api", f"{name_prefix}/web-tls"):
        assert json.loads(secretsmanager.get_secret_value(SecretId=name)["SecretString"])["certificate"]
    project.run("plan", "--detailed-exitcode")


def test_foreign_secret_is_refused_and_others_proceed(project, aws_proxy, secretsmanager, name_prefix):
    secretsmanager.create_secret(Name=f"{name_prefix}/web-tls", SecretString="not ours")
    project.write(config(name_prefix, aws_proxy))
    project.run("init")
    result = project.run("apply", expect=1)
    assert _errors(result.stderr) == (  # the emulator's http:// endpoint is warned about first
        f"error: push {name_prefix}-api -> aws/{name_prefix}/web-tls: secret '{name_prefix}/web-tls' exists and "
        "is not managed by certsync (no tag managed-by=certsync); set adopt = true to take it over"
    )
    assert secretsmanager.get_secret_value(SecretId=f"{name_prefix}/web-tls")["SecretString"] == "not ours"
    assert secretsmanager.get_secret_value(SecretId=f"{name_prefix}-api")["SecretString"].startswith("{")


def test_adopt_takes_over_a_foreign_secret(project, aws_proxy, secretsmanager, name_prefix):
    secretsmanager.create_secret(Name=f"{name_prefix}/web-tls", SecretString="not ours")
    project.write(config(name_prefix, aws_proxy).replace('format = "json"', 'format = "json"\nadopt = true'))
    project.run("init")
    project.run("apply")
    assert secretsmanager.get_secret_value(SecretId=f"{name_prefix}/web-tls")["SecretString"].startswith("{")


def test_pem_and_pkcs12_formats(project, aws_proxy, secretsmanager, name_prefix, monkeypatch):
    body = (
        config(name_prefix, aws_proxy, fmt="pem")
        + f"""
[destination.aws-pfx]
provider = "aws"
region = "us-east-1"
endpoint_url = "{aws_proxy.url}"
format = "pkcs12"
pkcs12_password_env = "PFX_PASSWORD"

[certificate.{name_prefix}-pfx]
profile = "tls-server"
common_name = "pfx.example.internal"
destinations = ["aws-pfx"]
"""
    )
    project.write(body)
    project.env["PFX_PASSWORD"] = "s3cret-pass"
    project.run("init")
    out = project.run("apply")
    assert "s3cret-pass" not in out.stdout + out.stderr
    pem = secretsmanager.get_secret_value(SecretId=f"{name_prefix}-api")["SecretString"]
    certs = x509.load_pem_x509_certificates(pem.encode())
    assert [c.subject.rfc4514_string() for c in certs] == [
        "CN=api.example.internal",
        "CN=E2E Issuing CA,O=certsync tests",
    ]
    assert pem.rstrip().endswith("-----END PRIVATE KEY-----")
    pfx = base64.b64decode(secretsmanager.get_secret_value(SecretId=f"{name_prefix}-pfx")["SecretString"])
    key, cert, extra = pkcs12.load_key_and_certificates(pfx, b"s3cret-pass")
    assert key.public_key() == cert.public_key() and len(extra) == 1
    aws_proxy.reset()
    assert project.json("apply")["summary"] == {"unchanged": 3}  # PFX salts do not count as changes


def test_removed_certificate_is_deleted_from_aws(project, aws_proxy, secretsmanager, name_prefix):
    second = f"""
[certificate.{name_prefix}-old]
profile = "tls-server"
common_name = "old.example.internal"
destinations = ["aws"]
"""
    project.write(config(name_prefix, aws_proxy, extra=second))
    project.run("init")
    project.run("apply")
    project.write(config(name_prefix, aws_proxy))
    plan = project.run("plan").stdout
    assert f"delete     {name_prefix}-old -> aws/{name_prefix}-old (certificate removed from config)" in plan
    project.run("apply")
    names = [
        s["Name"] for s in secretsmanager.list_secrets(Filters=[{"Key": "name", "Values": [name_prefix]}])["SecretList"]
    ]
    assert f"{name_prefix}-old" not in names and f"{name_prefix}-api" in names
    states = {c["name"]: c["state"] for c in project.json("list")["certificates"]}
    assert states[f"{name_prefix}-old"] == "retired"


def test_one_off_push_even_when_unchanged(project, aws_proxy, secretsmanager, name_prefix):
    body = (
        config(name_prefix, aws_proxy)
        + f"""
[destination.aws-other]
provider = "aws"
region = "us-east-1"
endpoint_url = "{aws_proxy.url}"
format = "pem"
"""
    )
    project.write(body)
    project.run("init")
    first = project.json("push", f"{name_prefix}-api")  # never issued: issues, then pushes
    assert first["summary"] == {"issue": 1, "push": 2}
    aws_proxy.reset()
    again = project.json("push", f"{name_prefix}-api", "--to", "aws")
    assert again["summary"] == {"push": 2} and aws_proxy.calls["PutSecretValue"] == 2
    other = project.json("push", f"{name_prefix}-api", "--to", "aws-other")  # not in its list
    assert [r["remote_name"] for r in other["results"]] == [f"{name_prefix}-api"]
    result = project.run("push", f"{name_prefix}-api", "--to", "nowhere", expect=2)
    assert _errors(result.stderr).startswith("error: --to: unknown destination 'nowhere'")


def test_one_off_push_dry_run_writes_nothing(project, aws_proxy, secretsmanager, name_prefix):
    secretsmanager.create_secret(Name=f"{name_prefix}/web-tls", SecretString="not ours")
    project.write(config(name_prefix, aws_proxy))
    project.run("init")
    aws_proxy.reset()
    result = project.run("push", f"{name_prefix}-api", "--dry-run", expect=1)
    assert f"push       {name_prefix}-api -> aws/{name_prefix}-api (would create)" in result.stdout
    assert "would be refused: the secret exists and is not managed by certsync" in result.stdout
    assert not WRITES & set(aws_proxy.calls), aws_proxy.calls
    assert project.json("list")["certificates"] == []  # not even issued


def test_one_off_copy_elsewhere_is_kept_by_apply_and_removed_on_retire(project, aws_proxy, secretsmanager, name_prefix):
    body = (
        config(name_prefix, aws_proxy)
        + f"""
[destination.aws-other]
provider = "aws"
region = "eu-west-1"
endpoint_url = "{aws_proxy.url}"
"""
    )
    project.write(body)
    project.run("init")
    project.run("apply")
    project.run("push", f"{name_prefix}-api", "--to", "aws-other")
    other = boto3.client(
        "secretsmanager",
        endpoint_url=aws_proxy.url,
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    assert other.get_secret_value(SecretId=f"{name_prefix}-api")["SecretString"]
    assert project.json("plan")["changes"] == 0  # the copy pushed by hand is not planned away
    project.run("apply")
    assert secretsmanager.get_secret_value(SecretId=f"{name_prefix}-api")["SecretString"]
    project.run("retire", f"{name_prefix}-api")
    for client in (secretsmanager, other):
        assert not client.list_secrets(Filters=[{"Key": "name", "Values": [name_prefix]}])["SecretList"]


def test_csr_enrollment_pushed_chain_only(project, aws_proxy, secretsmanager, name_prefix, tmp_path):
    project.write(config(name_prefix, aws_proxy))
    project.run("init")
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(tmp_path / "client.key"),
            "-out",
            str(tmp_path / "client.csr"),
            "-subj",
            "/CN=svc.example.internal",
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    name = f"{name_prefix}-svc"
    project.run("sign", "--csr", str(tmp_path / "client.csr"), "--profile", "tls-server", "--name", name, "--to", "aws")
    document = json.loads(secretsmanager.get_secret_value(SecretId=name)["SecretString"])
    assert "private_key" not in document  # the client keeps its key
    leaf = x509.load_pem_x509_certificate(document["certificate"].encode())
    key = serialization.load_pem_private_key((tmp_path / "client.key").read_bytes(), None)
    assert leaf.public_key() == key.public_key()
    assert openssl_verify(tmp_path, document).strip().endswith("leaf.pem: OK")
    assert project.json("apply")["summary"].get("delete") is None  # apply leaves it alone
    assert json.loads(secretsmanager.get_secret_value(SecretId=name)["SecretString"]) == document


# --- ownership is per certificate ---------------------------------------------------------------


def test_one_off_push_and_sign_refuse_another_certificates_target(
    project, aws_proxy, secretsmanager, name_prefix, tmp_path
):
    """`push A --to D` and `sign --to D` never write a secret that another configured certificate
    targets, whether under D or under another destination pointing at the same store: refused
    before any call (store or cloud), one line, exit 2; --dry-run says the same."""
    a, b = f"{name_prefix}-api", f"{name_prefix}-b"
    body = (
        config(name_prefix, aws_proxy)
        + f"""
[destination.aws-alias]
provider = "aws"
region = "us-east-1"
endpoint_url = "{aws_proxy.url}"

[destination.aws-free]
provider = "aws"
region = "eu-west-1"
endpoint_url = "{aws_proxy.url}"

[certificate.{b}]
profile = "tls-server"
common_name = "b.example.internal"
destinations = [{{ to = "aws-free", name = "{a}" }}, {{ to = "aws-alias", name = "{name_prefix}-svc" }}]
"""
    )
    project.write(body)
    project.run("init")
    project.run("apply")

    def versions():
        return {
            s["Name"]: secretsmanager.get_secret_value(SecretId=s["ARN"])["VersionId"]
            for s in secretsmanager.list_secrets(Filters=[{"Key": "name", "Values": [name_prefix]}])["SecretList"]
        }

    before = versions()
    aws_proxy.reset()

    # a's one-off name in aws-free is b's target there
    for args in (("push", a, "--to", "aws-free"), ("push", a, "--to", "aws-free", "--dry-run")):
        result = project.run(*args, expect=2)
        assert result.stdout == ""
        assert _errors(result.stderr) == (
            f"error: --to aws-free: secret {a!r} is the target of certificate {b!r}; {a!r} may not be pushed there"
        )
    # b's one-off name in `aws` would be fine, but b's one-off name {b} is free; a's own targets too
    # (a CSR enrollment named like b's secret in aws-alias, reached through `aws`: the same store)
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(tmp_path / "c.key"),
            "-out",
            str(tmp_path / "c.csr"),
            "-subj",
            "/CN=svc.example.internal",
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    result = project.run(
        "sign",
        "--csr",
        str(tmp_path / "c.csr"),
        "--profile",
        "tls-server",
        "--name",
        f"{name_prefix}-svc",
        "--to",
        "aws",
        expect=2,
    )
    assert result.stdout == ""
    assert _errors(result.stderr) == (
        f"error: --to aws: secret '{name_prefix}-svc' is the target of certificate {b!r} "
        f"(destination 'aws-alias' is the same store); {name_prefix + '-svc'!r} may not be "
        "pushed there"
    )
    assert not aws_proxy.calls, aws_proxy.calls  # no cloud call at all
    assert f"{name_prefix}-svc" not in {c["name"] for c in project.json("list")["certificates"]}  # nor issued
    assert versions() == before


def test_another_installations_secret_is_neither_overwritten_nor_retired(
    project, aws_proxy, secretsmanager, name_prefix, tmp_path
):
    """Two stores, one AWS account: certificate `b` of the first owns a secret that certificate
    `api` of the second targets. The second's apply and retire refuse to touch it (the provider
    template checks certsync-cert), the run exits 1 naming both certificates, the value stays."""
    from tests.e2e.conftest import Project

    shared = f"{name_prefix}/shared"
    first = Project(tmp_path / "first", project.env)
    first.path.mkdir()
    first.write(f"""
[destination.aws]
provider = "aws"
region = "us-east-1"
endpoint_url = "{aws_proxy.url}"

[certificate.{name_prefix}-b]
profile = "tls-server"
common_name = "b.example.internal"
destinations = [{{ to = "aws", name = "{shared}" }}]
""")
    first.run("init")
    first.run("apply")
    value = secretsmanager.get_secret_value(SecretId=shared)["SecretString"]

    project.write(config(name_prefix, aws_proxy).replace(f"{name_prefix}/web-tls", shared))
    project.run("init")
    report = project.json("apply", expect=1)
    failed = [r for r in report["results"] if r["status"] == "failed"]
    assert [r["remote_name"] for r in failed] == [shared]
    assert f"belongs to certificate '{name_prefix}-b', not '{name_prefix}-api'" in failed[0]["error"]
    assert secretsmanager.get_secret_value(SecretId=shared)["SecretString"] == value

    dry = project.run("push", f"{name_prefix}-api", "--dry-run", expect=1)
    assert f"would be refused: the secret belongs to certificate '{name_prefix}-b'" in dry.stdout
    project.run("retire", f"{name_prefix}-api")  # deletes only what it pushed
    assert secretsmanager.get_secret_value(SecretId=shared)["SecretString"] == value


def _errors(stderr: str) -> str:
    """stderr without the insecure-transport warnings (the emulator is plain http on 127.0.0.1)."""
    return "\n".join(
        l
        for l in stderr.strip().splitlines()
        if not (l.startswith("warning: destination ") and "insecure transport" in l)
    )
