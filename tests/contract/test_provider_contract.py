"""One contract for every provider adapter, run against real emulators (tests/contract/conftest.py).

Every test is parametrized by provider kit (aws, azure, gcp, gcp-rest, memory) through the
`provider_factory` fixture; where a provider legitimately differs, the case asserts what the kit's
capability flags say instead of skipping. Names are unique per test (`name_prefix`), so the suite
runs in parallel on shared, never-reset emulators.
"""

from __future__ import annotations

import hashlib
import math

import pytest

from providers.base import CERT_LABEL, MANAGED_BY, MANAGED_BY_VALUE, ownership_labels
from sync.errors import NameError_, NotOwned, PayloadTooLarge, ProviderError, UsageError


def labels_for(payload: str | bytes, cert: str = "api") -> dict[str, str]:
    data = payload.encode() if isinstance(payload, str) else payload
    return ownership_labels(cert, hashlib.sha256(data).hexdigest()[:32])


def pem_chain(size: int) -> str:
    """Certificate-chain-shaped text of exactly `size` bytes."""
    body = "MIIB" + "A" * (size - 60)
    text = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    return text[:size]


def push(provider, name: str, payload: str | bytes, content_type: str = "application/json", **labels: str):
    return provider.put(name, payload, content_type=content_type, labels={**labels_for(payload), **labels})


# --- get / put ----------------------------------------------------------------------------------


def test_get_absent_returns_none(provider, name_prefix):
    assert provider.get(f"{name_prefix}-absent") is None


def test_create_then_get_returns_value_and_labels(provider, name_prefix):
    name = f"{name_prefix}-create"
    written = push(provider, name, '{"certificate": "v1"}')
    assert written.name == name and written.version

    got = provider.get(name)
    assert got.value == '{"certificate": "v1"}'
    assert got.version == written.version
    assert got.managed and got.labels == labels_for('{"certificate": "v1"}')


def test_update_makes_a_new_version(provider, name_prefix):
    name = f"{name_prefix}-update"
    first = push(provider, name, "v1")
    second = push(provider, name, "v2")
    assert second.version and second.version != first.version

    got = provider.get(name)
    assert got.value == "v2" and got.version == second.version
    assert got.fingerprint == labels_for("v2")["certsync-fp"]


def test_unchanged_push_still_works(provider, name_prefix):
    name = f"{name_prefix}-same"
    push(provider, name, "same")
    again = push(provider, name, "same")
    got = provider.get(name)
    assert got.value == "same" and got.version == again.version


def test_labels_round_trip_and_follow_updates(provider, name_prefix):
    name = f"{name_prefix}-labels"
    push(provider, name, "v1", **{"certsync-cert": "web"})
    assert provider.get(name).labels == {**labels_for("v1", "web")}

    push(provider, name, "v2", **{"certsync-cert": "web"})
    assert provider.get(name).labels == {**labels_for("v2", "web")}


def test_content_type_round_trips_where_the_service_stores_one(provider_factory, name_prefix):
    kit = provider_factory
    provider = kit()
    for i, content_type in enumerate(("application/x-pkcs12", "application/x-pem-file")):
        name = f"{name_prefix}-ct{i}"
        push(provider, name, f"payload {i}", content_type=content_type)
        expected = content_type if kit.stores_content_type else None
        assert provider.get(name).content_type == expected
        listed = {s.name: s for s in provider.list_managed()}
        assert listed[name].content_type == expected


def test_binary_payload_round_trips_or_is_refused_before_any_call(provider_factory, name_prefix):
    payload = bytes(range(256)) * 4  # not UTF-8
    if not provider_factory.binary:  # text-only store (Key Vault)
        with pytest.raises(ProviderError, match="binary"):
            push(provider_factory.offline(), f"{name_prefix}-bin", payload)
        return
    provider = provider_factory()
    push(provider, f"{name_prefix}-bin", payload)
    assert provider.get(f"{name_prefix}-bin").value == payload


def test_certificate_chain_sized_payload_round_trips(provider, name_prefix):
    payload = pem_chain(20 * 1024)
    push(provider, f"{name_prefix}-chain", payload)
    assert provider.get(f"{name_prefix}-chain").value == payload


# --- listing ------------------------------------------------------------------------------------


