"""The Azure Key Vault emulator's certificate routes, checked against the official certificates
OpenAPI description (tests/emulators/specs: the published certificates.json of
Azure/azure-rest-api-specs at commit 8464ba7893e0c947e24cae018a2f2fbed838fa8e, path
specification/keyvault/data-plane/Microsoft.KeyVault/stable/2025-07-01, unmodified) and driven by the
official azure-keyvault-certificates client, like the secrets routes in test_azure_emulator.py."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from jsonschema import Draft4Validator

from tests.emulators.azure_harness import running_azure_emulator
from tests.emulators.test_azure_emulator import _emulator_module, _local, _strict

SPEC_FILE = Path(__file__).parent / "specs" / "azure-keyvault-certificates-2025-07-01.json"
API = "api-version=2025-07-01"
NOT_EMULATED = {  # issuing through Key Vault, issuers, contacts, backup: certsync only imports
    ("/certificates/{certificate-name}/create", "post"),
    ("/certificates/{certificate-name}/pending", "get"),
    ("/certificates/{certificate-name}/pending", "patch"),
    ("/certificates/{certificate-name}/pending", "delete"),
    ("/certificates/{certificate-name}/pending/merge", "post"),
    ("/certificates/{certificate-name}/policy", "patch"),
    ("/certificates/{certificate-name}/backup", "post"),
    ("/certificates/restore", "post"),
    ("/certificates/contacts", "get"),
    ("/certificates/contacts", "put"),
    ("/certificates/contacts", "delete"),
    ("/certificates/issuers", "get"),
    ("/certificates/issuers/{issuer-name}", "get"),
    ("/certificates/issuers/{issuer-name}", "put"),
    ("/certificates/issuers/{issuer-name}", "patch"),
    ("/certificates/issuers/{issuer-name}", "delete"),
}


def uname(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def self_signed(key, cn="kv.example.internal"):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), False)
        .sign(key, hashes.SHA256())
    )


def pfx_of(key, cert, password=None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"kv", key, cert, None, encryption)


def pem_of(key, cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def spec():
    return json.loads(SPEC_FILE.read_text())


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with running_azure_emulator(tmp_path_factory.mktemp("azure-emulator-certs")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(emu):
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.certificates import CertificateClient

    with pytest.MonkeyPatch.context() as mp:
        for key, value in emu.env().items():
            mp.setenv(key, value)
        sdk = CertificateClient(
            emu.url,
            ManagedIdentityCredential(connection_verify=str(emu.ca)),
            verify_challenge_resource=False,
            connection_verify=str(emu.ca),
        )
        yield sdk
        sdk.close()


def test_every_served_certificate_operation_is_in_the_spec(spec):
    operations = [op for op in _emulator_module().OPERATIONS if op.api == "certificates"]
    for op in operations:
        assert spec["paths"][op.spec_path][op.method.lower()]["operationId"] == op.operation_id
    served = {(op.spec_path, op.method.lower()) for op in operations}
    in_spec = {(path, method) for path, item in spec["paths"].items() for method in item if method != "parameters"}
    assert served <= in_spec
    assert in_spec - served == NOT_EMULATED


@pytest.fixture(scope="module")
def conform(emu, spec):
    token = emu.token()
    definitions = _strict(copy.deepcopy(spec["definitions"]))
    for listing in ("CertificateListResult", "DeletedCertificateListResult"):  # the service ends with null
        definitions[listing]["properties"]["nextLink"]["type"] = ["string", "null"]
    by_id = {op["operationId"]: op for item in spec["paths"].values() for m, op in item.items() if m != "parameters"}

    def call(operation_id: str, method: str, path: str, body=None, expect: int = 200):
        status, headers, payload = emu.request(method, path, body=body, token=token)
        assert status == expect, (operation_id, status, payload)
        responses = by_id[operation_id]["responses"]
        described = responses.get(str(status)) or responses["default"]
        if 200 <= status < 300:
            assert str(status) in responses, f"{operation_id} answered {status}, the spec says {list(responses)}"
        if "schema" in described:
            schema = {"$ref": described["schema"]["$ref"], "definitions": definitions}
            errors = sorted(Draft4Validator(schema).iter_errors(payload), key=str)
            assert not errors, f"{operation_id} {status}: {[e.message for e in errors]}"
        else:
            assert payload is None
        return payload

    return call


def test_certificate_responses_match_the_spec_schemas(emu, conform):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key)
    names = [uname("conf"), uname("conf")]
    pfx = base64.b64encode(pfx_of(key, cert)).decode()
    first = conform(
        "ImportCertificate",
        "POST",
        f"/certificates/{names[0]}/import?{API}",
        {"value": pfx, "tags": {"managed-by": "certsync"}},
    )
    assert base64.b64decode(first["cer"]) == cert.public_bytes(serialization.Encoding.DER)
    version = first["id"].rsplit("/", 1)[1]
    pem = {
        "value": base64.b64encode(pem_of(key, cert)).decode(),
        "policy": {"secret_props": {"contentType": "application/x-pem-file"}},
    }
    assert (
        conform("ImportCertificate", "POST", f"/certificates/{names[0]}/import?{API}", pem)["contentType"]
        == "application/x-pem-file"
    )
    conform("ImportCertificate", "POST", f"/certificates/{names[1]}/import?{API}", {"value": pfx})

    assert conform("GetCertificate", "GET", f"/certificates/{names[0]}/?{API}")["id"] != first["id"]
    assert conform("GetCertificate", "GET", f"/certificates/{names[0]}/{version}?{API}")["id"] == first["id"]
    conform("GetCertificatePolicy", "GET", f"/certificates/{names[0]}/policy?{API}")
    assert conform("UpdateCertificate", "PATCH", f"/certificates/{names[0]}/{version}?{API}", {"tags": {"x": "y"}})[
        "tags"
    ] == {"x": "y"}
    page = conform("GetCertificates", "GET", f"/certificates?{API}&maxresults=1")
    assert len(page["value"]) == 1 and page["nextLink"]
    while page["nextLink"]:
        page = conform("GetCertificates", "GET", _local(page["nextLink"], emu))
    page = conform("GetCertificateVersions", "GET", f"/certificates/{names[0]}/versions?{API}&maxresults=1")
    last = conform("GetCertificateVersions", "GET", _local(page["nextLink"], emu))
    assert last["nextLink"] is None and len(page["value"] + last["value"]) == 2

    for name in names:
        deleted = conform("DeleteCertificate", "DELETE", f"/certificates/{name}?{API}")
        assert deleted["recoveryId"] == f"{emu.url}/deletedcertificates/{name}"
    conform("GetDeletedCertificate", "GET", f"/deletedcertificates/{names[0]}?{API}")
    page = conform("GetDeletedCertificates", "GET", f"/deletedcertificates?{API}&maxresults=1")
    while page["nextLink"]:
        page = conform("GetDeletedCertificates", "GET", _local(page["nextLink"], emu))
    conform("ImportCertificate", "POST", f"/certificates/{names[0]}/import?{API}", {"value": pfx}, expect=409)
    conform("RecoverDeletedCertificate", "POST", f"/deletedcertificates/{names[0]}/recover?{API}")
    conform("PurgeDeletedCertificate", "DELETE", f"/deletedcertificates/{names[1]}?{API}", expect=204)

    # errors: KeyVaultError bodies with the status the service uses
    conform("GetCertificate", "GET", f"/certificates/{uname('absent')}/?{API}", expect=404)
    conform("GetDeletedCertificate", "GET", f"/deletedcertificates/{names[1]}?{API}", expect=404)
    conform("PurgeDeletedCertificate", "DELETE", f"/deletedcertificates/{names[1]}?{API}", expect=404)
    conform("RecoverDeletedCertificate", "POST", f"/deletedcertificates/{names[1]}/recover?{API}", expect=404)
    conform("DeleteCertificate", "DELETE", f"/certificates/{names[1]}?{API}", expect=404)
    conform("ImportCertificate", "POST", f"/certificates/bad_name/import?{API}", {"value": pfx}, expect=400)
    conform("ImportCertificate", "POST", f"/certificates/{names[1]}/import?{API}", {"value": "not base64!"}, expect=400)
    only_cert = base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()
    conform(
        "ImportCertificate",
        "POST",
        f"/certificates/{names[1]}/import?{API}",
        {"value": only_cert, "policy": {"secret_props": {"contentType": "application/x-pem-file"}}},
        expect=400,
    )
    other = base64.b64encode(pem_of(ec.generate_private_key(ec.SECP256R1()), cert)).decode()  # key of another
    conform(
        "ImportCertificate",
        "POST",
        f"/certificates/{names[1]}/import?{API}",
        {"value": other, "policy": {"secret_props": {"contentType": "application/x-pem-file"}}},
        expect=400,
    )


def test_official_client_imports_pfx_and_pem_reads_back_and_lists(client):
    from azure.keyvault.certificates import CertificateContentType, CertificatePolicy

    name = uname("sdk")
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_cert = self_signed(rsa_key, "rsa.example.internal")
    first = client.import_certificate(
        name, pfx_of(rsa_key, rsa_cert, b"s3cret"), password="s3cret", tags={"managed-by": "certsync"}
    )
    assert bytes(first.cer) == rsa_cert.public_bytes(serialization.Encoding.DER)
    assert first.policy.key_type.value == "RSA" and first.policy.key_size == 2048
    assert first.properties.x509_thumbprint == rsa_cert.fingerprint(hashes.SHA1())

    ec_key = ec.generate_private_key(ec.SECP384R1())
    ec_cert = self_signed(ec_key, "ec.example.internal")
    second = client.import_certificate(
        name,
        pem_of(ec_key, ec_cert),
        tags={"managed-by": "certsync", "v": "2"},
        policy=CertificatePolicy(content_type=CertificateContentType.pem),
    )
    got = client.get_certificate(name)
    assert got.properties.version == second.properties.version != first.properties.version
    assert bytes(got.cer) == ec_cert.public_bytes(serialization.Encoding.DER)
    assert got.properties.tags == {"managed-by": "certsync", "v": "2"}
    assert got.policy.content_type == CertificateContentType.pem and got.policy.key_curve_name.value == "P-384"
    old = client.get_certificate_version(name, first.properties.version)
    assert bytes(old.cer) == rsa_cert.public_bytes(serialization.Encoding.DER)
    assert {p.version for p in client.list_properties_of_certificate_versions(name)} == {
        first.properties.version,
        second.properties.version,
    }
    assert name in {p.name for p in client.list_properties_of_certificates()}

    client.begin_delete_certificate(name).wait()
    assert client.get_deleted_certificate(name).recovery_id.endswith(f"/deletedcertificates/{name}")
    client.begin_recover_deleted_certificate(name).wait()
    assert client.get_certificate(name).properties.version == second.properties.version
    client.begin_delete_certificate(name).wait()
    client.purge_deleted_certificate(name)
