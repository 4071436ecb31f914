"""The whole lifecycle against all three cloud emulators, read back with the official SDKs and
checked by openssl and a real TLS handshake (Python's ssl module)."""

import base64
import json
import socket
import ssl
import subprocess
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.e2e.clouds import Cloud

FORMATS = {"aws": "json", "gcp": "pem", "azure": "pkcs12"}


@pytest.fixture(params=["aws", "gcp", "azure"])
def cloud(request, emulators, name_prefix, project):
    cloud = Cloud(request.param, emulators.entry(request.param), project=name_prefix)
    project.env.update(cloud.env())
    return cloud


def write_config(project, cloud, name_prefix, fmt=None, extra_certs=""):
    project.write(
        cloud.destination("cloud", fmt or FORMATS[cloud.kind])
        + f"""
[certificate.{name_prefix}-api]
profile = "tls-server"
common_name = "api.example.internal"
dns_names = ["api.example.internal"]
destinations = ["cloud"]
{extra_certs}"""
    )


def materials(cloud, payload: str, fmt: str):
    """(leaf, intermediates, key) from a payload as read back from the cloud."""
    if fmt == "json":
        doc = json.loads(payload)
        chain = x509.load_pem_x509_certificates(doc["certificate_chain"].encode())
        return (
            x509.load_pem_x509_certificate(doc["certificate"].encode()),
            chain,
            serialization.load_pem_private_key(doc["private_key"].encode(), None),
        )
    if fmt == "pem":
        certs = x509.load_pem_x509_certificates(payload.encode())
        return certs[0], certs[1:], serialization.load_pem_private_key(payload.encode(), None)
    key, leaf, chain = pkcs12.load_key_and_certificates(base64.b64decode(payload), None)
    return leaf, chain, key


def root_of(project) -> x509.Certificate:
    text = project.run("export", project.cert, "--format", "json").stdout
    return x509.load_pem_x509_certificate(json.loads(text)["ca_certificate"].encode())


def handshake(tmp_path, leaf, chain, key, root, server_hostname):
    """A TLS server presenting leaf+chain, a client trusting only the root. Returns the peer CN."""
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [leaf, *chain])
    (tmp_path / "server.pem").write_bytes(pem)
    (tmp_path / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    client_ctx = ssl.create_default_context(cadata=root.public_bytes(serialization.Encoding.PEM).decode())
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                subject = dict(x[0] for x in tls.getpeercert()["subject"])
                tls.sendall(b"x")
                return subject["commonName"]
    finally:
        thread.join(timeout=10)
        listener.close()


def test_pushed_certificate_serves_tls_and_fails_for_a_wrong_hostname(project, cloud, name_prefix, tmp_path):
    write_config(project, cloud, name_prefix)
    project.cert = f"{name_prefix}-api"
    project.run("init")
    project.run("apply")
    payload = cloud.read(f"{name_prefix}-api")
    leaf, chain, key = materials(cloud, payload, FORMATS[cloud.kind])
    assert key.public_key() == leaf.public_key()
    assert [c.subject for c in chain] == [leaf.issuer]  # leaf first, then the intermediate, no root
    root = root_of(project)
    assert handshake(tmp_path, leaf, chain, key, root, "api.example.internal") == "api.example.internal"
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(tmp_path, leaf, chain, key, root, "evil.example.internal")
    if cloud.kind == "azure":
        assert cloud.content_type(f"{name_prefix}-api") == "application/x-pkcs12"
    assert project.json("apply")["summary"] == {"unchanged": 1}


def test_drift_repaired_in_every_cloud(project, cloud, name_prefix):
    write_config(project, cloud, name_prefix)
    project.run("init")
    project.run("apply")
    cloud.delete_outside(f"{name_prefix}-api")
    assert "drift: deleted outside certsync" in project.run("plan").stdout
    project.run("apply")
    assert cloud.read(f"{name_prefix}-api")
    project.run("plan", "--detailed-exitcode")


def serial_in(cloud, name, fmt):
    return materials(cloud, cloud.read(name), fmt)[0].serial_number


def test_renew_revoke_replace_and_retire(project, cloud, name_prefix, tmp_path):
    write_config(project, cloud, name_prefix)
    name = f"{name_prefix}-api"
    project.run("init")
    project.run("apply")
    fmt = FORMATS[cloud.kind]
    first = serial_in(cloud, name, fmt)
    project.run("renew", name)
    second = serial_in(cloud, name, fmt)
    assert second != first
    result = project.json("revoke", name, "--reason", "keyCompromise", "--replace")
    assert int(result["revoked"]["serial"], 16) == second
    third = serial_in(cloud, name, fmt)
    assert third not in (first, second)
    # the revoked certificate fails a CRL check; its replacement passes
    project.run("crl", "issuing", "--pem", "--out", str(tmp_path / "crl.pem"))
    leaf, chain, _ = materials(cloud, cloud.read(name), fmt)
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    project.cert = name
    (tmp_path / "root.pem").write_bytes(root_of(project).public_bytes(serialization.Encoding.PEM))
    ok = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "-CRLfile",
            "crl.pem",
            "leaf.pem",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert project.json("apply")["summary"] == {"unchanged": 1}  # the revoked one is never pushed again
    project.run("retire", name)
    assert cloud.read(name) is None
    assert project.json("list")["certificates"][0]["state"] == "retired"


def test_removed_from_config_is_deleted(project, cloud, name_prefix):
    extra = f"""
[certificate.{name_prefix}-old]
profile = "tls-server"
common_name = "old.example.internal"
destinations = ["cloud"]
"""
    write_config(project, cloud, name_prefix, extra_certs=extra)
    project.run("init")
    project.run("apply")
    assert cloud.read(f"{name_prefix}-old")
    write_config(project, cloud, name_prefix)
    assert "certificate removed from config" in project.run("plan").stdout
    project.run("apply")
    assert cloud.read(f"{name_prefix}-old") is None and cloud.read(f"{name_prefix}-api")


@pytest.mark.parametrize("cloud", ["gcp"], indirect=True)
def test_no_change_apply_makes_no_writes_at_the_emulator(project, cloud, name_prefix):
    write_config(project, cloud, name_prefix)
    project.run("init")
    project.run("apply")
    before = cloud.write_calls()
    assert before > 0
    assert project.json("apply")["summary"] == {"unchanged": 1}
    assert cloud.write_calls() == before


def test_verify_by_reading_back_and_summary_per_destination(project, cloud, name_prefix):
    project.write(
        cloud.destination("cloud", FORMATS[cloud.kind], extra='verify_after_write = "read"')
        + f"""
[certificate.{name_prefix}-api]
profile = "tls-server"
common_name = "api.example.internal"
destinations = ["cloud"]

[certificate.{name_prefix}-web]
profile = "tls-server"
common_name = "web.example.internal"
destinations = ["cloud"]
"""
    )
    project.run("init")
    first = project.json("apply")
    assert first["ok"] and first["destinations"] == {"cloud": {"created": 2}}
    cloud.delete_outside(f"{name_prefix}-web")
    project.run("renew", f"{name_prefix}-api")
    second = project.json("apply")
    assert second["destinations"] == {"cloud": {"created": 1, "unchanged": 1}}
    text = project.run("apply").stdout
    assert "  cloud: 2 unchanged" in text
