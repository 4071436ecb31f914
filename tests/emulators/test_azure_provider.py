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
from sync.errors import ConfigError, NotOwned, ProviderError, Throttled
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


# --- Key Vault specifics --------------------------------------------------------------------------
# (What every provider does -- create, update, content type, list, delete, soft delete, ownership,
# names, sizes -- is in tests/contract, which runs against the same emulator.)


def test_put_on_a_soft_deleted_name_recovers_it_by_default(emu, make, raw):
    provider, name = make(), uname("rec")
    push(provider, name, "v1")
    provider.delete(name, cert="api")
    recovers = emu.calls("RecoverDeletedSecret", 200)
    push(provider, name, "v2")
    assert provider.get(name).value == "v2"
    assert emu.calls("RecoverDeletedSecret", 200) == recovers + 1
    assert len(list(raw.list_properties_of_secret_versions(name))) == 2  # history kept


def test_put_on_a_soft_deleted_name_purges_it_when_configured(emu, make, raw):
    provider, name = make(on_soft_deleted="purge"), uname("pur")
    push(provider, name, "v1")
    provider.delete(name, cert="api")
    purges = emu.calls("PurgeDeletedSecret", 204)
    push(provider, name, "v2")
    assert provider.get(name).value == "v2"
    assert emu.calls("PurgeDeletedSecret", 204) == purges + 1
    assert len(list(raw.list_properties_of_secret_versions(name))) == 1  # a fresh secret


def test_put_waits_while_the_name_is_still_being_purged(tmp_path_factory):
    """Real vaults take a few seconds to delete or purge; the emulator can hold that state."""
    with running_azure_emulator(tmp_path_factory.mktemp("azure-slow"), "--delete-latency", "1") as emu:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in emu.env().items():
                mp.setenv(key, value)
            provider, name = make_azure_provider(emu.url, emu.ca, on_soft_deleted="purge"), uname("slow")
            push(provider, name, "v1")
            provider.delete(name, cert="api")  # the SDK poller waits until the delete is done
            push(provider, name, "v2")  # 409 soft-deleted -> purge -> 409 being deleted -> ok
            assert provider.get(name).value == "v2"
            assert emu.calls("SetSecret", 409) >= 2


# --- ownership ----------------------------------------------------------------------------------


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


def test_hand_set_version_does_not_hand_the_secret_to_another_certificate(make, raw):
    """The version-history check is per certificate: a secret certsync created for `cert-b`
    whose current version was set by hand stays cert-b's; `cert-a` may not overwrite it."""
    name = uname("handsetb")
    provider = make()
    push(provider, name, "b's", cert="cert-b")
    raw.set_secret(name, "rotated by hand")
    with pytest.raises(NotOwned, match="cert-b"):
        push(provider, name, "a's", cert="cert-a")
    push(provider, name, "b's again", cert="cert-b")
    assert provider.get(name).value == "b's again"


def test_soft_deleted_foreign_secret_is_not_purged_to_free_the_name(make, raw):
    """The contract suite covers the default (recover); on_soft_deleted = "purge" refuses too."""
    name = uname("fdel")
    raw.set_secret(name, "theirs")
    raw.begin_delete_secret(name).wait()
    with pytest.raises(NotOwned, match=name):
        push(make(on_soft_deleted="purge"), name, "ours")
    assert raw.get_deleted_secret(name).name == name  # still there, untouched


# --- configuration and error mapping ------------------------------------------------------------


def test_an_unknown_on_soft_deleted_is_a_config_error(make):
    with pytest.raises(ConfigError, match="on_soft_deleted"):
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
    code = (
        "import sys, types, providers.azure as a; "
        "a.from_destination(types.SimpleNamespace(vault_url='https://v.vault.azure.net')); "
        "print(sorted(m for m in sys.modules if m.startswith('azure')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
