"""Provider kits for the contract suite: one per provider backend, built from the emulator state.

A kit builds the adapter under test the way certsync does (through `from_destination` with a
destination carrying the config fields), plus the few raw SDK operations the contract needs
behind the adapter's back: make a foreign secret, read a value directly, clean up, count calls
at the emulator. To add a provider, write `_<kind>_kit(entry)` and list it in KITS; every
contract test then runs against it too.

Kits (see KITS): aws (LocalStack), aws-acm (LocalStack's ACM), azure-certificate (Key Vault
certificate objects on our emulator), gcp (our gRPC emulator), gcp-rest (drongo, a third-party REST
emulator), azure (our HTTPS Key Vault emulator) and memory (tests/support/memory.py, the in-memory
provider the unit tests of apply, alerts and metrics use). Where a provider legitimately differs, the
kit says so with a capability flag and the contract case asserts the flagged behaviour instead;
no case is skipped for a whole kit. The certificate services (aws-acm, azure-certificate) hold
certificates, not text: their kits turn each payload into a real certificate bundle
(_CertificatesFor), and a case that cannot apply to a service is skipped with the reason in the
kit's `not_applicable`.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from collections.abc import Callable, Iterator, Mapping

import pytest

from providers.base import Provider
from datetime import UTC

UNREACHABLE = "127.0.0.1:9"  # nothing listens there: any call would fail with a ProviderError


@dataclass
class ThrottleRig:
    """An adapter whose service throttles, and a count of the throttling answers it got."""

    make: Callable[[], Provider]  # the adapter, built as certsync builds it
    throttled: Callable[[], int]  # throttling answers so far, counted at the server/proxy
    env: Mapping[str, str] = field(default_factory=dict)  # env the credential chain needs meanwhile


@dataclass
class Kit:
    kind: str
    make: Callable[..., Provider]  # make(adopt=False, page_size=None, soft_delete=False)
    offline: Callable[[], Provider]  # same adapter, unreachable endpoint
    create_foreign: Callable[[str, str], None]  # a secret without managed-by, made with the SDK
    delete_foreign: Callable[[str], None]  # delete it with the SDK (soft, where the service is)
    raw_value: Callable[[str], str | bytes | None]  # read with the SDK; None if absent/deleted
    cleanup: Callable[[str], None]  # remove every secret whose name starts with prefix
    max_payload: int
    # --- capabilities: how this provider legitimately differs ---------------------------------
    binary: bool = True  # bytes payloads are stored as bytes (else refused)
    lists_versions: bool = True  # list_managed entries carry the current version id
    stores_content_type: bool = True  # get and list_managed return the content type put
    keeps_foreign_labels: bool = True  # a put keeps labels others set (Key Vault: tags are per version)
    supports_soft_delete: bool = False  # make(soft_delete=True) deletes recoverably
    pending_deletion: Callable[[str], bool] = lambda name: False  # name held by a soft delete?
    server_side_paging: bool = True  # the service pages listings (and honours filters)
    list_calls: Callable[[Provider], Callable[[], int]] | None = None
    """list_calls(provider)() -> listing requests the provider has made so far, counted outside
    the adapter (emulator stats or an SDK event hook). Required when server_side_paging."""
    quotas: bool = True  # the service throttles; throttling() builds a rig
    throttling: Callable[[ExitStack, Path], ThrottleRig] | None = None
    not_applicable: Mapping[str, str] = field(default_factory=dict)
    """test name -> why the case cannot apply to this service (skipped with that reason)."""

    def __post_init__(self) -> None:
        assert not self.server_side_paging or self.list_calls, f"{self.kind}: list_calls needed"
        assert not self.quotas or self.throttling, f"{self.kind}: throttling rig needed"

    def __call__(self, *, adopt: bool = False, page_size: int | None = None, soft_delete: bool = False) -> Provider:
        return self.make(adopt=adopt, page_size=page_size, soft_delete=soft_delete)


# --- AWS (LocalStack) ---------------------------------------------------------------------------


def _aws_kit(entry: dict) -> Kit:
    import boto3

    from providers import aws
    from tests.support.throttling_proxy import ThrottlingProxy

    def make(*, adopt: bool, page_size: int | None, soft_delete: bool, endpoint: str = entry["endpoint"]) -> Provider:
        dest = SimpleNamespace(
            name="contract",
            region="us-east-1",
            endpoint_url=endpoint,
            adopt=adopt,
            recovery_window_days=7 if soft_delete else None,
        )
        provider = aws.from_destination(dest)
        if page_size:
            provider = aws.AwsProvider(
                provider.client, adopt=adopt, page_size=page_size, recovery_window_days=provider.recovery_window_days
            )
        return provider

    raw = boto3.session.Session().client("secretsmanager", region_name="us-east-1", endpoint_url=entry["endpoint"])

    def raw_value(name: str) -> str | bytes | None:
        try:
            if raw.describe_secret(SecretId=name).get("DeletedDate"):
                return None
            value = raw.get_secret_value(SecretId=name)
        except raw.exceptions.ResourceNotFoundException:
            return None
        return value.get("SecretString", value.get("SecretBinary"))

    def pending_deletion(name: str) -> bool:
        try:
            return bool(raw.describe_secret(SecretId=name).get("DeletedDate"))
        except raw.exceptions.ResourceNotFoundException:
            return False

    def cleanup(prefix: str) -> None:
        pages = raw.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [prefix]}], IncludePlannedDeletion=True
        )
        for page in pages:
            for secret in page["SecretList"]:
                if secret["Name"].startswith(prefix):
                    raw.delete_secret(SecretId=secret["Name"], ForceDeleteWithoutRecovery=True)

    def list_calls(provider: Provider) -> Callable[[], int]:
        """ListSecrets requests sent by this adapter's (real) botocore client from now on."""
        calls = [0]

        def count(model, **_) -> None:
            if model.name == "ListSecrets":
                calls[0] += 1

        provider.client.meta.events.register("before-call", count)
        return lambda: calls[0]

    def throttling(stack: ExitStack, tmp: Path) -> ThrottleRig:
        # LocalStack never throttles: a proxy answers the first two writes with
        # ThrottlingException, which botocore's standard retry mode retries.
        proxy = stack.enter_context(ThrottlingProxy(entry["endpoint"], throttle_first=2))
        return ThrottleRig(
            make=lambda: make(adopt=False, page_size=None, soft_delete=False, endpoint=proxy.url),
            throttled=lambda: proxy.throttled,
        )

    return Kit(
        kind="aws",
        make=make,
        offline=lambda: make(adopt=False, page_size=None, soft_delete=False, endpoint=f"http://{UNREACHABLE}"),
        create_foreign=lambda name, value: raw.create_secret(
            Name=name, SecretString=value, Tags=[{"Key": "owner", "Value": "someone-else"}]
        ),
        delete_foreign=lambda name: raw.delete_secret(SecretId=name, RecoveryWindowInDays=7),
        raw_value=raw_value,
        cleanup=cleanup,
        max_payload=aws.MAX_PAYLOAD,
        stores_content_type=False,  # Secrets Manager has no content type
        supports_soft_delete=True,  # recovery window; RestoreSecret on the next put
        pending_deletion=pending_deletion,
        list_calls=list_calls,
        throttling=throttling,
    )


