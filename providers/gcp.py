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
from typing import Any, Literal
from collections.abc import Iterator, Mapping

from pydantic import Field, ValidationInfo, field_validator

from providers.base import (
    CERT_LABEL,
    FP_LABEL,
    LOOPBACK,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    BaseProvider,
    DestinationBase,
    insecure_note,
    refuse_off_loopback,
    url_host,
    NameRule,
    ProviderDescriptor,
    QuotaRule,
    RemoteSecret,
    name_destination,
)
from sync.errors import ConfigError, ProviderError, Throttled, UsageError

log = logging.getLogger(__name__)

SERVICE = "Google Secret Manager"
MAX_PAYLOAD = 65536
MAX_PAGE_SIZE = 25000  # ListSecrets caps page_size here; 0 lets the server decide
CONTENT_TYPE_ANNOTATION = "certsync-content-type"
# 1-255 chars of letters, digits, underscore and hyphen
NAME_RULE = NameRule(re.compile(r"[A-Za-z0-9_-]+"), 255, "1-255 characters of letters, digits, '_' and '-'")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


class GcpDestination(DestinationBase):
    provider: Literal["gcp"] = Field(description="The cloud: gcp (Google Secret Manager).")
    project: str = Field(description="Google Cloud project ID that holds the secrets.")
    endpoint: str | None = Field(
        None, description=("host:port of the Secret Manager API, e.g. an emulator; unset: Google's.")
    )
    transport: Literal["grpc", "rest"] = Field("grpc", description="API transport: grpc or rest.")
    insecure: bool = Field(False, description="Plaintext channel, for an emulator only.")
    keep_versions: int = Field(
        default=2,
        ge=1,
        description=("Enabled versions kept per secret after a push; older enabled ones are destroyed."),
    )

    @field_validator("insecure")
    @classmethod
    def _plaintext_only_to_this_machine(cls, value: bool, info: ValidationInfo) -> bool:
        if value:
            endpoint = info.data.get("endpoint")
            if not endpoint:
                raise ValueError(f"insecure = true needs an endpoint (host:port of an emulator on {LOOPBACK})")
            refuse_off_loopback("insecure = true (a plaintext channel)", url_host(endpoint), info)
        return value

    def insecure_transport(self) -> str | None:
        if not self.insecure:
            return None
        return insecure_note("insecure = true: a plaintext channel, no TLS", url_host(self.endpoint))


def validate_labels(name: str, labels: Mapping[str, str]) -> None:
    """Google's label rules, checked before any call (ASCII subset of what the API allows)."""
    if len(labels) > 64:
        raise UsageError(f"secret {name!r} has {len(labels)} labels; Google allows at most 64")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise UsageError(
                f"invalid Google label key {key!r} for secret {name!r}: 1-63 "
                "lowercase letters, digits, '_' or '-', starting with a letter"
            )
        if not _LABEL_VALUE.fullmatch(value):
            raise UsageError(
                f"invalid Google label value {value!r} (key {key!r}) for secret "
                f"{name!r}: at most 63 lowercase letters, digits, '_' or '-'"
            )


def default_retry(timeout: float = 120.0, on_error: Any = None):
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry, if_exception_type

    return Retry(
        predicate=if_exception_type(gexc.TooManyRequests, gexc.ServiceUnavailable),
        initial=1.0,
        maximum=32.0,
        multiplier=2.0,
        timeout=timeout,
        on_error=on_error,
    )