def test_list_managed_pages_and_lists_only_managed(provider_factory, name_prefix):
    kit = provider_factory
    provider = kit(page_size=2)
    written = {f"{name_prefix}-list-{i}": push(provider, f"{name_prefix}-list-{i}", f"v{i}") for i in range(5)}
    kit.create_foreign(f"{name_prefix}-list-foreign", "not ours")
    calls = kit.list_calls(provider) if kit.server_side_paging else None
    before = calls() if calls else 0

    everything = list(provider.list_managed())
    listed = {s.name: s for s in everything if s.name.startswith(name_prefix)}

    assert set(listed) == set(written)  # 5 with a page size of 2: every page was followed
    assert all(s.managed for s in everything)  # foreign ones are dropped, even unfiltered
    if kit.server_side_paging:
        # Counted at the emulator (or the SDK's wire hook), not by the adapter: the page size
        # reached the service and the adapter followed every page.
        assert calls() - before >= math.ceil(len(everything) / 2) >= 3
    for name, secret in listed.items():
        assert secret.labels == labels_for(f"v{name[-1]}")
        if kit.lists_versions:
            assert secret.version == written[name].version
        else:  # the listing carries no version id
            assert secret.version is None and written[name].version
        assert secret.updated is not None
        assert secret.value is None


# --- delete -------------------------------------------------------------------------------------


def test_delete_then_get_none_and_delete_again_is_fine(provider, provider_factory, name_prefix):
    name = f"{name_prefix}-delete"
    push(provider, name, "v1")
    provider.delete(name, cert="api")
    assert provider.get(name) is None
    assert provider_factory.raw_value(name) is None
    assert not provider_factory.pending_deletion(name)  # no recovery window asked: gone
    provider.delete(name, cert="api")
    provider.delete(f"{name_prefix}-never-existed", cert="api")


def test_delete_then_recreate_same_name(provider, name_prefix):
    name = f"{name_prefix}-recreate"
    push(provider, name, "v1")
    provider.delete(name, cert="api")
    push(provider, name, "v2")
    assert provider.get(name).value == "v2"


def test_soft_delete_then_recreate_and_purge(provider_factory, name_prefix):
    """Where the service soft-deletes (AWS recovery window, Key Vault soft delete), the name
    lingers as deleted and a push brings it back; elsewhere (Google) delete is final."""
    kit = provider_factory
    provider = kit(soft_delete=True)
    name = f"{name_prefix}-soft"
    push(provider, name, "v1")
    provider.delete(name, cert="api")
    assert provider.get(name) is None
    assert kit.raw_value(name) is None
    assert kit.pending_deletion(name) is kit.supports_soft_delete
    provider.delete(name, cert="api")  # already deleted: no error
    assert kit.pending_deletion(name) is kit.supports_soft_delete

    push(provider, name, "v2")  # restores/recovers, then writes
    assert provider.get(name).value == "v2"
    assert not kit.pending_deletion(name)

    provider.delete(name, cert="api", purge=True)
    assert provider.get(name) is None
    assert not kit.pending_deletion(name)  # purged: nothing to recover
    push(provider, name, "v3")  # the name is free again
    assert provider.get(name).value == "v3"


def test_purge_also_removes_an_already_deleted_secret(provider_factory, name_prefix):
    kit = provider_factory
    provider = kit(soft_delete=True)
    name = f"{name_prefix}-purge"
    push(provider, name, "v1")
    provider.delete(name, cert="api")
    assert kit.pending_deletion(name) is kit.supports_soft_delete
    provider.delete(name, cert="api", purge=True)  # the live secret is already gone
    assert not kit.pending_deletion(name)
    assert kit.raw_value(name) is None


# --- checks before any call ---------------------------------------------------------------------


def test_payload_over_the_limit_is_refused_before_any_call(provider_factory, name_prefix):
    offline = provider_factory.offline()
    with pytest.raises(PayloadTooLarge):
        push(offline, f"{name_prefix}-big", "x" * (provider_factory.max_payload + 1))
    with pytest.raises(PayloadTooLarge):
        push(offline, f"{name_prefix}-big", b"x" * (provider_factory.max_payload + 1))


@pytest.mark.parametrize("bad_name", ["", "has space", "semi;colon", "hash#", "ünïcode", "tab\tname", "x" * 600])
def test_invalid_names_are_rejected_before_any_call(provider_factory, bad_name):
    offline = provider_factory.offline()
    with pytest.raises(NameError_, match="invalid .* secret name"):
        push(offline, bad_name, "v1")
    with pytest.raises(NameError_):
        offline.delete(bad_name, cert="api")
    with pytest.raises(NameError_):
        offline.get(bad_name)


# --- ownership ----------------------------------------------------------------------------------


