"""Azure Key Vault adapter (secrets).

The SecretClient is injected (or built on first use by `from_destination` with
DefaultAzureCredential); no Azure module is imported until a call is made. Throttling (429 with
Retry-After) is handled by the SDK's own retry policy; what is left after its retries becomes
`Throttled`. Key Vault has no server-side filter, so `list_managed` filters tags client side.
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime, UTC
from typing import Any, Literal
from collections.abc import Callable, Iterator, Mapping

from pydantic import Field, ValidationInfo, field_validator, model_validator

from providers.base import (
    CERT_LABEL,
    BaseProvider,
    DestinationBase,
    NameRule,
    ProviderDescriptor,
    QuotaRule,
    insecure_note,
    refuse_off_loopback,
    url_host,
    RemoteSecret,
    refuse_foreign,
)
from sync.errors import ConfigError, ProviderError, Throttled

SERVICE = "Azure Key Vault"
MAX_VALUE_BYTES = 25_600  # 25 KiB; the service counts characters, certsync payloads are ASCII
ON_SOFT_DELETED = ("recover", "purge")
# 1-127 chars of letters, digits and hyphen
NAME_RULE = NameRule(re.compile(r"[0-9A-Za-z-]+"), 127, "1-127 characters of letters, digits and '-'")


class AzureDestination(DestinationBase):
    provider: Literal["azure"] = Field(description="The cloud: azure (Key Vault).")
    vault_url: str = Field(description="Key Vault URL, e.g. https://my-vault.vault.azure.net.")
    ca_bundle: str | None = Field(
        None, description=("PEM file of CA certificates to trust for the vault's TLS (e.g. an emulator's).")
    )
    verify_challenge_resource: bool = Field(
        True,
        description=(
            "Check that the authentication challenge's resource matches the vault's domain; false for a vault on "
            "localhost."
        ),
    )
    purge_on_delete: bool = Field(
        False, description=("Purge deleted secrets (soft delete skipped) so their names are free again at once.")
    )
    on_soft_deleted: Literal["recover", "purge"] = Field(
        "recover", description=("A push to a name that is soft-deleted: recover it, or purge it and create anew.")
    )
    object: Literal["secret", "certificate"] = Field(
        "secret",
        description=(
            "What to write: a secret, or a Key Vault certificate object (imported PFX or PEM, a new version on "
            "renewal; what App Service, Application Gateway and Front Door take). A certificate needs format "
            "pkcs12 (the default then) or pem."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _certificates_default_to_pkcs12(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("object") == "certificate" and "format" not in data:
            data = {**data, "format": "pkcs12"}
        return data

    @field_validator("object")
    @classmethod
    def _certificate_formats(cls, value: str, info: ValidationInfo) -> str:
        if value == "certificate" and info.data.get("format") not in (None, "pkcs12", "pem"):
            raise ValueError(
                f'object = "certificate" needs format = "pkcs12" or "pem" (Key Vault imports '
                f"PFX or PEM), not {info.data.get('format')!r}"
            )
        return value

    @field_validator("verify_challenge_resource")
    @classmethod
    def _unchecked_challenge_only_on_this_machine(cls, value: bool, info: ValidationInfo) -> bool:
        if not value:
            refuse_off_loopback(
                "verify_challenge_resource = false (a token for any resource the challenge names)",
                url_host(info.data.get("vault_url")),
                info,
            )
        return value

    def insecure_transport(self) -> str | None:
        if self.verify_challenge_resource:
            return None
        return insecure_note(
            "verify_challenge_resource = false: the auth challenge's resource is not checked", url_host(self.vault_url)
        )


class AzureProvider(BaseProvider[RemoteSecret]):
    """Handle (`current`): the current version, value and tags (Key Vault keeps tags per version,
    and a write sets value, content type and tags in one call)."""

    kind = "azure"
    service = SERVICE
    name_rule = NAME_RULE
    max_payload = MAX_VALUE_BYTES

    def __init__(
        self,
        client: Any,
        *,
        adopt: bool = False,
        purge_on_delete: bool = False,
        on_soft_deleted: str = "recover",
        page_size: int | None = None,
        name_free_timeout: float = 60.0,
        destination: str | None = None,
    ) -> None:
        """`client` is a SecretClient, or a zero-argument callable that builds one on first use.

        page_size: listing page size (1..25; None = the service default, 25).
        name_free_timeout: how long a write waits while the name is still being deleted/purged.
        """
        if on_soft_deleted not in ON_SOFT_DELETED:
            raise ConfigError(
                f"azure on_soft_deleted must be one of {', '.join(ON_SOFT_DELETED)}, not {on_soft_deleted!r}"
            )
        super().__init__(adopt=adopt, destination=destination)
        self._client: Any = None if callable(client) else client
        self._factory: Callable[[], Any] = client if callable(client) else lambda: client
        self.purge_on_delete, self.on_soft_deleted = purge_on_delete, on_soft_deleted
        self.page_size, self.name_free_timeout = page_size, name_free_timeout
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._client_lock:  # lanes share one provider: build one client and one credential
            if self._client is None:
                self._client = self._factory()
        return self._client

    # --- hooks ----------------------------------------------------------------------------------

    def _list(self) -> Iterator[RemoteSecret]:
        """Paged by the SDK; Key Vault has no server-side filter. List items carry no version."""
        with _errors("list secrets in", "the vault"):
            for props in self.client.list_properties_of_secrets(max_page_size=self.page_size):
                yield _remote(props)

    def _list_all(self) -> Iterator[RemoteSecret]:
        return self._list()  # no filter either way; soft-deleted secrets are not listed

    def _lookup(self, name: str) -> RemoteSecret | None:
        from azure.core.exceptions import ResourceNotFoundError

        with _errors("read", name):
            try:
                secret = self.client.get_secret(name)
            except ResourceNotFoundError:
                return None
        return _remote(secret.properties, value=secret.value)

    def _read(self, name: str, current: RemoteSecret) -> RemoteSecret:
        return current

    def _prepare(self, name: str, payload: str | bytes) -> str:
        return _text(name, payload)

    def _check_owner(self, name: str, current: RemoteSecret, cert: str) -> None:
        """Key Vault keeps tags per version: a version someone set by hand without tags does not
        make a secret certsync created foreign. Then the newest version tagged managed-by=certsync
        tells whose it is (it must name `cert`)."""
        if current.managed or self.adopt:
            refuse_foreign(current, name, self.adopt, cert)
            return
        with _errors("list versions of", name):
            tagged = self._version_list(name)
        tagged = [v for v in tagged if v.managed]
        if not tagged:
            refuse_foreign(current, name, self.adopt, cert)
        newest = max(tagged, key=lambda v: v.updated or datetime.min.replace(tzinfo=UTC))
        refuse_foreign(newest, name, self.adopt, cert)

    def _write(
        self,
        name: str,
        current: RemoteSecret | None,
        payload: str | bytes,
        content_type: str,
        labels: Mapping[str, str],
    ) -> Any:
        """set_secret: a new version with its content type and tags (there is no separate create).
        A name held by a soft-deleted secret is recovered or purged first (only if it is ours)."""
        from azure.core.exceptions import ResourceExistsError

        with _errors("write", name):
            try:
                return self._set(name, payload, content_type, labels)
            except ResourceExistsError as exc:
                if _inner_code(exc) != "ObjectIsDeletedButRecoverable":
                    raise
                self._free_soft_deleted(name, labels[CERT_LABEL])
                return self._set(name, payload, content_type, labels)

    def _relabel(
        self, name: str, current: RemoteSecret | None, written: Any, content_type: str, labels: Mapping[str, str]
    ) -> RemoteSecret:
        return _remote(written.properties)  # the tags came with the version

    def _remove(self, name: str, current: RemoteSecret, *, purge: bool) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with _errors("delete", name):
            try:
                self.client.begin_delete_secret(name).wait()
            except ResourceNotFoundError:  # deleted by someone else meanwhile
                pass

    def _after_delete(self, name: str, *, cert: str, purge: bool) -> None:
        """Purge the soft-deleted copy (ours only), when asked or configured, even if the live
        secret was already gone."""
        if not (purge or self.purge_on_delete):
            return
        with _errors("delete", name):
            deleted = self._deleted(name)
            if deleted is not None:
                refuse_foreign(deleted, name, self.adopt, cert)
                self._purge(name)

    # --- helpers --------------------------------------------------------------------------------

    def _version_list(self, name: str) -> list[RemoteSecret]:
        return [_remote(props) for props in self.client.list_properties_of_secret_versions(name)]

    def _recover(self, name: str) -> None:
        self.client.begin_recover_deleted_secret(name).wait()

    def _set(self, name: str, value: str | bytes, content_type: str, labels: Mapping[str, str]) -> Any:
        """set_secret, waiting while the name is still being deleted/recovered (409, transient)."""
        from azure.core.exceptions import ResourceExistsError

        deadline, pause = time.monotonic() + self.name_free_timeout, 0.25
        while True:
            try:
                return self.client.set_secret(name, value, content_type=content_type, tags=dict(labels))
            except ResourceExistsError as exc:
                if _inner_code(exc) == "ObjectIsDeletedButRecoverable" or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 4.0)

    def _deleted(self, name: str) -> RemoteSecret | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _remote(self.client.get_deleted_secret(name).properties)
        except ResourceNotFoundError:
            return None

    def _purge(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.client.purge_deleted_secret(name)
        except ResourceNotFoundError:
            pass

    def _free_soft_deleted(self, name: str, cert: str) -> None:
        """The name is held by a soft-deleted secret: recover or purge it (only if it is `cert`'s)."""
        deleted = self._deleted(name)
        if deleted is not None:
            refuse_foreign(deleted, name, self.adopt, cert)
        if self.on_soft_deleted == "recover":
            self._recover(name)
        else:
            self._purge(name)  # _set then waits until the purge has finished


POOL_SIZE = 64  # connections kept per vault: as many as a quota domain's workers (pacing caps them at 64)


def _pooled_transport(tls: dict) -> Any:
    """azure-core's requests transport with a pool as large as the workers: with its default of 10,
    the connections beyond it are closed after each call, and every call then pays a TLS handshake."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=4,
        pool_maxsize=POOL_SIZE,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("https://", "http://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, session_owner=True, **tls)


def from_destination(dest: Any) -> AzureProvider:
    """The secrets adapter, or (object = "certificate") the certificate objects one."""
    if getattr(dest, "object", "secret") == "certificate":
        from providers.azure_certificates import from_destination as certificates

        return certificates(dest)
    provider: list[AzureProvider] = []  # the adapter, once made: the throttle watch reports to it
    provider.append(
        AzureProvider(
            client_builder(dest, "azure.keyvault.secrets", "SecretClient", provider),
            adopt=getattr(dest, "adopt", False),
            purge_on_delete=getattr(dest, "purge_on_delete", False),
            on_soft_deleted=getattr(dest, "on_soft_deleted", "recover"),
            destination=getattr(dest, "name", None),
        )
    )
    return provider[0]


def client_builder(dest: Any, module: str, client: str, provider: list) -> Callable[[], Any]:
    """A zero-argument builder of the vault's `module`.`client` (SecretClient, CertificateClient) with
    DefaultAzureCredential, the pooled transport and a throttle watch reporting to provider[0]."""
    vault_url = getattr(dest, "vault_url", None)
    if not vault_url:
        raise ConfigError("azure destination needs vault_url (https://<vault>.vault.azure.net)")
    ca_bundle = getattr(dest, "ca_bundle", None)
    verify_challenge = getattr(dest, "verify_challenge_resource", True)

    def build() -> Any:
        import importlib

        from azure.core.pipeline.policies import SansIOHTTPPolicy
        from azure.identity import DefaultAzureCredential

        class ThrottleWatch(SansIOHTTPPolicy):
            """After the retry policy: sees every 429 the SDK then retries (after Retry-After)."""

            def on_response(self, request: Any, response: Any) -> None:
                if response.http_response.status_code == 429 and provider:
                    provider[0]._throttled()

        # ca_bundle is trusted by the credential's own HTTPS calls too (the emulator's token
        # endpoint; a TLS-inspecting proxy in front of Entra ID), not only by the vault client.
        tls = {"connection_verify": str(ca_bundle)} if ca_bundle else {}
        cls = getattr(importlib.import_module(module), client)
        return cls(
            str(vault_url),
            DefaultAzureCredential(**tls),
            verify_challenge_resource=verify_challenge,
            per_retry_policies=[ThrottleWatch()],
            transport=_pooled_transport(tls),
            **tls,
        )

    return build


def _quota_domain(dest: AzureDestination) -> str:
    return f"azure:{dest.vault_url.rstrip('/').lower()}"


DESCRIPTOR = ProviderDescriptor(
    config=AzureDestination,
    adapter=AzureProvider,
    factory=from_destination,
    # 4,000 transactions per 10 s per vault, reads included; a push is a GET and a PUT. A delete
    # is a GET, the DELETE and at least one poll by the SDK's poller, plus a GET and a PURGE
    # when purging.
    # Reads and writes share the vault's budget; GetSecrets pages hold 25 secrets.
    quota=QuotaRule(
        calls_per_second=400.0,
        calls_per_push=2.0,
        calls_per_delete=3.0,
        calls_per_purge=2.0,
        reads_per_second=400.0,
        calls_per_read=1.0,
        page_size=25,
        one_budget=True,
    ),
    quota_domain=_quota_domain,
)


# --- module helpers ------------------------------------------------------------------------------


def _remote(props: Any, value: str | None = None) -> RemoteSecret:
    return RemoteSecret(
        name=props.name,
        labels=dict(props.tags or {}),
        version=props.version,
        updated=props.updated_on,
        value=value,
        content_type=props.content_type,
        enabled=props.enabled is not False,
    )


def _text(name: str, payload: str | bytes) -> str:
    if isinstance(payload, str):
        return payload
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProviderError(
            f"azure: payload for {name!r} is binary; Key Vault secrets hold text (render pkcs12 as base64)"
        ) from None


def _inner_code(exc: Any) -> str | None:
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    return inner.get("code") if isinstance(inner, Mapping) else None


@contextmanager
def _errors(what: str, name: str) -> Iterator[None]:
    """Map azure.core exceptions to one-line certsync errors (status and code only, never bodies)."""
    from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

    try:
        yield
    except AzureError as exc:
        target = name if name == "the vault" else repr(name)
        status = getattr(exc, "status_code", None)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        if isinstance(exc, ClientAuthenticationError) and status is None:
            raise ProviderError(f"azure: cannot {what} {target}: no credential ({first})") from exc
        if isinstance(exc, HttpResponseError) and status is not None:
            code = getattr(getattr(exc, "error", None), "code", None) or getattr(exc, "reason", "")
            inner = _inner_code(exc)
            detail = f"HTTP {status} {code}" + (f"/{inner}" if inner else "")
            cls: Callable[[str], ProviderError] = Throttled if status == 429 else ProviderError
            raise cls(f"azure: cannot {what} {target}: {detail}") from exc
        raise ProviderError(f"azure: cannot {what} {target}: {type(exc).__name__} ({first})") from exc