class GcpProvider(BaseProvider[Any]):
    """Handle (`current`): the Secret (labels, annotations, etag), without its versions."""

    kind = "gcp"
    service = SERVICE
    name_rule = NAME_RULE
    max_payload = MAX_PAYLOAD

    def __init__(
        self,
        client: Any,
        project: str,
        *,
        adopt: bool = False,
        keep_versions: int = 2,
        retry: Any = None,
        timeout: float | None = 60.0,
        destination: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        """page_size: secrets per ListSecrets page (1..25000; default the service maximum)."""
        if keep_versions is None or keep_versions < 0:
            raise ConfigError(f"keep_versions must be 0 (no pruning) or more, got {keep_versions}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
        super().__init__(adopt=adopt, destination=destination)
        self.page_size = page_size
        self._client = client
        self.project = project
        self.keep_versions = keep_versions
        self._retry = retry if retry is not None else default_retry(on_error=self._retried)
        self._timeout = timeout

    # -- hooks ------------------------------------------------------------------------------------

    def _list(self) -> Iterator[RemoteSecret]:
        """Secrets labelled managed-by=certsync (server-side filter; the template re-checks)."""
        return self._pages(filter=f"labels.{MANAGED_BY}={MANAGED_BY_VALUE}")

    def _list_all(self) -> Iterator[RemoteSecret]:
        return self._pages()

    def _pages(self, **request: Any) -> Iterator[RemoteSecret]:
        with self._guard("list", None):
            pager = self._call("list_secrets", parent=f"projects/{self.project}", page_size=self.page_size, **request)
            for secret in pager:  # the pager fetches further pages with the retry
                yield self._remote(secret.name.rsplit("/", 1)[-1], secret)

    def _lookup(self, name: str) -> Any | None:
        from google.api_core import exceptions as gexc

        with self._guard("read", name):
            try:
                return self._call("get_secret", name=self._path(name))
            except gexc.NotFound:
                return None

    def _read(self, name: str, current: Any) -> RemoteSecret:
        """The secret with the value of `latest`; value None when latest cannot be read
        (no versions, or the newest version is disabled/destroyed): a put repairs it."""
        from google.api_core import exceptions as gexc

        with self._guard("read", name):
            try:
                resp = self._call("access_secret_version", name=f"{self._path(name)}/versions/latest")
            except (gexc.NotFound, gexc.FailedPrecondition, gexc.BadRequest):
                # No versions, or latest is DISABLED/DESTROYED (FAILED_PRECONDITION, which
                # arrives as HTTP 400 BadRequest over REST).
                return self._remote(name, current)
        data = resp.payload.data
        if "data_crc32c" in resp.payload and resp.payload.data_crc32c != _crc32c(data):
            raise ProviderError(
                f"gcp: the value of secret {name!r} in project {self.project!r} failed its CRC32C check"
            )
        try:
            value: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            value = data
        return self._remote(name, current, version=resp.name.rsplit("/", 1)[-1], value=value)

    def _view(self, name: str, current: Any) -> RemoteSecret:
        return self._remote(name, current)

    def _check_labels(self, name: str, labels: Mapping[str, str]) -> None:
        validate_labels(name, labels)

    def _create(self, name: str, payload: str | bytes, content_type: str, labels: Mapping[str, str]) -> Any:
        """The Secret, without the fingerprint label, which _relabel sets only once the value is
        in place: a failed write must not leave a fingerprint vouching for no value."""
        from google.api_core import exceptions as gexc

        with self._guard("create", name):
            try:
                return self._call(
                    "create_secret",
                    parent=f"projects/{self.project}",
                    secret_id=name,
                    secret={
                        "replication": {"automatic": {}},
                        "labels": {k: v for k, v in labels.items() if k != FP_LABEL},
                        "annotations": _annotations(content_type),
                    },
                )
            except (gexc.AlreadyExists, gexc.Conflict):  # lost a race: update instead
                pass
        current = self._lookup(name)
        if current is not None:
            self._check_owner(name, current, labels[CERT_LABEL])
        return current

    def _write(
        self, name: str, current: Any, payload: str | bytes, content_type: str, labels: Mapping[str, str]
    ) -> Any:
        """A new version (Google keeps each put as one)."""
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        with self._guard("add a version to", name):
            return self._call(
                "add_secret_version", parent=self._path(name), payload={"data": data, "data_crc32c": _crc32c(data)}
            )

    def _relabel(
        self, name: str, current: Any, written: Any, content_type: str, labels: Mapping[str, str]
    ) -> RemoteSecret:
        """Labels and annotations others set are kept; the update carries the etag read by
        _lookup, so a change made meanwhile is not overwritten. Then old versions are pruned."""
        number = written.name.rsplit("/", 1)[-1]
        annotations = _annotations(content_type)
        have_labels = dict(current.labels) if current is not None else {}
        have_ann = dict(current.annotations) if current is not None else {}
        want_labels, want_ann = {**have_labels, **labels}, {**have_ann, **annotations}
        mask = [
            f
            for f, want, have in (("labels", want_labels, have_labels), ("annotations", want_ann, have_ann))
            if want != have
        ]
        if mask and current is not None:
            with self._guard("update labels of", name):
                self._call(
                    "update_secret",
                    secret={
                        "name": self._path(name),
                        "labels": want_labels,
                        "annotations": want_ann,
                        "etag": current.etag,
                    },
                    update_mask={"paths": mask},
                )
        self._prune(name, int(number))
        return RemoteSecret(
            name=name,
            labels=want_labels,
            version=number,
            updated=written.create_time or None,
            content_type=content_type,
        )

    def _remove(self, name: str, current: Any, *, purge: bool) -> None:
        """Google deletes a secret and all its versions at once; `purge` has no extra meaning
        here. The etag guards against a change between the check and the delete."""
        from google.api_core import exceptions as gexc

        with self._guard("delete", name):
            try:
                self._call("delete_secret", name=self._path(name), etag=current.etag)
            except gexc.NotFound:
                pass

    # -- helpers ----------------------------------------------------------------------------------

    def _retried(self, exc: Exception) -> None:
        """The retry's on_error: a RESOURCE_EXHAUSTED answer tells the pacing to slow down."""
        from google.api_core import exceptions as gexc

        if isinstance(exc, gexc.TooManyRequests):
            self._throttled()

    def _path(self, name: str) -> str:
        return f"projects/{self.project}/secrets/{name}"

    def _call(self, method: str, **request: Any) -> Any:
        return getattr(self._client, method)(request=request, retry=self._retry, timeout=self._timeout)

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
        return cls(f"{where}: {reason}")

    @contextlib.contextmanager
    def _guard(self, action: str, name: str | None) -> Iterator[None]:
        """Turn Google and transport failures inside the block into one-line ProviderErrors."""
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        try:
            yield
        except (gexc.GoogleAPIError, auth_exc.GoogleAuthError, OSError) as exc:
            raise self._error(exc, action, name) from exc

    @staticmethod
    def _remote(name: str, secret: Any, **kw: Any) -> RemoteSecret:
        labels = dict(secret.labels)
        return RemoteSecret(
            name=name,
            labels=labels,
            updated=secret.create_time or None,
            content_type=secret.annotations.get(CONTENT_TYPE_ANNOTATION),
            **kw,
        )

    def _prune(self, name: str, newest: int) -> None:
        """Destroy enabled versions beyond the newest `keep_versions`. Best effort: the new
        value is already in place, and the next put prunes again."""
        if not self.keep_versions or newest <= self.keep_versions:
            return  # numbers start at 1: there cannot be more enabled ones
        try:
            with self._guard("prune versions of", name):
                enabled = [
                    v
                    for v in self._call("list_secret_versions", parent=self._path(name), filter="state:ENABLED")
                    if v.state == v.State.ENABLED
                ]
                enabled.sort(key=lambda v: int(v.name.rsplit("/", 1)[-1]), reverse=True)
                for v in enabled[self.keep_versions :]:
                    self._call("destroy_secret_version", name=v.name, etag=v.etag)
        except ProviderError as exc:
            log.warning("%s", exc)


def _annotations(content_type: str) -> dict[str, str]:
    return {CONTENT_TYPE_ANNOTATION: content_type} if content_type else {}


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
    if insecure and endpoint and transport == "grpc":  # (endpoint: checked just above)
        import grpc
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        return secretmanager.SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(endpoint))
        )
    if insecure:
        from google.auth.credentials import AnonymousCredentials

        return secretmanager.SecretManagerServiceClient(
            transport="rest", credentials=AnonymousCredentials(), client_options={"api_endpoint": f"http://{endpoint}"}
        )
    options = {"api_endpoint": endpoint} if endpoint else None
    return secretmanager.SecretManagerServiceClient(transport=transport, client_options=options)