# --- Google Secret Manager: our gRPC emulator, and drongo over REST -----------------------------


def _google_kit(kind: str, endpoint: str, transport: str, *, stats: bool) -> Kit:
    """stats: the backend is our emulator (Admin/GetStats call counts, quotas, real paging)."""
    from google.api_core import exceptions as gexc

    from providers import gcp
    from tests.support.gcp_harness import emulator_stats, make_gcp_provider, start_gcp_emulator, stop

    project = f"contract-{uuid.uuid4().hex[:10]}"  # one per kit and process: xdist-safe

    def make(
        *, adopt: bool, page_size: int | None, soft_delete: bool, endpoint: str = endpoint, project: str = project
    ) -> Provider:
        # Google has no soft delete: deleting a secret removes it and all its versions.
        dest = SimpleNamespace(
            name="contract",
            provider="gcp",
            project=project,
            endpoint=endpoint,
            transport=transport,
            insecure=True,
            adopt=adopt,
            keep_versions=2,
        )
        provider = gcp.from_destination(dest)
        if page_size:
            provider.page_size = page_size
        return provider

    raw = gcp.build_client(endpoint, transport, insecure=True)
    parent = f"projects/{project}"

    def create_foreign(name: str, value: str) -> None:
        raw.create_secret(
            request={
                "parent": parent,
                "secret_id": name,
                "secret": {"replication": {"automatic": {}}, "labels": {"owner": "someone-else"}},
            }
        )
        raw.add_secret_version(request={"parent": f"{parent}/secrets/{name}", "payload": {"data": value.encode()}})

    def delete_foreign(name: str) -> None:
        raw.delete_secret(request={"name": f"{parent}/secrets/{name}"})

    def raw_value(name: str) -> str | bytes | None:
        try:
            data = raw.access_secret_version(request={"name": f"{parent}/secrets/{name}/versions/latest"}).payload.data
        except gexc.NotFound:
            return None
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data

    def cleanup(prefix: str) -> None:
        for secret in raw.list_secrets(request={"parent": parent}):
            if secret.name.rsplit("/", 1)[-1].startswith(prefix):
                with suppress(gexc.NotFound):
                    raw.delete_secret(request={"name": secret.name})

    def list_calls(provider: Provider) -> Callable[[], int]:
        return lambda: emulator_stats(endpoint)["by_project"].get(provider.project, {}).get("ListSecrets", 0)

    def throttling(stack: ExitStack, tmp: Path) -> ThrottleRig:
        # A dedicated emulator: 2 writes per 0.5 s window. A first put makes 3 writes (create,
        # add version, set labels) at once, so its third is refused with RESOURCE_EXHAUSTED
        # until the window has moved on (google.api_core's backoff starts at up to 1 s).
        proc, throttled_at = start_gcp_emulator("--write-quota-per-minute", "2", "--quota-window-seconds", "0.5")
        stack.callback(stop, proc)
        return ThrottleRig(
            make=lambda: make(
                adopt=False,
                page_size=None,
                soft_delete=False,
                endpoint=throttled_at,
                project=f"throttle-{uuid.uuid4().hex[:10]}",
            ),
            throttled=lambda: sum(
                errors.get("RESOURCE_EXHAUSTED", 0) for errors in emulator_stats(throttled_at)["errors"].values()
            ),
        )

    return Kit(
        kind=kind,
        make=make,
        # A call would fail fast (1 s of retries) rather than hang in the default 120 s retry.
        offline=lambda: make_gcp_provider(
            UNREACHABLE, transport, project, destination="contract", retry=gcp.default_retry(timeout=1.0), timeout=2.0
        ),
        create_foreign=create_foreign,
        delete_foreign=delete_foreign,
        raw_value=raw_value,
        cleanup=cleanup,
        max_payload=gcp.MAX_PAYLOAD,
        lists_versions=False,  # ListSecrets returns secrets, not versions
        stores_content_type=stats,  # an annotation; drongo drops annotations
        # drongo returns every secret in one page and ignores filters (the adapter re-checks
        # the labels itself); it has no quotas either.
        server_side_paging=stats,
        list_calls=list_calls if stats else None,
        quotas=stats,
        throttling=throttling if stats else None,
    )


