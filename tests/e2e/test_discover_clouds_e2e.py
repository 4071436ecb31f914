"""Discovery in the three cloud emulators, end to end with the CLI: foreign certificates (made here
with cryptography, not by certsync) next to certsync-managed ones; discover, adopt, plan (an update
adopting the foreign secret), apply, discover again. Secrets holding no certificate are skipped
and their values never appear anywhere (output, logs, the store)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import uuid
from datetime import datetime, timedelta, UTC

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.e2e.clouds import Cloud

FORMATS = {"aws": "json", "gcp": "pem", "azure": "pkcs12"}
PFX_PASSWORD = "pfx-" + uuid.uuid4().hex


@pytest.fixture(params=["aws", "gcp", "azure"])
def cloud(request, emulators, name_prefix, project):
    cloud = Cloud(request.param, emulators.entry(request.param), project=name_prefix)
    project.env.update(cloud.env())
    project.env["DISCOVERY_PFX_PASSWORD"] = PFX_PASSWORD
    return cloud


def foreign_certificate(*names: str, rsa_key: bool = False):
    """A self-signed certificate and its key, as some other tool would have made them."""
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, names[0]), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Legacy Ops")]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=300))
        .not_valid_after(now + timedelta(days=20))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def foreign_value(kind: str, cert, key) -> tuple[str, str | None]:
    """Each cloud gets a different common shape: JSON with a cert field, a PEM bundle, a base64 PFX."""
    if kind == "aws":
        return json.dumps({"cert_pem": pem(cert), "key": key_pem(key), "owner": "legacy"}), None
    if kind == "gcp":
        return pem(cert) + key_pem(key), None
    pfx = pkcs12.serialize_key_and_certificates(
        b"legacy", key, cert, None, serialization.BestAvailableEncryption(PFX_PASSWORD.encode())
    )
    return base64.b64encode(pfx).decode(), "application/x-pkcs12"


def put_foreign(cloud: Cloud, name: str, value: str, content_type: str | None = None) -> None:
    if cloud.kind == "aws":
        cloud._aws().create_secret(Name=name, SecretString=value, Tags=[{"Key": "team", "Value": "legacy"}])
    elif cloud.kind == "gcp":
        client, parent = cloud._gcp(), f"projects/{cloud.project}"
        client.create_secret(
            request={
                "parent": parent,
                "secret_id": name,
                "secret": {"replication": {"automatic": {}}, "labels": {"team": "legacy"}},
            }
        )
        client.add_secret_version(request={"parent": f"{parent}/secrets/{name}", "payload": {"data": value.encode()}})
    else:
        cloud._azure().set_secret(name, value, content_type=content_type, tags={"team": "legacy"})


def disable(cloud: Cloud, name: str) -> None:
    """Make the value unreadable: Key Vault disables the secret, Google its only version."""
    if cloud.kind == "azure":
        cloud._azure().update_secret_properties(name, enabled=False)
    elif cloud.kind == "gcp":
        cloud._gcp().disable_secret_version(request={"name": f"projects/{cloud.project}/secrets/{name}/versions/1"})


def config(cloud: Cloud, prefix: str, adopt: bool) -> str:
    extra = f"adopt = {str(adopt).lower()}"
    if cloud.kind == "azure":
        extra += '\npkcs12_password_env = "DISCOVERY_PFX_PASSWORD"'
    return (
        cloud.destination("cloud", FORMATS[cloud.kind], extra)
        + f"""
