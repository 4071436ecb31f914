"""Google Secret Manager adapter.

The client (`SecretManagerServiceClient`) is injected; `from_destination` builds one. The
Google SDK is imported only inside functions, never at module import.

Mapping to Secret Manager:
  * one certsync secret = one Secret with automatic replication; each put adds a version;
  * labels carry managed-by / certsync-cert / certsync-fp; the content type lives in the
    annotation `certsync-content-type` (label values cannot hold '/');
  * after a put only the `keep_versions` newest ENABLED versions stay enabled; older enabled
    ones are destroyed (each enabled or disabled version is billed). DISABLED versions are
    left alone: someone disabled them on purpose. `keep_versions=0` turns pruning off;
  * throttling (RESOURCE_EXHAUSTED / 429) and UNAVAILABLE are retried by the client's own
    google.api_core Retry (exponential backoff); what still fails becomes a ProviderError
    (Throttled for quota) naming the secret, never the payload.
"""
from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Iterator, Mapping

from providers.base import (FP_LABEL, MANAGED_BY, MANAGED_BY_VALUE, RemoteSecret,
                            check_payload_size, refuse_foreign, validate_name)
from sync.errors import ConfigError, ProviderError, Throttled, UsageError

log = logging.getLogger(__name__)

MAX_PAYLOAD = 65536
MAX_PAGE_SIZE = 25000               # ListSecrets caps page_size here; 0 lets the server decide
CONTENT_TYPE_ANNOTATION = "certsync-content-type"
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def validate_labels(name: str, labels: Mapping[str, str]) -> None:
    """Google's label rules, checked before any call (ASCII subset of what the API allows)."""
    if len(labels) > 64:
        raise UsageError(f"secret {name!r} has {len(labels)} labels; Google allows at most 64")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise UsageError(f"invalid Google label key {key!r} for secret {name!r}: 1-63 "
                             "lowercase letters, digits, '_' or '-', starting with a letter")
        if not _LABEL_VALUE.fullmatch(value):
            raise UsageError(f"invalid Google label value {value!r} (key {key!r}) for secret "
                             f"{name!r}: at most 63 lowercase letters, digits, '_' or '-'")


def default_retry(timeout: float = 120.0):
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry, if_exception_type
    return Retry(predicate=if_exception_type(gexc.TooManyRequests, gexc.ServiceUnavailable),
                 initial=1.0, maximum=32.0, multiplier=2.0, timeout=timeout)