def _gcp_kit(entry: dict) -> Kit:
    return _google_kit("gcp", entry["endpoint"], "grpc", stats=True)


def _gcp_rest_kit(entry: dict) -> Kit:
    return _google_kit("gcp-rest", entry["endpoint"].removeprefix("http://"), "rest", stats=False)


# --- Azure Key Vault (our HTTPS emulator) -------------------------------------------------------


def _azure_stats(url: str, ca: str | Path) -> dict:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"{url}/_emulator/stats", context=context, timeout=10) as resp:
        return json.load(resp)


def _azure_kit(entry: dict) -> Kit:
    from azure.core.exceptions import ResourceNotFoundError

    from providers import azure
    from tests.emulators.azure_harness import azure_contract_parts, make_secret_client, running_azure_emulator

    url, ca = entry["endpoint"], entry["ca_bundle"]

    def make(*, adopt: bool, page_size: int | None, soft_delete: bool, url: str = url, ca: str = ca) -> Provider:
        # Key Vault always soft-deletes; without soft_delete the adapter purges on delete.
        dest = SimpleNamespace(
            name="contract",
            provider="azure",
            vault_url=url,
            ca_bundle=ca,
            verify_challenge_resource=False,
            adopt=adopt,
            purge_on_delete=not soft_delete,
            on_soft_deleted="recover",
        )
        provider = azure.from_destination(dest)
        if page_size:
            provider.page_size = page_size
        return provider

    raw = make_secret_client(url, ca)

    def pending_deletion(name: str) -> bool:
        try:
            raw.get_deleted_secret(name)
        except ResourceNotFoundError:
            return False
        return True

    def list_calls(provider: Provider) -> Callable[[], int]:
        # Vault-wide count (the emulator is shared by xdist workers): only grows, never shrinks.
        return lambda: (
            _azure_stats(url, ca)["operations"].get("GetSecrets", {"by_status": {}})["by_status"].get("200", 0)
        )

    def throttling(stack: ExitStack, tmp: Path) -> ThrottleRig:
        # A dedicated emulator: 1 request per 1 s window, then 429 + Retry-After: 1. A put
        # (read, then write) therefore meets at least one 429, which the SDK's retry waits out.
        emu = stack.enter_context(running_azure_emulator(tmp, "--throttle-per-10s", "1", "--throttle-window", "1"))
        return ThrottleRig(
            make=lambda: make(adopt=False, page_size=None, soft_delete=False, url=emu.url, ca=str(emu.ca)),
            throttled=lambda: sum(op["by_status"].get("429", 0) for op in emu.stats()["operations"].values()),
            env=emu.env(),
        )

    parts = azure_contract_parts(url, ca)
    parts.update(
        make=make,
        lists_versions=False,
        keeps_foreign_labels=False,
        supports_soft_delete=True,
        delete_foreign=lambda name: raw.begin_delete_secret(name).wait(),
        pending_deletion=pending_deletion,
        list_calls=list_calls,
        throttling=throttling,
    )
    return Kit(kind="azure", **parts)