def test_foreign_secret_is_never_overwritten_nor_deleted(provider, provider_factory, name_prefix):
    name = f"{name_prefix}-foreign"
    provider_factory.create_foreign(name, "theirs")

    with pytest.raises(NotOwned, match=name):
        push(provider, name, "ours")
    with pytest.raises(NotOwned, match=name):
        provider.delete(name, cert="api")
    with pytest.raises(NotOwned):
        provider.delete(name, cert="api", purge=True)

    assert provider_factory.raw_value(name) == "theirs"
    assert not provider.get(name).managed
    assert name not in {s.name for s in provider.list_managed()}


def test_foreign_secret_is_adopted_when_adopt_is_on(provider_factory, name_prefix):
    kit = provider_factory
    name = f"{name_prefix}-adopt"
    kit.create_foreign(name, "theirs")
    adopting = kit(adopt=True)

    push(adopting, name, "ours")
    got = adopting.get(name)
    assert got.value == "ours" and got.labels[MANAGED_BY] == MANAGED_BY_VALUE
    # The foreign secret's own label stays, except where tags belong to a version (Key Vault).
    assert ("owner" in got.labels) is kit.keeps_foreign_labels
    assert name in {s.name for s in adopting.list_managed()}

    kit().delete(name, cert="api")  # certsync's now: no adopt needed
    assert kit.raw_value(name) is None


def test_deleted_foreign_secret_is_neither_restored_nor_purged(provider_factory, name_prefix):
    """A foreign secret deleted recoverably (AWS recovery window, Key Vault soft delete) still
    belongs to someone else: a push does not restore or purge it to take the name, nor does a
    delete with purge. Where delete is final (Google), the name is simply free."""
    kit = provider_factory
    name = f"{name_prefix}-fdel"
    kit.create_foreign(name, "theirs")
    kit.delete_foreign(name)
    provider = kit(soft_delete=True)
    if not kit.supports_soft_delete:
        push(provider, name, "ours")
        assert provider.get(name).value == "ours"
        return
    with pytest.raises(NotOwned, match=name):
        push(provider, name, "ours")
    with pytest.raises(NotOwned, match=name):
        provider.delete(name, cert="api", purge=True)
    assert kit.pending_deletion(name)  # still there, untouched
    assert kit.raw_value(name) is None


def test_secret_of_another_certificate_is_never_overwritten_nor_deleted(provider_factory, name_prefix):
    """Ownership is per certificate: a secret certsync wrote for certificate `cert-b` is not
    overwritten by a push of `cert-a` (which could leave it holding another key, or none) nor
    deleted when `cert-a` is retired; `cert-b` itself still updates and deletes it."""
    kit = provider_factory
    provider = kit()
    name = f"{name_prefix}-other"
    push(provider, name, "b1", **{CERT_LABEL: "cert-b"})

    with pytest.raises(NotOwned, match="cert-b") as refused:
        push(provider, name, "a1", **{CERT_LABEL: "cert-a"})
    assert name in str(refused.value) and "cert-a" in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(NotOwned, match="cert-b"):
        provider.delete(name, cert="cert-a")
    with pytest.raises(NotOwned, match="cert-b"):
        provider.delete(name, cert="cert-a", purge=True)
    assert kit.raw_value(name) == "b1"
    assert provider.get(name).labels[CERT_LABEL] == "cert-b"

    push(provider, name, "b2", **{CERT_LABEL: "cert-b"})
    assert kit.raw_value(name) == "b2"
    provider.delete(name, cert="cert-b")
    assert kit.raw_value(name) is None


def test_secret_of_another_certificate_is_taken_over_only_with_adopt(provider_factory, name_prefix):
    kit = provider_factory
    name = f"{name_prefix}-retag"
    push(kit(), name, "b1", **{CERT_LABEL: "cert-b"})

    push(kit(adopt=True), name, "a1", **{CERT_LABEL: "cert-a"})
    got = kit().get(name)
    assert got.value == "a1" and got.labels[CERT_LABEL] == "cert-a"
    with pytest.raises(NotOwned, match="cert-a"):
        kit().delete(name, cert="cert-b")  # now cert-a's, not cert-b's
    kit().delete(name, cert="cert-a")
    assert kit.raw_value(name) is None