class GcpProvider:
    kind = "gcp"

    def __init__(self, client: Any, project: str, *, adopt: bool = False,
                 keep_versions: int = 2, retry: Any = None, timeout: float | None = 60.0,
                 destination: str | None = None, page_size: int = MAX_PAGE_SIZE) -> None:
        """page_size: secrets per ListSecrets page (1..25000; default the service maximum)."""
        if keep_versions is None or keep_versions < 0:
            raise ConfigError(f"keep_versions must be 0 (no pruning) or more, got {keep_versions}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        self.page_size = page_size
        self._client = client
        self.project = project
        self.adopt = adopt
        self.keep_versions = keep_versions
        self._retry = retry if retry is not None else default_retry()
        self._timeout = timeout
        self.destination = destination

    # -- helpers ----------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"projects/{self.project}/secrets/{name}"

    def _call(self, method: str, **request: Any) -> Any:
        return getattr(self._client, method)(request=request, retry=self._retry,
                                             timeout=self._timeout)

    def _error(self, exc: Exception, action: str, name: str | None) -> ProviderError:
        from google.api_core import exceptions as gexc
        what = f"secret {name!r}" if name else "secrets"
        where = f"gcp: cannot {action} {what} in project {self.project!r}"
        cause = exc.cause if isinstance(exc, gexc.RetryError) and exc.cause else exc
        if isinstance(cause, gexc.GoogleAPICallError):
            status = getattr(cause, "grpc_status_code", None)
            code = status.name if status is not None else f"HTTP {cause.code}"
            reason = f"{type(cause).__name__} ({code}): {cause.message}"
        else:
            reason = f"{type(cause).__name__}: {cause}"
        if isinstance(exc, gexc.RetryError):
            reason += " (gave up after retrying)"
        cls = Throttled if isinstance(cause, gexc.TooManyRequests) else ProviderError
        return cls(f"{where}: {reason}", destination=self.destination)

    @contextlib.contextmanager
    def _guard(self, action: str, name: str | None) -> Iterator[None]:
        """Turn Google and transport failures inside the block into one-line ProviderErrors."""
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc
        try:
            yield
        except (gexc.GoogleAPIError, auth_exc.GoogleAuthError, OSError) as exc:
            raise self._error(exc, action, name) from exc

    def _get_secret(self, name: str) -> Any | None:
        from google.api_core import exceptions as gexc
        with self._guard("read", name):
            try:
                return self._call("get_secret", name=self._path(name))
            except gexc.NotFound:
                return None

    @staticmethod
    def _remote(name: str, secret: Any, **kw: Any) -> RemoteSecret:
        labels = dict(secret.labels)
        return RemoteSecret(name=name, labels=labels, updated=secret.create_time or None,
                            content_type=secret.annotations.get(CONTENT_TYPE_ANNOTATION), **kw)

    # -- protocol ---------------------------------------------------------------------------------

    def list_managed(self) -> Iterator[RemoteSecret]:
        """All secrets labelled managed-by=certsync (server-side filter, re-checked here)."""
        with self._guard("list", None):
            pager = self._call("list_secrets", parent=f"projects/{self.project}",
                               filter=f"labels.{MANAGED_BY}={MANAGED_BY_VALUE}",
                               page_size=self.page_size)
            for secret in pager:            # the pager fetches further pages with the retry
                if secret.labels.get(MANAGED_BY) == MANAGED_BY_VALUE:
                    yield self._remote(secret.name.rsplit("/", 1)[-1], secret)

    def get(self, name: str) -> RemoteSecret | None:
        """The secret with the value of `latest`; value None when latest cannot be read
        (no versions, or the newest version is disabled/destroyed): a put repairs it."""
        from google.api_core import exceptions as gexc
        validate_name("gcp", name)
        secret = self._get_secret(name)
        if secret is None:
            return None
        with self._guard("read", name):
            try:
                resp = self._call("access_secret_version",
                                  name=f"{self._path(name)}/versions/latest")
            except (gexc.NotFound, gexc.FailedPrecondition, gexc.BadRequest):
                # No versions, or latest is DISABLED/DESTROYED (FAILED_PRECONDITION, which
                # arrives as HTTP 400 BadRequest over REST).
                return self._remote(name, secret)
        data = resp.payload.data
        if "data_crc32c" in resp.payload and resp.payload.data_crc32c != _crc32c(data):
            raise ProviderError(f"gcp: the value of secret {name!r} in project {self.project!r} "
                                "failed its CRC32C check", destination=self.destination)
        try:
            value: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            value = data
        return self._remote(name, secret, version=resp.name.rsplit("/", 1)[-1], value=value)

    def put(self, name: str, payload: str | bytes, *, content_type: str,
            labels: Mapping[str, str]) -> RemoteSecret:
        from google.api_core import exceptions as gexc
        validate_name("gcp", name)
        check_payload_size(name, payload, MAX_PAYLOAD, "Google Secret Manager")
        validate_labels(name, labels)
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        annotations = {CONTENT_TYPE_ANNOTATION: content_type} if content_type else {}

        secret = self._get_secret(name)
        created = False
        if secret is None:
            # Created without the fingerprint label, which is set only once the value is in
            # place: a failed write must not leave a fingerprint vouching for no value.
            with self._guard("create", name):
                try:
                    secret = self._call("create_secret", parent=f"projects/{self.project}",
                                        secret_id=name, secret={
                                            "replication": {"automatic": {}},
                                            "labels": {k: v for k, v in labels.items()
                                                       if k != FP_LABEL},
                                            "annotations": annotations})
                    created = True
                except (gexc.AlreadyExists, gexc.Conflict):   # lost a race: update instead
                    secret = self._get_secret(name)
        if not created and secret is not None:
            refuse_foreign(self._remote(name, secret), name, self.adopt)
        with self._guard("add a version to", name):
            version = self._call("add_secret_version", parent=self._path(name),
                                 payload={"data": data, "data_crc32c": _crc32c(data)})
        number = version.name.rsplit("/", 1)[-1]
        # Labels after the value (as for AWS tags): if this fails, the fingerprint is stale
        # and the next plan pushes again. Labels and annotations others set are kept.
        have_labels = dict(secret.labels) if secret is not None else {}
        have_ann = dict(secret.annotations) if secret is not None else {}
        want_labels, want_ann = {**have_labels, **labels}, {**have_ann, **annotations}
        mask = [f for f, want, have in (("labels", want_labels, have_labels),
                                        ("annotations", want_ann, have_ann)) if want != have]
        if mask and secret is not None:
            with self._guard("update labels of", name):
                self._call("update_secret", secret={
                    "name": self._path(name), "labels": want_labels, "annotations": want_ann,
                    "etag": secret.etag}, update_mask={"paths": mask})
        if not created:
            self._prune(name, int(number))
        return RemoteSecret(name=name, labels=want_labels, version=number,
                            updated=version.create_time or None, content_type=content_type)

    def _prune(self, name: str, newest: int) -> None:
        """Destroy enabled versions beyond the newest `keep_versions`. Best effort: the new
        value is already in place, and the next put prunes again."""
        if not self.keep_versions or newest <= self.keep_versions:
            return                     # numbers start at 1: there cannot be more enabled ones
        try:
            with self._guard("prune versions of", name):
                enabled = [v for v in self._call("list_secret_versions", parent=self._path(name),
                                                 filter="state:ENABLED")
                           if v.state == v.State.ENABLED]
                enabled.sort(key=lambda v: int(v.name.rsplit("/", 1)[-1]), reverse=True)
                for v in enabled[self.keep_versions:]:
                    self._call("destroy_secret_version", name=v.name, etag=v.etag)
        except ProviderError as exc:
            log.warning("%s", exc)

    def delete(self, name: str, *, purge: bool = False) -> None:
        """Idempotent. Google deletes a secret and all its versions at once; `purge` has no
        extra meaning here. The etag guards against a change between the check and the delete."""
        from google.api_core import exceptions as gexc
        validate_name("gcp", name)
        secret = self._get_secret(name)
        if secret is None:
            return
        refuse_foreign(self._remote(name, secret), name, self.adopt)
        with self._guard("delete", name):
            try:
                self._call("delete_secret", name=self._path(name), etag=secret.etag)
            except gexc.NotFound:
                pass


def _crc32c(data: bytes) -> int:
    import google_crc32c
    return google_crc32c.value(data)


def build_client(endpoint: str | None = None, transport: str = "grpc", insecure: bool = False):
    """A SecretManagerServiceClient: ADC against Google, or an emulator at `endpoint`."""
    from google.cloud import secretmanager
    if transport not in ("grpc", "rest"):
        raise ConfigError(f"gcp transport must be 'grpc' or 'rest', not {transport!r}")
    if insecure and not endpoint:
        raise ConfigError("gcp: insecure = true needs an endpoint (host:port of an emulator)")
    if insecure and transport == "grpc":
        import grpc
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport)
        return secretmanager.SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(endpoint)))
    if insecure:
        from google.auth.credentials import AnonymousCredentials
        return secretmanager.SecretManagerServiceClient(
            transport="rest", credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://{endpoint}"})
    options = {"api_endpoint": endpoint} if endpoint else None
    return secretmanager.SecretManagerServiceClient(transport=transport, client_options=options)


def from_destination(dest: Any) -> GcpProvider:
    from google.auth import exceptions as auth_exc
    try:
        client = build_client(getattr(dest, "endpoint", None),
                              getattr(dest, "transport", None) or "grpc",
                              bool(getattr(dest, "insecure", False)))
    except auth_exc.GoogleAuthError as exc:
        raise ProviderError(f"gcp: no usable Google credentials (Application Default "
                            f"Credentials): {exc}", destination=getattr(dest, "name", None))
    keep = getattr(dest, "keep_versions", None)
    return GcpProvider(client, dest.project, adopt=bool(getattr(dest, "adopt", False)),
                       keep_versions=2 if keep is None else keep,
                       destination=getattr(dest, "name", None))