# --- AWS Certificate Manager (LocalStack) --------------------------------------------------------


def _self_signed_bundle(cn: str) -> tuple[str, str]:
    """(pem payload: leaf then PKCS#8 key, leaf PEM) of a throwaway self-signed EC P-256 certificate."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
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
    leaf = cert.public_bytes(serialization.Encoding.PEM).decode()
    return leaf + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode(), leaf


class _CertificatesFor:
    """ACM and Key Vault certificate objects hold certificates, not text: each payload the contract
    writes (text or bytes) becomes a real certificate bundle (one per payload, made once), imported
    by the real adapter; a get's value is the payload whose certificate the service hands back
    (`leaf_of(remote)`: its leaf PEM, read with the SDK)."""

    def __init__(self, provider: Provider, leaf_of: Callable, book: dict) -> None:
        self._provider, self._leaf_of, self._book = provider, leaf_of, book

    def __getattr__(self, attr: str):
        return getattr(self._provider, attr)

    def bundle(self, payload: str | bytes) -> str:
        if len(payload) > self._provider.max_payload:
            return payload  # the size check must see it
        if payload not in self._book:
            pem, leaf = _self_signed_bundle(f"c{len(self._book)}.example.internal")
            self._book[payload] = pem
            self._book[leaf.strip()] = payload
        return self._book[payload]

    def put(self, name, payload, *, content_type, labels):
        return self._provider.put(name, self.bundle(payload), content_type=content_type, labels=labels)

    def get(self, name):
        from dataclasses import replace

        got = self._provider.get(name)
        if got is None:
            return None
        return replace(got, value=self.held(got))

    def held(self, remote):
        leaf = self._leaf_of(remote).strip()
        return self._book.get(leaf, leaf)


def _acm_kit(entry: dict) -> Kit:
    import boto3

    from providers import aws_acm
    from tests.support.throttling_proxy import ThrottlingProxy

    raw = boto3.session.Session().client("acm", region_name="us-east-1", endpoint_url=entry["endpoint"])
    book: dict = {}  # payload -> bundle, leaf PEM -> payload (shared by every adapter of the kit)

    def make(*, adopt: bool, page_size: int | None, soft_delete: bool, endpoint: str = entry["endpoint"]) -> Provider:
        # ACM has no soft delete: DeleteCertificate is final
        dest = SimpleNamespace(name="contract", region="us-east-1", endpoint_url=endpoint, adopt=adopt)
        provider = aws_acm.from_destination(dest)
        if page_size:
            provider.page_size = page_size
        return _CertificatesFor(provider, held_leaf, book)

    def held_leaf(remote) -> str:
        return raw.get_certificate(CertificateArn=remote.version)["Certificate"]

    def arns(name: str) -> list[str]:
        found = []
        for page in raw.get_paginator("list_certificates").paginate(Includes={"keyTypes": aws_acm.LIST_KEY_TYPES}):
            for summary in page["CertificateSummaryList"]:
                with suppress(raw.exceptions.ResourceNotFoundException):
                    tags = raw.list_tags_for_certificate(CertificateArn=summary["CertificateArn"])["Tags"]
                    if {"Key": "Name", "Value": name} in tags:
                        found.append(summary["CertificateArn"])
        return found

    def create_foreign(name: str, value: str) -> None:
        pem, leaf = _self_signed_bundle("foreign.example.internal")
        book[leaf.strip()] = value
        key = pem[len(leaf) :]
        arn = raw.import_certificate(Certificate=leaf.encode(), PrivateKey=key.encode())["CertificateArn"]
        raw.add_tags_to_certificate(
            CertificateArn=arn, Tags=[{"Key": "Name", "Value": name}, {"Key": "owner", "Value": "someone-else"}]
        )

    def delete_foreign(name: str) -> None:
        for arn in arns(name):
            raw.delete_certificate(CertificateArn=arn)

    def raw_value(name: str) -> str | bytes | None:
        found = arns(name)
        return _CertificatesFor(None, held_leaf, book).held(SimpleNamespace(version=found[0])) if found else None

    def cleanup(prefix: str) -> None:
        for page in raw.get_paginator("list_certificates").paginate(Includes={"keyTypes": aws_acm.LIST_KEY_TYPES}):
            for summary in page["CertificateSummaryList"]:
                with suppress(raw.exceptions.ResourceNotFoundException):
                    tags = raw.list_tags_for_certificate(CertificateArn=summary["CertificateArn"])["Tags"]
                    if any(t["Key"] == "Name" and t["Value"].startswith(prefix) for t in tags):
                        raw.delete_certificate(CertificateArn=summary["CertificateArn"])

    def throttling(stack: ExitStack, tmp: Path) -> ThrottleRig:
        proxy = stack.enter_context(
            ThrottlingProxy(
                entry["endpoint"], throttle_first=2, calls=frozenset({"ImportCertificate", "AddTagsToCertificate"})
            )
        )
        return ThrottleRig(
            make=lambda: make(adopt=False, page_size=None, soft_delete=False, endpoint=proxy.url),
            throttled=lambda: proxy.throttled,
        )

    return Kit(
        kind="aws-acm",
        make=make,
        offline=lambda: make(adopt=False, page_size=None, soft_delete=False, endpoint=f"http://{UNREACHABLE}"),
        create_foreign=create_foreign,
        delete_foreign=delete_foreign,
        raw_value=raw_value,
        cleanup=cleanup,
        max_payload=aws_acm.MAX_PAYLOAD,
        stores_content_type=False,  # ACM has no content type
        keeps_foreign_labels=False,  # LocalStack drops a certificate's tags on re-import (real ACM keeps them)
        server_side_paging=False,  # LocalStack returns every certificate in one page (ACM pages 1,000)
        throttling=throttling,
        not_applicable={
            "test_update_makes_a_new_version": "ACM re-imports into the same ARN by design (the ARN is the identity "
            "listeners use; tests/e2e/test_acm_e2e.py checks it stays)",
            "test_certificate_chain_sized_payload_round_trips": "ACM imports certificates, not text; the "
            "payload would be replaced by a bundle anyway",
        },
    )


# --- Azure Key Vault certificate objects (our HTTPS emulator) ----------------------------------------


def _azure_certificates_kit(entry: dict) -> Kit:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.certificates import CertificateClient
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from providers import azure
    from tests.emulators.azure_harness import running_azure_emulator

    url, ca = entry["endpoint"], entry["ca_bundle"]
    book: dict = {}

    def client(url: str = url, ca: str = ca):
        return CertificateClient(
            url,
            ManagedIdentityCredential(connection_verify=str(ca)),
            verify_challenge_resource=False,
            connection_verify=str(ca),
        )

    raw = client()
    readers = {url: raw}  # one client per emulator (the throttling rig runs its own)

    def leaf_pem(name: str, url: str = url, ca: str = ca) -> str:
        reader = readers.get(url) or readers.setdefault(url, client(url, ca))
        der = bytes(reader.get_certificate(name).cer)
        return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()

    def make(*, adopt: bool, page_size: int | None, soft_delete: bool, url: str = url, ca: str = ca) -> Provider:
        dest = SimpleNamespace(
            name="contract",
            provider="azure",
            vault_url=url,
            ca_bundle=ca,
            verify_challenge_resource=False,
            adopt=adopt,
            object="certificate",
            purge_on_delete=not soft_delete,
            on_soft_deleted="recover",
        )
        provider = azure.from_destination(dest)
        if page_size:
            provider.page_size = page_size
        return _CertificatesFor(provider, lambda remote: leaf_pem(remote.name, url, ca), book)

    def create_foreign(name: str, value: str) -> None:
        pem, leaf = _self_signed_bundle("foreign.example.internal")
        book[leaf.strip()] = value
        raw.import_certificate(name, pem.encode(), tags={"owner": "someone-else"}, policy=_pem_policy())

    def raw_value(name: str):
        try:
            return book.get(leaf_pem(name).strip())
        except ResourceNotFoundError:
            return None

    def pending_deletion(name: str) -> bool:
        try:
            raw.get_deleted_certificate(name)
        except ResourceNotFoundError:
            return False
        return True

    def cleanup(prefix: str) -> None:
        for props in raw.list_properties_of_certificates():
            if props.name.startswith(prefix):
                raw.begin_delete_certificate(props.name).wait()
        for deleted in raw.list_deleted_certificates():
            if deleted.name.startswith(prefix):
                raw.purge_deleted_certificate(deleted.name)

    def list_calls(provider: Provider) -> Callable[[], int]:
        return lambda: (
            _azure_stats(url, ca)["operations"].get("GetCertificates", {"by_status": {}})["by_status"].get("200", 0)
        )

    def throttling(stack: ExitStack, tmp: Path) -> ThrottleRig:
        emu = stack.enter_context(running_azure_emulator(tmp, "--throttle-per-10s", "1", "--throttle-window", "1"))
        return ThrottleRig(
            make=lambda: make(adopt=False, page_size=None, soft_delete=False, url=emu.url, ca=str(emu.ca)),
            throttled=lambda: sum(op["by_status"].get("429", 0) for op in emu.stats()["operations"].values()),
            env=emu.env(),
        )

    return Kit(
        kind="azure-certificate",
        make=make,
        offline=lambda: make(adopt=False, page_size=None, soft_delete=False, url="https://127.0.0.1:9"),
        create_foreign=create_foreign,
        delete_foreign=lambda name: raw.begin_delete_certificate(name).wait(),
        raw_value=raw_value,
        cleanup=cleanup,
        max_payload=azure.MAX_VALUE_BYTES,
        lists_versions=False,  # list items carry the versionless id
        stores_content_type=False,  # the import's content type is the policy's, not the put's
        keeps_foreign_labels=False,  # tags belong to a version
        supports_soft_delete=True,
        pending_deletion=pending_deletion,
        list_calls=list_calls,
        throttling=throttling,
        not_applicable={
            "test_certificate_chain_sized_payload_round_trips": "Key Vault certificate objects import certificates, "
            "not text; the payload would be replaced by a "
            "bundle anyway",
        },
    )


def _pem_policy():
    from azure.keyvault.certificates import CertificateContentType, CertificatePolicy

    return CertificatePolicy(content_type=CertificateContentType.pem)


# --- the in-memory provider of the unit tests ---------------------------------------------------


def _memory_kit(entry: None) -> Kit:
    from datetime import datetime

    from providers.base import RemoteSecret
    from tests.support.memory import MemoryCloud, MemoryProvider, Unreachable

    cloud = MemoryCloud()

    def make(*, adopt: bool, page_size: int | None, soft_delete: bool) -> Provider:
        return MemoryProvider(cloud, adopt=adopt, destination="contract")

    def create_foreign(name: str, value: str) -> None:
        cloud[name] = RemoteSecret(name, {"owner": "someone-else"}, "foreign", updated=datetime.now(UTC), value=value)

    def cleanup(prefix: str) -> None:
        for name in [n for n in cloud if n.startswith(prefix)]:
            cloud.pop(name, None)

    return Kit(
        kind="memory",
        make=make,
        offline=lambda: MemoryProvider(Unreachable(), destination="contract"),
        create_foreign=create_foreign,
        delete_foreign=lambda name: cloud.pop(name),
        raw_value=lambda name: cloud[name].value if name in cloud else None,
        cleanup=cleanup,
        max_payload=MemoryProvider.max_payload,
        server_side_paging=False,  # a dict: nothing to page
        quotas=False,
    )


# --- registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KitSpec:
    build: Callable[[dict | None], Kit]  # build(state entry of `emulator`, None without one)
    emulator: str | None  # launcher kind (tests/conftest.py emulators.entry)
    credentials: str | None = None  # session fixture putting the SDK's creds in env


KITS: dict[str, KitSpec] = {
    "aws": KitSpec(_aws_kit, "aws", "aws_test_credentials"),
    "gcp": KitSpec(_gcp_kit, "gcp"),
    "gcp-rest": KitSpec(_gcp_rest_kit, "drongo"),
    "azure": KitSpec(_azure_kit, "azure", "azure_test_credentials"),
    "memory": KitSpec(_memory_kit, None),
    "aws-acm": KitSpec(_acm_kit, "aws", "aws_test_credentials"),
    "azure-certificate": KitSpec(_azure_certificates_kit, "azure", "azure_test_credentials"),
}


@pytest.fixture(scope="session")
def _kits() -> dict[str, Kit]:
    return {}


@pytest.fixture(params=sorted(KITS))
def provider_factory(request, _kits, name_prefix) -> Iterator[Kit]:
    """Builds adapters of one kind against its emulator; removes the test's secrets afterwards."""
    kind = request.param
    spec = KITS[kind]
    emulators = request.getfixturevalue("emulators") if spec.emulator else None
    if spec.credentials:
        request.getfixturevalue(spec.credentials)
    if kind not in _kits:
        _kits[kind] = spec.build(emulators.entry(spec.emulator) if spec.emulator else None)
    kit = _kits[kind]
    reason = kit.not_applicable.get(request.node.originalname)
    if reason:
        pytest.skip(f"{kind}: {reason}")
    yield kit
    kit.cleanup(name_prefix)