def test_deleted_secret_of_another_certificate_is_neither_restored_nor_purged(provider_factory, name_prefix):
    """A soft-deleted secret of `cert-b` (AWS recovery window, Key Vault) is not restored to take
    its name for `cert-a`, nor purged by `cert-a`'s delete. Where delete is final, the name is free."""
    kit = provider_factory
    provider = kit(soft_delete=True)
    name = f"{name_prefix}-odel"
    push(provider, name, "b1", **{CERT_LABEL: "cert-b"})
    provider.delete(name, cert="cert-b")
    if not kit.supports_soft_delete:
        push(provider, name, "a1", **{CERT_LABEL: "cert-a"})
        assert provider.get(name).value == "a1"
        return
    with pytest.raises(NotOwned, match="cert-b"):
        push(provider, name, "a1", **{CERT_LABEL: "cert-a"})
    with pytest.raises(NotOwned, match="cert-b"):
        provider.delete(name, cert="cert-a", purge=True)
    assert kit.pending_deletion(name)  # still there, untouched


def test_a_put_must_name_its_certificate(provider_factory, name_prefix):
    """Labels without certsync-cert are refused before any call: ownership needs a certificate."""
    offline = provider_factory.offline()
    with pytest.raises(UsageError, match=CERT_LABEL):
        offline.put(
            f"{name_prefix}-nocert",
            "v",
            content_type="text/plain",
            labels={MANAGED_BY: MANAGED_BY_VALUE, "certsync-fp": "0" * 32},
        )


# --- errors name the destination ----------------------------------------------------------------


def test_errors_name_the_destination(provider_factory, name_prefix):
    """Kits build adapters from a destination named "contract": a refusal by the adapter and a
    check before any call both say which destination they are about."""
    kit = provider_factory
    name = f"{name_prefix}-named"
    kit.create_foreign(name, "theirs")
    with pytest.raises(NotOwned) as refused:
        push(kit(), name, "ours")
    assert str(refused.value).startswith("destination 'contract': ") and name in str(refused.value)
    assert refused.value.destination == "contract"
    with pytest.raises(NameError_) as invalid:
        kit.offline().get("bad name")
    assert str(invalid.value).startswith("destination 'contract': invalid ")


# --- throttling --------------------------------------------------------------------------------


def test_throttling_is_answered_by_the_sdk_retry(provider_factory, throttle_rig, name_prefix):
    """A throttled call becomes a success through the SDK's own retry (the adapters have no
    retry loops). The throttling is counted where it is answered: emulator stats or proxy."""
    kit = provider_factory
    name, payload = f"{name_prefix}-throttled", pem_chain(2048)
    if not kit.quotas:  # drongo has no quotas: the same writes simply go through
        assert kit.throttling is None
        provider = kit()
        push(provider, name, payload)
        assert provider.get(name).value == payload
        return

    rig = throttle_rig(kit)
    before = rig.throttled()
    with pytest.MonkeyPatch.context() as env:
        for key, value in rig.env.items():
            env.setenv(key, value)
        provider = rig.make()
        written = push(provider, name, payload)
        assert rig.throttled() - before >= 1  # the put itself was throttled
        got = provider.get(name)
    assert got.value == payload and got.version == written.version and got.managed


# --- AWS adapter specifics: fewest calls, settings it must not touch, error messages ------------

aws_only = pytest.mark.parametrize("provider_factory", ["aws"], indirect=True)


def record_calls(provider) -> list[str]:
    """Names of the API operations the adapter's (real) boto3 client sends from now on."""
    calls: list[str] = []
    provider.client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    return calls


@aws_only
def test_aws_put_makes_the_fewest_calls(provider_factory, name_prefix):
    provider = provider_factory(soft_delete=True)
    calls = record_calls(provider)
    name = f"{name_prefix}-calls"

    push(provider, name, "v1")
    assert calls == ["DescribeSecret", "CreateSecret"]
    calls.clear()
    provider.put(name, "v1b", content_type="application/json", labels=labels_for("v1"))
    assert calls == ["DescribeSecret", "PutSecretValue"]  # same tags: no TagResource
    calls.clear()
    push(provider, name, "v2")
    assert calls == ["DescribeSecret", "PutSecretValue", "TagResource"]
    calls.clear()
    list(provider.list_managed())
    assert set(calls) == {"ListSecrets"}  # listing reads no values
    calls.clear()

    provider.delete(name, cert="api")  # recovery window of 7 days
    push(provider, name, "v3")
    assert calls == [
        "DescribeSecret",
        "DeleteSecret",
        "DescribeSecret",
        "RestoreSecret",
        "PutSecretValue",
        "TagResource",
    ]


@aws_only
def test_aws_put_keeps_description_and_foreign_tags(provider_factory, name_prefix):
    provider = provider_factory()
    name = f"{name_prefix}-keep"
    push(provider, name, "v1")
    provider.client.update_secret(SecretId=name, Description="set by the platform team")
    provider.client.tag_resource(SecretId=name, Tags=[{"Key": "team", "Value": "payments"}])

    written = push(provider, name, "v2")

    described = provider.client.describe_secret(SecretId=name)
    assert described["Description"] == "set by the platform team"
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags == {**labels_for("v2"), "team": "payments"} == dict(written.labels)