def from_destination(dest: Any) -> GcpProvider:
    from google.auth import exceptions as auth_exc

    try:
        client = build_client(
            getattr(dest, "endpoint", None),
            getattr(dest, "transport", None) or "grpc",
            bool(getattr(dest, "insecure", False)),
        )
    except auth_exc.GoogleAuthError as exc:
        error = ProviderError(f"gcp: no usable Google credentials (Application Default Credentials): {exc}")
        raise (name_destination(error, dest.name) if getattr(dest, "name", None) else error) from None
    keep = getattr(dest, "keep_versions", None)
    return GcpProvider(
        client,
        dest.project,
        adopt=bool(getattr(dest, "adopt", False)),
        keep_versions=2 if keep is None else keep,
        destination=getattr(dest, "name", None),
    )


def _quota_domain(dest: GcpDestination) -> str:
    return f"gcp:{dest.endpoint or ''}:{dest.project}"


DESCRIPTOR = ProviderDescriptor(
    config=GcpDestination,
    adapter=GcpProvider,
    factory=from_destination,
    # 600 writes/min per project; a push is AddSecretVersion + UpdateSecret (labels) and, once
    # keep_versions is reached, DestroySecretVersion; a delete is one DeleteSecret.
    # Reads: 600/min per project (GetSecret, ListSecrets pages); AccessSecretVersion has its own
    # 90,000/min, so a `get` (GetSecret + AccessSecretVersion) costs one read.
    # A push and a delete look the secret up first (GetSecret: a read); ListSecrets pages hold up
    # to 25,000 secrets.
    quota=QuotaRule(
        calls_per_second=10.0,
        calls_per_push=3.0,
        calls_per_delete=1.0,
        reads_per_second=10.0,
        calls_per_read=1.0,
        reads_per_push=1.0,
        reads_per_delete=1.0,
        page_size=MAX_PAGE_SIZE,
    ),
    quota_domain=_quota_domain,
)
