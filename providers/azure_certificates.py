"""Azure Key Vault certificate objects (`object = "certificate"` on an azure destination).

App Service, Application Gateway and Front Door take certificates from Key Vault certificate
objects. This adapter imports the pkcs12 (base64 PFX) or pem payload through the certificates API
(CertificateClient.import_certificate): each renewal is a new version of the same certificate,
tagged with the ownership tags (Key Vault keeps tags per version, as for secrets), so a no-op is
decided from the certificates listing alone. Soft delete, recover and purge work as for secrets
(on_soft_deleted, purge_on_delete).

Verify after write: the import's answer carries the X.509 certificate Key Vault now holds (cer);
it must be the payload's leaf. `get` returns tags and version but no value: Key Vault hands the
PFX out only through the backing secret, which certsync does not read.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any
from collections.abc import Iterator, Mapping

from providers.azure import AzureProvider, _errors, _inner_code, client_builder
from providers.base import CERT_LABEL, RemoteSecret, check_payload_size
from sync.errors import ProviderError, VerifyError

PEM_TYPE, PFX_TYPE = "application/x-pem-file", "application/x-pkcs12"
_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


class AzureCertificateProvider(AzureProvider):
    """Handle (`current`): the certificate's current version with its tags (value None)."""

    def __init__(self, client: Any, *, password: str | None = None, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.password = password  # the PFX's, when the destination names one (pkcs12_password_env)

    # --- hooks ----------------------------------------------------------------------------------

    def _list(self) -> Iterator[RemoteSecret]:
        with _errors("list certificates in", "the vault"):
            for props in self.client.list_properties_of_certificates(max_page_size=self.page_size):
                yield _remote(props)

    def _lookup(self, name: str) -> RemoteSecret | None:
        from azure.core.exceptions import ResourceNotFoundError

        with _errors("read certificate", name):
            try:
                certificate = self.client.get_certificate(name)
            except ResourceNotFoundError:
                return None
        return _remote(certificate.properties)

    def _prepare(self, name: str, payload: str | bytes) -> str:
        text = payload.decode("ascii", "replace") if isinstance(payload, bytes) else payload
        check_payload_size(name, text, self.max_payload, self.service)
        _import_bytes(name, text)  # PFX (base64) or PEM with a key: refused before any call
        return text

    def _write(
        self,
        name: str,
        current: RemoteSecret | None,
        payload: str | bytes,
        content_type: str,
        labels: Mapping[str, str],
    ) -> Any:
        """import_certificate: a new version with its tags; a soft-deleted name is recovered or
        purged first (only if it is ours), as for secrets."""
        from azure.core.exceptions import ResourceExistsError

        data, kind = _import_bytes(name, payload if isinstance(payload, str) else payload.decode())
        with _errors("import certificate", name):
            try:
                written = self._import(name, data, kind, labels)
            except ResourceExistsError as exc:
                if _inner_code(exc) != "ObjectIsDeletedButRecoverable":
                    raise
                self._free_soft_deleted(name, labels[CERT_LABEL])
                written = self._import(name, data, kind, labels)
        _verify(name, written.cer, data, kind, self.password)
        return written

    def _relabel(
        self, name: str, current: RemoteSecret | None, written: Any, content_type: str, labels: Mapping[str, str]
    ) -> RemoteSecret:
        return _remote(written.properties)  # the tags came with the version

    def _remove(self, name: str, current: RemoteSecret, *, purge: bool) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with _errors("delete certificate", name):
            try:
                self.client.begin_delete_certificate(name).wait()
            except ResourceNotFoundError:  # deleted by someone else meanwhile
                pass

    # --- helpers --------------------------------------------------------------------------------

    def _import(self, name: str, data: bytes, kind: str, labels: Mapping[str, str]) -> Any:
        """import_certificate, waiting while the name is still being deleted/recovered (409, transient)."""
        from azure.core.exceptions import ResourceExistsError
        from azure.keyvault.certificates import CertificateContentType, CertificatePolicy

        policy = CertificatePolicy(
            content_type=CertificateContentType.pem if kind == PEM_TYPE else CertificateContentType.pkcs12
        )
        return self._retrying(
            lambda: self.client.import_certificate(
                name, data, enabled=True, tags=dict(labels), password=self.password, policy=policy
            ),
            ResourceExistsError,
        )

    def _retrying(self, call: Any, conflict: type[BaseException]) -> Any:
        import time

        deadline, pause = time.monotonic() + self.name_free_timeout, 0.25
        while True:
            try:
                return call()
            except conflict as exc:
                if _inner_code(exc) == "ObjectIsDeletedButRecoverable" or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 4.0)

    def _version_list(self, name: str) -> list[RemoteSecret]:
        return [_remote(props) for props in self.client.list_properties_of_certificate_versions(name)]

    def _recover(self, name: str) -> None:
        self.client.begin_recover_deleted_certificate(name).wait()

    def _deleted(self, name: str) -> RemoteSecret | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _remote(self.client.get_deleted_certificate(name).properties)
        except ResourceNotFoundError:
            return None

    def _purge(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.client.purge_deleted_certificate(name)
        except ResourceNotFoundError:
            pass


def from_destination(dest: Any) -> AzureCertificateProvider:
    provider: list[AzureCertificateProvider] = []
    env = getattr(dest, "pkcs12_password_env", None)
    provider.append(
        AzureCertificateProvider(
            client_builder(dest, "azure.keyvault.certificates", "CertificateClient", provider),
            password=os.environ.get(env) if env else None,
            adopt=getattr(dest, "adopt", False),
            purge_on_delete=getattr(dest, "purge_on_delete", False),
            on_soft_deleted=getattr(dest, "on_soft_deleted", "recover"),
            destination=getattr(dest, "name", None),
        )
    )
    return provider[0]


# --- module helpers ------------------------------------------------------------------------------


def _import_bytes(name: str, text: str) -> tuple[bytes, str]:
    """(bytes to import, content type): PEM text as is, else the base64 PFX decoded."""
    if "-----BEGIN" in text:
        if "-----BEGIN PRIVATE KEY-----" not in text or not _CERT.search(text.encode()):
            raise ProviderError(
                f"azure: certificate {name!r}: the PEM payload needs the certificate and a PKCS#8 "
                'private key (format = "pem")'
            )
        return text.encode(), PEM_TYPE
    try:
        return base64.b64decode(text, validate=True), PFX_TYPE
    except ValueError:
        raise ProviderError(
            f"azure: certificate {name!r}: the payload is neither PEM nor a base64 PFX "
            '(format must be "pkcs12" or "pem" for object = "certificate")'
        ) from None


def _leaf_der(data: bytes, kind: str, password: str | None) -> bytes | None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        if kind == PEM_TYPE:
            found = _CERT.search(data)
            if found is None:
                return None
            leaf = x509.load_pem_x509_certificate(found.group(0))
        else:
            loaded = pkcs12.load_key_and_certificates(data, password.encode() if password else None)[1]
            if loaded is None:
                return None
            leaf = loaded
    except (ValueError, TypeError, AttributeError):
        return None
    return leaf.public_bytes(serialization.Encoding.DER) if leaf is not None else None


def _verify(name: str, cer: bytes | None, data: bytes, kind: str, password: str | None) -> None:
    """The imported version must hold the payload's leaf (Key Vault answers with its DER)."""
    leaf = _leaf_der(data, kind, password)
    if not cer or leaf is None or hashlib.sha256(bytes(cer)).digest() != hashlib.sha256(leaf).digest():
        raise VerifyError(
            f"verify after write: Key Vault certificate {name!r} does not hold the certificate just imported"
        )


def _remote(props: Any) -> RemoteSecret:
    """No content type: the certificates API keeps the import's (its policy's), not a put's."""
    return RemoteSecret(
        name=props.name,
        labels=dict(props.tags or {}),
        version=props.version,
        updated=props.updated_on,
        enabled=props.enabled is not False,
    )
