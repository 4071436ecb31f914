"""Provider kits for the contract suite: one per provider kind, built from the emulator state.

A kit builds the adapter under test the way certsync does (through `from_destination`), plus
the few raw SDK operations the contract needs behind the adapter's back: make a foreign secret,
read a value directly, clean up. To add a provider, write `_<kind>_kit(entry)` and list it in
KITS; every contract test then runs against it too.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Iterator

import pytest

from providers.base import Provider

UNREACHABLE = "127.0.0.1:9"     # nothing listens there: any call would fail with a ProviderError


@dataclass
class Kit:
    kind: str
    make: Callable[..., Provider]            # make(adopt=False, page_size=None, soft_delete=False)
    offline: Callable[[], Provider]          # same adapter, unreachable endpoint
    create_foreign: Callable[[str, str], None]   # a secret without managed-by, made with the SDK
    raw_value: Callable[[str], str | bytes | None]   # read with the SDK; None if absent/deleted
    cleanup: Callable[[str], None]           # remove every secret whose name starts with prefix
    max_payload: int
    binary: bool = True                      # bytes payloads are stored as bytes

    def __call__(self, *, adopt: bool = False, page_size: int | None = None,
                 soft_delete: bool = False) -> Provider:
        return self.make(adopt=adopt, page_size=page_size, soft_delete=soft_delete)


# --- AWS (LocalStack) ---------------------------------------------------------------------------

def _aws_kit(entry: dict) -> Kit:
    import boto3

    from providers import aws

    def make(*, adopt: bool, page_size: int | None, soft_delete: bool,
             endpoint: str = entry["endpoint"]) -> Provider:
        dest = SimpleNamespace(name="contract", region="us-east-1", endpoint_url=endpoint,
                               adopt=adopt, recovery_window_days=7 if soft_delete else None)
        provider = aws.from_destination(dest)
        if page_size:
            provider = aws.AwsProvider(provider.client, adopt=adopt, page_size=page_size,
                                       recovery_window_days=provider.recovery_window_days)
        return provider

    raw = boto3.session.Session().client("secretsmanager", region_name="us-east-1",
                                         endpoint_url=entry["endpoint"])

    def raw_value(name: str) -> str | bytes | None:
        try:
            if raw.describe_secret(SecretId=name).get("DeletedDate"):
                return None
            value = raw.get_secret_value(SecretId=name)
        except raw.exceptions.ResourceNotFoundException:
            return None
        return value.get("SecretString", value.get("SecretBinary"))

    def cleanup(prefix: str) -> None:
        pages = raw.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [prefix]}], IncludePlannedDeletion=True)
        for page in pages:
            for secret in page["SecretList"]:
                if secret["Name"].startswith(prefix):
                    raw.delete_secret(SecretId=secret["Name"], ForceDeleteWithoutRecovery=True)

    return Kit(
        kind="aws",
        make=make,
        offline=lambda: make(adopt=False, page_size=None, soft_delete=False,
                             endpoint=f"http://{UNREACHABLE}"),
        create_foreign=lambda name, value: raw.create_secret(
            Name=name, SecretString=value, Tags=[{"Key": "owner", "Value": "someone-else"}]),
        raw_value=raw_value,
        cleanup=cleanup,
        max_payload=aws.MAX_PAYLOAD,
    )


KITS: dict[str, Callable[[dict], Kit]] = {
    "aws": _aws_kit,
}


@pytest.fixture(scope="session")
def _kits(emulators, aws_test_credentials) -> dict[str, Kit]:
    return {}


@pytest.fixture(params=sorted(KITS))
def provider_factory(request, emulators, _kits, name_prefix) -> Iterator[Kit]:
    """Builds adapters of one kind against its emulator; removes the test's secrets afterwards."""
    kind = request.param
    if kind not in _kits:
        _kits[kind] = KITS[kind](emulators.entry(kind))
    kit = _kits[kind]
    yield kit
    kit.cleanup(name_prefix)


@pytest.fixture
def provider(provider_factory) -> Provider:
    return provider_factory()


@pytest.fixture(scope="session")
def aws_test_credentials() -> Iterator[None]:
    """boto3's default chain must find dummy credentials, never a developer's real ones."""
    with pytest.MonkeyPatch.context() as patch:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                    "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
            patch.delenv(var, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "test")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", "/dev/null")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        yield