@pytest.fixture
def provider(provider_factory) -> Provider:
    return provider_factory()


@pytest.fixture(scope="module")
def throttle_rig(tmp_path_factory) -> Iterator[Callable[[Kit], ThrottleRig]]:
    """throttle_rig(kit): the kit's throttling service, started on first use in this module (on
    free ports, per xdist worker) and stopped when the module is done."""
    with ExitStack() as stack:
        rigs: dict[str, ThrottleRig] = {}

        def get(kit: Kit) -> ThrottleRig:
            if kit.kind not in rigs:
                rigs[kit.kind] = kit.throttling(stack, tmp_path_factory.mktemp(f"throttle-{kit.kind}"))
            return rigs[kit.kind]

        yield get


@pytest.fixture(scope="session")
def aws_test_credentials() -> Iterator[None]:
    """boto3's default chain must find dummy credentials, never a developer's real ones."""
    with pytest.MonkeyPatch.context() as patch:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
            patch.delenv(var, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "test")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", "/dev/null")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        yield


@pytest.fixture(scope="session")
def azure_test_credentials(emulators) -> Iterator[None]:
    """DefaultAzureCredential gets its tokens from the emulator's managed-identity route (App
    Service style), never from a developer's real Azure login. The emulator's CA is passed to
    each client (ca_bundle -> connection_verify), so REQUESTS_CA_BUNDLE is left alone."""
    entry = emulators.entry("azure")
    with pytest.MonkeyPatch.context() as patch:
        for var in (
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_CERTIFICATE_PATH",
            "AZURE_USERNAME",
            "AZURE_PASSWORD",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_TOKEN_CREDENTIALS",
            "IMDS_ENDPOINT",
            "IDENTITY_SERVER_THUMBPRINT",
            "MSI_ENDPOINT",
            "MSI_SECRET",
        ):
            patch.delenv(var, raising=False)
        patch.setenv("IDENTITY_ENDPOINT", f"{entry['endpoint']}/msi/token")
        patch.setenv("IDENTITY_HEADER", "certsync-contract")
        yield