@aws_only
def test_aws_errors_are_one_line_and_name_the_secret_and_code(provider_factory, name_prefix):
    import boto3
    from botocore.config import Config

    from providers.aws import AwsProvider, _one_line
    from sync.errors import ProviderError

    offline = AwsProvider(
        boto3.session.Session().client(
            "secretsmanager",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",
            config=Config(retries={"mode": "standard", "max_attempts": 1}),
        )
    )
    with pytest.raises(ProviderError, match=rf"DescribeSecret on '{name_prefix}-x' failed"):
        offline.get(f"{name_prefix}-x")

    provider = provider_factory(soft_delete=True)
    name = f"{name_prefix}-err"
    push(provider, name, "v1")
    provider.delete(name, cert="api")
    with pytest.raises(ProviderError) as caught:
        with provider._errors("GetSecretValue", name):
            provider.client.get_secret_value(SecretId=name)  # pending deletion: refused
    message = str(caught.value)
    assert message.startswith(f"AWS Secrets Manager GetSecretValue on {name!r} failed: InvalidRequestException: ")
    assert "\n" not in message

    key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
    assert _one_line(f"Value '{key}' at 'secretString'\nfailed", key) == "Value '<payload>' at 'secretString' failed"


@aws_only
def test_aws_errors_name_the_destination_from_the_config(provider_factory, emulators, name_prefix):
    """The destination's NAME is set when the config is loaded and reaches the adapter built
    from it: a real AWS refusal (LocalStack) and a secret certsync does not own both name it."""
    from sync.config import from_dict
    from sync.reconcile.destinations import Providers

    config = from_dict(
        {
            "destination": {
                "aws-prod": {
                    "provider": "aws",
                    "region": "us-east-1",
                    "endpoint_url": emulators.entry("aws")["endpoint"],
                }
            }
        }
    )
    assert config.destination["aws-prod"].name == "aws-prod"
    provider = Providers(config)("aws-prod")

    foreign = f"{name_prefix}-foreign"
    provider_factory.create_foreign(foreign, "theirs")
    with pytest.raises(NotOwned) as refused:
        push(provider, foreign, "ours")
    assert str(refused.value).startswith(f"destination 'aws-prod': secret {foreign!r} exists and is not managed")
    assert refused.value.destination == "aws-prod"

    # Deleted (recovery window) by someone else between the adapter's DescribeSecret and its
    # GetSecretValue: AWS refuses the read with InvalidRequestException.
    name = f"{name_prefix}-deleted-meanwhile"
    push(provider, name, "v1")

    def delete_meanwhile(model, **_) -> None:
        if model.name == "GetSecretValue":
            provider_factory.delete_foreign(name)

    provider.client.meta.events.register("before-call", delete_meanwhile)
    with pytest.raises(ProviderError) as failed:
        provider.get(name)
    assert str(failed.value).startswith(
        f"destination 'aws-prod': AWS Secrets Manager GetSecretValue on {name!r} failed: InvalidRequestException: "
    )
    assert failed.value.destination == "aws-prod"


@aws_only
def test_aws_create_waits_for_a_force_delete_to_finish(provider_factory, emulators, name_prefix):
    """Real AWS finishes a force delete in the background: for a few seconds CreateSecret answers
    "scheduled for deletion" (LocalStack never does, so a proxy answers it twice here)."""
    from providers.aws import AwsProvider
    from tests.support.counting_proxy import CountingProxy

    class StillDeleting(CountingProxy):
        refused = 0

        def answer(self, name):
            if name == "CreateSecret" and self.refused < 2:
                self.refused += 1
                body = (
                    b'{"__type":"InvalidRequestException","message":"You can\'t create this secret because '
                    b'a secret with this name is already scheduled for deletion."}'
                )
                return 400, {"Content-Type": "application/x-amz-json-1.1"}, body
            return None

    with StillDeleting(emulators.entry("aws")["endpoint"]) as proxy:
        base = provider_factory.make(adopt=False, page_size=None, soft_delete=False, endpoint=proxy.url)
        provider = AwsProvider(base.client, name_free_timeout=10.0)
        name = f"{name_prefix}-recreated"
        push(provider, name, "v1")
        assert proxy.refused == 2 and proxy.calls["CreateSecret"] == 3
        assert provider.get(name).value == "v1"
