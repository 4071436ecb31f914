"""Config rules of the aws-acm destination and of Key Vault certificate objects (no cloud needed)."""

import pytest

from providers import aws_acm
from providers.registry import descriptor
from sync import config
from sync.reconcile import pacing

BASE = {"ca": {"root": {"subject": "CN=Root"}}, "profile": {"p": {"ca": "root", "key": "ec-p256"}}}


def load(destination, cert=None, profile=None):
    doc = {**BASE, "destination": {"d": destination}}
    if profile:
        doc["profile"] = {"p": {"ca": "root", **profile}}
    doc["certificate"] = {"api": {"profile": "p", "common_name": "api.example", "destinations": ["d"], **(cert or {})}}
    return config.from_dict(doc)


def test_acm_takes_pem_only_and_its_key_types():
    dest = load({"provider": "aws-acm", "region": "eu-west-1"}).destination["d"]
    assert dest.format == "pem" and descriptor("aws-acm").key_types == ("rsa-2048", "ec-p256", "ec-p384")
    with pytest.raises(config.ConfigError, match=r"destination\.d\.format"):
        load({"provider": "aws-acm", "format": "json"})
    for key in ("rsa-2048", "ec-p384"):
        load({"provider": "aws-acm"}, cert={"key": key})
    with pytest.raises(config.ConfigError, match=r"certificate\.api\.key: key 'rsa-4096' cannot go to aws-acm"):
        load({"provider": "aws-acm"}, cert={"key": "rsa-4096"})
    with pytest.raises(config.ConfigError, match=r"certificate\.api\.destinations\[0\]: .*profile 'p'"):
        load({"provider": "aws-acm"}, profile={"key": "ed25519"})
    # a deploy_to profile whose allowed keys ACM cannot take
    with pytest.raises(config.ConfigError, match=r"profile\.p\.deploy_to\[0\]"):
        config.from_dict(
            {
                **BASE,
                "destination": {"d": {"provider": "aws-acm"}},
                "profile": {"p": {"ca": "root", "deploy_to": ["d"], "allowed_keys": ["ec-p256", "ed25519"]}},
            }
        )


def test_acm_is_paced_under_its_import_quota():
    dest = load({"provider": "aws-acm", "region": "eu-west-1"}).destination["d"]
    quota = pacing.quota_of(dest)
    assert quota.calls_per_second == pytest.approx(0.95) and quota.domain == "aws-acm::eu-west-1"
    assert pacing.read_quota_of(dest).reads_per_second == pytest.approx(9.5)


def test_acm_payload_checks_before_any_call():
    provider = aws_acm.AcmProvider(client=None, destination="d")
    with pytest.raises(Exception, match="must be PEM"):
        aws_acm._parts("x", "not a pem")
    with pytest.raises(Exception, match="invalid aws-acm secret name"):
        provider.get("has space")


def test_keyvault_certificate_objects_default_to_pkcs12_and_refuse_json():
    base = {"provider": "azure", "vault_url": "https://v.vault.azure.net"}
    assert load({**base, "object": "certificate"}).destination["d"].format == "pkcs12"
    assert load({**base, "object": "certificate", "format": "pem"}).destination["d"].format == "pem"
    assert load(base).destination["d"].object == "secret" and load(base).destination["d"].format == "json"
    with pytest.raises(config.ConfigError, match=r"destination\.d\.object: .*pkcs12"):
        load({**base, "object": "certificate", "format": "json"})
