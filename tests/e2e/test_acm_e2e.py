"""certsync to AWS Certificate Manager (`provider = "aws-acm"`) on LocalStack, checked with boto3.

Import, re-import into the same ARN on renewal, a no-op decided from ListCertificates + tags
alone, delete on retire, and the config-time refusal of key types ACM's services do not take.
"""

import json

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.support.counting_proxy import CountingProxy

IMPORTS = {"ImportCertificate", "AddTagsToCertificate", "DeleteCertificate", "RemoveTagsFromCertificate"}


def config(name_prefix, proxy, key="ec-p256", extra=""):
    return f"""
[destination.acm]
provider = "aws-acm"
region = "us-east-1"
endpoint_url = "{proxy.url}"

[certificate.{name_prefix}-lb]
profile = "tls-server"
common_name = "lb.example.internal"
dns_names = ["lb.example.internal"]
key = "{key}"
destinations = ["acm", {{ to = "acm", name = "{name_prefix}-cdn" }}]
{extra}"""


@pytest.fixture
def acm(aws_endpoint):
    return boto3.client(
        "acm",
        endpoint_url=aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def self_signed(cn):
    """(certificate PEM, PKCS#8 key PEM) of a throwaway self-signed EC P-256 certificate."""
    import datetime

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def by_name(acm, name):
    """{Name tag: (arn, tags)} of the imported certificates whose Name tag is `name`."""
    found = []
    for page in acm.get_paginator("list_certificates").paginate(
        Includes={"keyTypes": ["RSA_2048", "EC_prime256v1", "EC_secp384r1"]}
    ):
        for summary in page["CertificateSummaryList"]:
            tags = {
                t["Key"]: t["Value"]
                for t in acm.list_tags_for_certificate(CertificateArn=summary["CertificateArn"]).get("Tags", [])
            }
            if tags.get("Name") == name:
                found.append((summary["CertificateArn"], tags))
    return found


def test_import_then_noop_from_the_listing_then_renewal_keeps_the_arn_then_retire(project, aws_proxy, acm, name_prefix):
    cert = f"{name_prefix}-lb"
    project.write(config(name_prefix, aws_proxy))
    project.run("init")
    report = project.json("apply")
    assert report["ok"] and report["summary"] == {"issue": 1, "push": 2}, report

    [(arn, tags)] = by_name(acm, cert)
    assert tags["managed-by"] == "certsync" and tags["certsync-cert"] == cert and len(tags["certsync-fp"]) == 32
    [(other_arn, _)] = by_name(acm, f"{name_prefix}-cdn")
    assert other_arn != arn
    got = acm.get_certificate(CertificateArn=arn)
    leaf = x509.load_pem_x509_certificate(got["Certificate"].encode())
    assert leaf.subject.rfc4514_string() == "CN=lb.example.internal"
    chain = x509.load_pem_x509_certificates(got["CertificateChain"].encode())
    assert [c.subject.rfc4514_string() for c in chain][0].startswith("CN=E2E Issuing CA")
    assert acm.describe_certificate(CertificateArn=arn)["Certificate"]["KeyAlgorithm"] == "EC-prime256v1"

    # no change: decided from ListCertificates + ListTagsForCertificate, no body read, no write
    aws_proxy.reset()
    plan = project.json("plan")
    assert plan["actions"] and {a["action"] for a in plan["actions"]} == {"unchanged"}, plan
    again = project.json("apply")
    assert again["ok"] and again["summary"] == {"unchanged": 2}, again
    assert set(aws_proxy.calls) <= {"ListCertificates", "ListTagsForCertificate"}, aws_proxy.calls
    assert not IMPORTS & set(aws_proxy.calls)

    # renewal: re-imported into the same ARN, with the new certificate and fingerprint
    aws_proxy.reset()
    project.run("renew", cert)
    [(renewed_arn, renewed_tags)] = by_name(acm, cert)
    assert renewed_arn == arn
    assert renewed_tags["certsync-fp"] != tags["certsync-fp"]
    new_leaf = x509.load_pem_x509_certificate(acm.get_certificate(CertificateArn=arn)["Certificate"].encode())
    assert new_leaf.serial_number != leaf.serial_number
    assert new_leaf.fingerprint(hashes.SHA256()) != leaf.fingerprint(hashes.SHA256())
    # one re-import per copy, each read back (verify after write)
    assert aws_proxy.calls["ImportCertificate"] == 2 and aws_proxy.calls["GetCertificate"] == 2, aws_proxy.calls

    project.run("retire", cert)
    assert by_name(acm, cert) == [] and by_name(acm, f"{name_prefix}-cdn") == []


def test_a_foreign_certificate_with_the_name_is_not_overwritten(project, aws_proxy, acm, name_prefix):
    project.write(config(name_prefix, aws_proxy))
    project.run("init")
    # a certificate someone imported by hand and named like ours (no managed-by tag)
    leaf, key = self_signed("lb.example.internal")
    foreign = acm.import_certificate(Certificate=leaf, PrivateKey=key)["CertificateArn"]
    acm.add_tags_to_certificate(CertificateArn=foreign, Tags=[{"Key": "Name", "Value": f"{name_prefix}-lb"}])
    report = project.json("apply", expect=1)
    failed = [r for r in report["results"] if r["status"] == "failed"]
    assert len(failed) == 1 and "not managed by certsync" in failed[0]["error"], report
    assert acm.get_certificate(CertificateArn=foreign)["Certificate"].encode() == leaf
    acm.delete_certificate(CertificateArn=foreign)


@pytest.mark.parametrize("key", ["ed25519", "rsa-4096", "rsa-3072"])
def test_key_types_acm_does_not_take_are_refused_at_config_time(project, aws_proxy, name_prefix, key):
    project.write(config(name_prefix, aws_proxy, key=key))
    result = project.run("plan", expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"certificate.{name_prefix}-lb.key" in lines[0] and "rsa-2048, ec-p256, ec-p384" in lines[0]
    assert not aws_proxy.calls


def test_a_profile_key_acm_does_not_take_is_refused_naming_the_destination(project, aws_proxy, name_prefix):
    project.write(config(name_prefix, aws_proxy).replace('key = "ec-p256"\n', ""))
    text = (
        (project.path / "sync.toml")
        .read_text()
        .replace('renew_before = "30d"\n', 'renew_before = "30d"\nkey = "ed25519"\n', 1)
    )
    (project.path / "sync.toml").write_text(text)
    result = project.run("plan", expect=2)
    (line,) = result.stderr.strip().splitlines()
    assert f"certificate.{name_prefix}-lb.destinations[0]" in line and "profile 'tls-server'" in line, line


class InUseProxy(CountingProxy):
    """LocalStack's free edition has no ELB/CloudFront to attach a certificate to, so this proxy
    answers DescribeCertificate itself with the certificate in use by a load balancer, the way
    ACM describes an attached one; every other call reaches LocalStack."""

    LB = "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/50dc6c495c0c9188"

    def observe(self, name, body):
        if name == "DescribeCertificate":
            self.arn = json.loads(body)["CertificateArn"]

    def answer(self, name):
        if name != "DescribeCertificate":
            return None
        body = {"Certificate": {"CertificateArn": self.arn, "Type": "IMPORTED", "InUseBy": [self.LB]}}
        return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(body).encode()


def test_delete_is_refused_while_the_certificate_is_in_use_naming_the_users(project, aws_endpoint, acm, name_prefix):
    cert = f"{name_prefix}-lb"
    with InUseProxy(aws_endpoint) as proxy:
        project.write(config(name_prefix, proxy))
        project.run("init")
        project.run("apply")
        [(arn, _)] = by_name(acm, cert)
        result = project.run("retire", cert, expect=1)
        assert InUseProxy.LB in result.stdout + result.stderr and "in use by" in result.stdout + result.stderr
        assert "DeleteCertificate" not in proxy.calls
        assert by_name(acm, cert) == [(arn, by_name(acm, cert)[0][1])]  # still there, same ARN
    with CountingProxy(aws_endpoint) as plain:  # detached: the retire goes through
        project.write(config(name_prefix, plain))
        project.run("retire", cert)
        assert by_name(acm, cert) == []
