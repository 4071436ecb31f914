"""certsync to Azure Key Vault certificate objects (`object = "certificate"`) on our Key Vault
emulator, read back with the official azure-keyvault-certificates client: PFX and PEM imports, a
new version on renewal, ownership tags, a no-op decided from the certificates listing, soft delete
and purge on retire, and the config-time refusal of a format Key Vault cannot import."""

import pytest
from cryptography import x509

from tests.e2e.clouds import Cloud


@pytest.fixture
def cloud(emulators, project):
    cloud = Cloud("azure", emulators.entry("azure"))
    project.env.update(cloud.env())
    return cloud


@pytest.fixture
def certificates(cloud):
    import os

    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.certificates import CertificateClient

    os.environ.update({k: v for k, v in cloud.env().items() if k != "REQUESTS_CA_BUNDLE"})
    ca = cloud.entry["ca_bundle"]
    client = CertificateClient(
        cloud.entry["endpoint"],
        ManagedIdentityCredential(connection_verify=ca),
        verify_challenge_resource=False,
        connection_verify=ca,
    )
    yield client
    client.close()


def write(project, cloud, name_prefix, fmt="", extra=""):
    block = cloud.destination("kv", "json").replace('format = "json"\n', fmt)
    project.write(
        block
        + f"""object = "certificate"
purge_on_delete = true
{extra}
[certificate.{name_prefix}-web]
profile = "tls-server"
common_name = "web.example.internal"
dns_names = ["web.example.internal"]
destinations = ["kv"]
"""
    )


def stats(cloud):
    import json
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=cloud.entry["ca_bundle"])
    with urllib.request.urlopen(f"{cloud.entry['endpoint']}/_emulator/stats", context=context) as resp:
        return json.load(resp)


@pytest.mark.parametrize(
    "fmt, content_type", [("", "application/x-pkcs12"), ('format = "pem"\n', "application/x-pem-file")]
)
def test_import_then_noop_then_new_version_then_retire(project, cloud, certificates, name_prefix, fmt, content_type):
    from azure.core.exceptions import ResourceNotFoundError

    name = f"{name_prefix}-web"
    write(project, cloud, name_prefix, fmt)
    project.run("init")
    report = project.json("apply")
    assert report["ok"] and report["summary"] == {"issue": 1, "push": 1}, report

    got = certificates.get_certificate(name)
    leaf = x509.load_der_x509_certificate(bytes(got.cer))
    assert leaf.subject.rfc4514_string() == "CN=web.example.internal"
    assert got.policy.content_type.value == content_type
    tags = got.properties.tags
    assert tags["managed-by"] == "certsync" and tags["certsync-cert"] == name and len(tags["certsync-fp"]) == 32
    exported = project.run("export", name, "--format", "pem").stdout
    assert x509.load_pem_x509_certificates(exported.encode())[0] == leaf

    # other tests share the emulator: count the calls that name this certificate, and the listings
    before = stats(cloud)
    again = project.json("apply")
    assert again["ok"] and again["summary"] == {"unchanged": 1}, again
    after = stats(cloud)
    assert after["calls_by_secret"].get(name.lower()) == before["calls_by_secret"].get(name.lower())  # none
    assert after["operations"]["GetCertificates"]["total"] > before["operations"]["GetCertificates"]["total"]

    project.run("renew", name)
    renewed = certificates.get_certificate(name)
    assert renewed.properties.version != got.properties.version
    assert x509.load_der_x509_certificate(bytes(renewed.cer)).serial_number != leaf.serial_number
    assert renewed.properties.tags["certsync-fp"] != tags["certsync-fp"]
    assert len(list(certificates.list_properties_of_certificate_versions(name))) == 2

    project.run("retire", name)
    with pytest.raises(ResourceNotFoundError):
        certificates.get_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        certificates.get_deleted_certificate(name)  # purge_on_delete: nothing left to recover


def test_a_soft_deleted_certificate_of_ours_is_recovered_then_written(project, cloud, certificates, name_prefix):
    name = f"{name_prefix}-web"
    write(project, cloud, name_prefix)
    toml = project.path / "sync.toml"
    toml.write_text(toml.read_text().replace("purge_on_delete = true\n", ""))
    project.run("init")
    project.run("apply")
    first = certificates.get_certificate(name).properties.version
    certificates.begin_delete_certificate(name).wait()  # someone deletes it (soft delete)
    project.run("renew", name)  # recovered (ours), then a new version
    current = certificates.get_certificate(name)
    assert current.properties.version != first
    assert len(list(certificates.list_properties_of_certificate_versions(name))) == 2
    certificates.begin_delete_certificate(name).wait()
    certificates.purge_deleted_certificate(name)


def test_a_foreign_certificate_is_not_overwritten(project, cloud, certificates, name_prefix, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    from tests.e2e.test_acm_e2e import self_signed

    name = f"{name_prefix}-web"
    leaf_pem, key_pem = self_signed("web.example.internal")
    pfx = pkcs12.serialize_key_and_certificates(
        b"theirs",
        serialization.load_pem_private_key(key_pem, None),
        x509.load_pem_x509_certificate(leaf_pem),
        None,
        serialization.NoEncryption(),
    )
    theirs = certificates.import_certificate(name, pfx, tags={"owner": "someone-else"})
    write(project, cloud, name_prefix)
    project.run("init")
    report = project.json("apply", expect=1)
    failed = [r for r in report["results"] if r["status"] == "failed"]
    assert len(failed) == 1 and "not managed by certsync" in failed[0]["error"], report
    assert certificates.get_certificate(name).properties.version == theirs.properties.version


def test_a_format_key_vault_cannot_import_is_refused_at_config_time(project, cloud, name_prefix):
    write(project, cloud, name_prefix, 'format = "json"\n')
    result = project.run("plan", expect=2)
    (line,) = result.stderr.strip().splitlines()
    assert "destination.kv.object" in line and "pkcs12" in line, line