[certificate.{prefix}-api]
profile = "tls-server"
common_name = "api.example.internal"
dns_names = ["api.example.internal"]
destinations = ["cloud"]
"""
    )


def found_at(document: dict, location: str) -> dict | None:
    return next((f for f in document["clouds"]["found"] if f["location"] == location), None)


def test_discover_adopt_plan_apply_rediscover(project, cloud, name_prefix):
    kind, at = cloud.kind, f"{cloud.kind}:cloud/{name_prefix}"
    project.write(config(cloud, name_prefix, adopt=False))
    outputs = [project.run("init"), project.run("apply")]

    legacy, legacy_key = foreign_certificate(
        "legacy.example.internal", "legacy-www.example.internal", rsa_key=kind == "azure"
    )
    value, content_type = foreign_value(kind, legacy, legacy_key)
    put_foreign(cloud, f"{name_prefix}-legacy", value, content_type)
    outsider, outsider_key = foreign_certificate("shop.other.example.org")
    put_foreign(cloud, f"{name_prefix}-outsider", pem(outsider) + key_pem(outsider_key))
    password = "Pa55w0rd-" + uuid.uuid4().hex
    put_foreign(cloud, f"{name_prefix}-password", password)
    if kind != "aws":  # Secrets Manager has no disabled state
        put_foreign(cloud, f"{name_prefix}-disabled", pem(outsider))
        disable(cloud, f"{name_prefix}-disabled")

    run = project.run("--output", "json", "discover", "--clouds")
    outputs.append(run)
    first = json.loads(run.stdout)

    ours = found_at(first, f"{at}-api")
    assert ours["managed"] and ours["managed_secret"] and ours["certsync_cert"] == f"{name_prefix}-api"
    theirs = found_at(first, f"{at}-legacy")
    legacy_fp = hashlib.sha256(legacy.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert theirs["fingerprint"] == legacy_fp
    assert not theirs["managed"] and not theirs["managed_secret"] and theirs["certsync_cert"] is None
    assert "CN=legacy.example.internal" in theirs["subject"]
    assert theirs["sans"] == ["DNS:legacy.example.internal", "DNS:legacy-www.example.internal"]
    if kind == "azure":
        assert theirs["content_type"] == "application/x-pkcs12"
    assert found_at(first, f"{at}-password") is None  # skipped: no certificate in it
    [mine] = [d for d in first["clouds"]["destinations"] if d["destination"] == "cloud"]
    assert mine["without_certificates"] >= 1
    if kind == "azure":
        assert f"{at}-disabled: disabled: its value cannot be read" in mine["errors"]
    elif kind == "gcp":  # latest version disabled: no readable value, skipped
        assert found_at(first, f"{at}-disabled") is None

    # a name the profile does not allow: exit 2, nothing appended
    before = (project.path / "sync.toml").read_text()
    refused = project.run("adopt", f"{at}-outsider", "--as", "shop", "--profile", "tls-server", "--append", expect=2)
    assert "shop.other.example.org" in refused.stderr and "allowed_domains" in refused.stderr
    assert (project.path / "sync.toml").read_text() == before

    # the stanza, with the note that the destination must allow adopting
    shown = project.run("adopt", f"{at}-legacy", "--as", "legacy", "--profile", "tls-server")
    assert (
        '[certificate.legacy]\nprofile = "tls-server"\ncommon_name = "legacy.example.internal"\n'
        'dns_names = ["legacy.example.internal", "legacy-www.example.internal"]\n' in shown.stdout
    )
    assert f'destinations = [{{ to = "cloud", name = "{name_prefix}-legacy" }}]' in shown.stdout
    assert "#   [destination.cloud]\n#   adopt = true" in shown.stdout
    outputs += [refused, shown]

    os.chmod(project.path / "sync.toml", 0o640)
    outputs.append(project.run("adopt", legacy_fp[:16], "--as", "legacy", "--profile", "tls-server", "--append"))
    assert stat.S_IMODE(os.stat(project.path / "sync.toml").st_mode) == 0o640
    text = (project.path / "sync.toml").read_text()
    assert "[certificate.legacy]" in text
    project.run("adopt", legacy_fp[:16], "--as", "legacy", "--profile", "tls-server", "--append", expect=2)
    (project.path / "sync.toml").write_text(text.replace("adopt = false", "adopt = true"))

    plan = project.json("plan")
    [update] = [a for a in plan["actions"] if a["certificate"] == "legacy" and a["destination"] == "cloud"]
    assert update["action"] == "push" and update["remote_name"] == f"{name_prefix}-legacy"
    assert update["reason"].startswith("update adopting a secret certsync does not manage")
    outputs.append(project.run("plan"))
    outputs.append(project.run("apply"))

    again = json.loads(project.run("--output", "json", "discover", "--clouds").stdout)
    now_there = found_at(again, f"{at}-legacy")
    assert now_there["fingerprint"] != legacy_fp
    assert now_there["managed"] and now_there["managed_secret"] and now_there["certsync_cert"] == "legacy"
    assert "CN=legacy.example.internal" in now_there["subject"]
    assert again["clouds"]["summary"]["locations_gone"] >= 1  # the foreign certificate left that secret

    # privacy: the password and the foreign key were never printed, logged or stored
    secrets_ = [password, key_pem(legacy_key).splitlines()[1], PFX_PASSWORD]
    for out in outputs:
        for s in secrets_:
            assert s not in out.stdout and s not in out.stderr
    store = (project.path / "certsync.db").read_bytes()
    assert not any(s.encode() in store for s in secrets_)
