"""providers.azure against the Key Vault emulator over HTTPS, with the official SDK underneath.

The provider is built the way certsync builds it (from_destination, DefaultAzureCredential via the
emulator's managed-identity route); a raw SecretClient plays "someone else" and checks the vault.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid

import pytest

from providers.base import MANAGED_BY, MANAGED_BY_VALUE, ownership_labels
from sync.errors import ConfigError, NameError_, NotOwned, PayloadTooLarge, ProviderError, Throttled
from tests.emulators.azure_harness import make_azure_provider, make_secret_client, running_azure_emulator

PEM = "application/x-pem-file"
PFX = "application/x-pkcs12"


def uname(tag: str = "az") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def labels(payload: str, cert: str = "api") -> dict[str, str]:
    return ownership_labels(cert, hashlib.sha256(payload.encode()).hexdigest()[:32])


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with running_azure_emulator(tmp_path_factory.mktemp("azure-provider")) as emulator:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in emulator.env().items():
                mp.setenv(key, value)
            yield emulator


@pytest.fixture(scope="module")
def raw(emu):
    client = make_secret_client(emu.url, emu.ca)
    yield client
    client.close()


@pytest.fixture
def make(emu):
    return lambda **kw: make_azure_provider(emu.url, emu.ca, **kw)


def push(provider, name: str, payload: str, content_type: str = PEM, cert: str = "api"):
    return provider.put(name, payload, content_type=content_type, labels=labels(payload, cert))


# --- create, update, get, list ------------------------------------------------------------------

def test_create_get_and_update_makes_a_new_version(make):
    provider, name = make(), uname()
    assert provider.kind == "azure" and provider.get(name) is None
    first = push(provider, name, "v1")
    assert first.name == name and first.version and first.value is None

    got = provider.get(name)
    assert (got.value, got.version, got.content_type) == ("v1", first.version, PEM)
    assert got.managed and got.labels == labels("v1") and got.updated is not None

    second = push(provider, name, "v2", cert="web")
    assert second.version != first.version
    got = provider.get(name)
    assert got.value == "v2" and got.version == second.version and got.labels == labels("v2", "web")


def test_content_type_round_trips(make, raw):
    provider = make()
    for content_type, payload in ((PFX, "TUlJRGZBSUJBekNDQXo="), (PEM, "-----BEGIN CERTIFICATE-----\n")):
        name = uname("ct")
        push(provider, name, payload, content_type=content_type)
        assert provider.get(name).content_type == content_type
        assert raw.get_secret(name).properties.content_type == content_type
        listed = {s.name: s for s in provider.list_managed()}
        assert listed[name].content_type == content_type


def test_list_managed_pages_and_lists_only_managed(emu, make, raw):
    provider, prefix = make(page_size=2), uname("list")
    written = {f"{prefix}-{i}": push(provider, f"{prefix}-{i}", f"v{i}") for i in range(5)}
    raw.set_secret(f"{prefix}-foreign", "theirs", tags={"owner": "someone-else"})

    before = emu.calls("GetSecrets", 200)
    listed = {s.name: s for s in provider.list_managed() if s.name.startswith(prefix)}
    assert set(listed) == set(written)
    assert emu.calls("GetSecrets", 200) - before >= 3          # page size 2: several pages followed
    for name, secret in listed.items():
        assert secret.labels == labels(f"v{name[-1]}") and secret.value is None
        assert secret.updated is not None and secret.content_type == PEM
        assert secret.version is None        # Key Vault list items carry no version id


# --- delete and soft delete ---------------------------------------------------------------------

def test_delete_is_soft_and_idempotent(make, raw):
    provider, name = make(), uname("del")
    push(provider, name, "v1")
    provider.delete(name)
    assert provider.get(name) is None
    assert raw.get_deleted_secret(name).name == name           # soft-deleted, recoverable
    provider.delete(name)
    provider.delete(uname("never"))


def test_put_on_a_soft_deleted_name_recovers_it_by_default(emu, make, raw):
    provider, name = make(), uname("rec")
    push(provider, name, "v1")
    provider.delete(name)
    recovers = emu.calls("RecoverDeletedSecret", 200)
    push(provider, name, "v2")
    assert provider.get(name).value == "v2"
    assert emu.calls("RecoverDeletedSecret", 200) == recovers + 1
    assert len(list(raw.list_properties_of_secret_versions(name))) == 2     # history kept


def test_put_on_a_soft_deleted_name_purges_it_when_configured(emu, make, raw):
    provider, name = make(on_soft_deleted="purge"), uname("pur")
    push(provider, name, "v1")
    provider.delete(name)
    purges = emu.calls("PurgeDeletedSecret", 204)
    push(provider, name, "v2")
    assert provider.get(name).value == "v2"
    assert emu.calls("PurgeDeletedSecret", 204) == purges + 1
    assert len(list(raw.list_properties_of_secret_versions(name))) == 1     # a fresh secret


def test_purge_on_delete_frees_the_name(emu, make, raw):
    from azure.core.exceptions import ResourceNotFoundError

    provider, name = make(purge_on_delete=True), uname("pod")
    push(provider, name, "v1")
    provider.delete(name)
    with pytest.raises(ResourceNotFoundError):
        raw.get_deleted_secret(name)
    conflicts = emu.calls("SetSecret", 409)
    push(provider, name, "v2")
    assert emu.calls("SetSecret", 409) == conflicts                       # no soft-deleted leftover


def test_delete_with_purge_also_purges_an_already_soft_deleted_secret(make, raw):
    from azure.core.exceptions import ResourceNotFoundError

    provider, name = make(), uname("dp")
    push(provider, name, "v1")
    provider.delete(name)
    provider.delete(name, purge=True)
    with pytest.raises(ResourceNotFoundError):
        raw.get_deleted_secret(name)


def test_put_waits_while_the_name_is_still_being_purged(tmp_path_factory):
    """Real vaults take a few seconds to delete or purge; the emulator can hold that state."""
    with running_azure_emulator(tmp_path_factory.mktemp("azure-slow"), "--delete-latency", "1") as emu:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in emu.env().items():
                mp.setenv(key, value)
            provider, name = make_azure_provider(emu.url, emu.ca, on_soft_deleted="purge"), uname("slow")
            push(provider, name, "v1")
            provider.delete(name)                  # the SDK poller waits until the delete is done
            push(provider, name, "v2")             # 409 soft-deleted -> purge -> 409 being deleted -> ok
            assert provider.get(name).value == "v2"
            assert emu.calls("SetSecret", 409) >= 2


# --- ownership ----------------------------------------------------------------------------------

def test_foreign_secret_is_refused_unless_adopt(make, raw):
    name = uname("foreign")
    raw.set_secret(name, "theirs", tags={"owner": "someone-else"})
    provider = make()
    with pytest.raises(NotOwned, match=name):
        push(provider, name, "ours")
    with pytest.raises(NotOwned, match=name):
        provider.delete(name, purge=True)
    assert raw.get_secret(name).value == "theirs"
    assert name not in {s.name for s in provider.list_managed()}

    adopting = make(adopt=True)
    push(adopting, name, "ours")
    got = adopting.get(name)
    assert got.value == "ours" and got.labels[MANAGED_BY] == MANAGED_BY_VALUE
    adopting.delete(name)
    assert adopting.get(name) is None


def test_a_version_set_by_hand_without_tags_does_not_make_our_secret_foreign(make, raw):
    """Key Vault tags belong to versions: a hand-made new version drops them, but the secret is
    still the one certsync created, so the next push repairs it instead of refusing."""
    name = uname("handset")
    provider = make()
    push(provider, name, "ours")
    raw.set_secret(name, "rotated by hand")
    assert name not in {s.name for s in provider.list_managed()}
    push(provider, name, "ours again")
    got = provider.get(name)
    assert got.value == "ours again" and got.labels[MANAGED_BY] == MANAGED_BY_VALUE


def test_soft_deleted_foreign_secret_is_neither_recovered_nor_purged(make, raw):
    name = uname("fdel")
    raw.set_secret(name, "theirs")
    raw.begin_delete_secret(name).wait()
    for provider in (make(), make(on_soft_deleted="purge")):
        with pytest.raises(NotOwned, match=name):
            push(provider, name, "ours")
    with pytest.raises(NotOwned, match=name):
        make().delete(name, purge=True)
    assert raw.get_deleted_secret(name).name == name           # still there, untouched


# --- checks before any call, and error mapping --------------------------------------------------

def test_names_and_sizes_are_checked_before_any_call(emu, make):
    provider = make()
    before = emu.stats()["total"]
    for bad in ("bad_name", "dot.name", "", "x" * 128):
        with pytest.raises(NameError_, match="invalid azure secret name"):
            push(provider, bad, "v")
        with pytest.raises(NameError_):
            provider.get(bad)
        with pytest.raises(NameError_):
            provider.delete(bad)
    with pytest.raises(PayloadTooLarge):
        push(provider, uname("big"), "x" * 25_601)
    with pytest.raises(ProviderError, match="binary"):
        provider.put(uname("bin"), b"\xff\xfe", content_type=PFX, labels={})
    assert emu.stats()["total"] == before
    with pytest.raises(ConfigError):
        make(on_soft_deleted="ignore")


def test_errors_are_one_line_and_never_carry_the_value(make, raw):
    provider, name = make(), uname("err")
    push(provider, name, "v1")
    raw.update_secret_properties(name, enabled=False)
    with pytest.raises(ProviderError) as failure:
        push(provider, name, "very-secret-value")
    message = str(failure.value)
    assert name in message and "403" in message and "\n" not in message
    assert "very-secret-value" not in message and "Bearer" not in message


def test_throttling_beyond_the_sdk_retries_is_throttled(tmp_path_factory):
    from providers.azure import AzureProvider

    args = ("--throttle-per-10s", "2", "--throttle-window", "30")
    with running_azure_emulator(tmp_path_factory.mktemp("azure-429"), *args) as emu:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in emu.env().items():
                mp.setenv(key, value)
            provider = AzureProvider(make_secret_client(emu.url, emu.ca, retry_total=0))
            name = uname("thr")
            with pytest.raises(Throttled, match=f"{name}.*429"):
                for _ in range(3):
                    provider.get(name)


def test_importing_the_adapter_does_not_import_the_sdk():
    code = ("import sys, types, providers.azure as a; "
            "a.from_destination(types.SimpleNamespace(vault_url='https://v.vault.azure.net')); "
            "print(sorted(m for m in sys.modules if m.startswith('azure')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
