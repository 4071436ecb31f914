"""list_all (discovery): every secret of a destination, managed or not, paged, without values; and
`get` reads a foreign secret's value. Run against each emulator through the contract kits."""

from __future__ import annotations

from providers.base import MANAGED_BY
from tests.contract.test_provider_contract import push


def mine(secrets, prefix: str) -> dict:
    return {s.name: s for s in secrets if s.name.startswith(prefix)}


def test_list_all_has_managed_and_foreign_secrets_without_values(provider_factory, name_prefix):
    provider = provider_factory()
    push(provider, f"{name_prefix}-ours", '{"certificate": "ours"}')
    provider_factory.create_foreign(f"{name_prefix}-theirs", "hunter2-not-a-cert")

    listed = mine(provider.list_all(), name_prefix)
    assert set(listed) == {f"{name_prefix}-ours", f"{name_prefix}-theirs"}
    assert listed[f"{name_prefix}-ours"].managed and not listed[f"{name_prefix}-theirs"].managed
    assert MANAGED_BY not in listed[f"{name_prefix}-theirs"].labels
    assert all(s.value is None for s in listed.values())
    assert all(s.enabled for s in listed.values())
    # list_managed still leaves the foreign one out
    assert set(mine(provider.list_managed(), name_prefix)) == {f"{name_prefix}-ours"}


def test_get_reads_a_foreign_secret(provider_factory, name_prefix):
    provider_factory.create_foreign(f"{name_prefix}-theirs", "-----BEGIN CERTIFICATE-----")
    got = provider_factory().get(f"{name_prefix}-theirs")
    assert got is not None and not got.managed
    assert got.value == "-----BEGIN CERTIFICATE-----"


def test_list_all_pages(provider_factory, name_prefix):
    for i in range(3):
        provider_factory.create_foreign(f"{name_prefix}-p{i}", f"value {i}")
    provider = provider_factory(page_size=1)
    calls = provider_factory.list_calls(provider) if provider_factory.server_side_paging else None
    assert set(mine(provider.list_all(), name_prefix)) == {f"{name_prefix}-p{i}" for i in range(3)}
    if calls is not None:
        assert calls() >= 3  # one secret per page: the SDK followed the pages


def test_deleted_foreign_secret_is_neither_listed_nor_read(provider_factory, name_prefix):
    """AWS: pending deletion (recovery window); Key Vault: soft-deleted; Google: gone."""
    name = f"{name_prefix}-gone"
    provider_factory.create_foreign(name, "value")
    provider_factory.delete_foreign(name)
    provider = provider_factory()
    assert name not in mine(provider.list_all(), name_prefix)
    assert provider.get(name) is None
