"""AWS Secrets Manager adapter.

A str payload is stored as SecretString, bytes as SecretBinary; Secrets Manager has no content
type, so `content_type` is not stored. Labels are secret tags. `put` writes the value with
PutSecretValue only: description, resource policy, rotation, replicas and tags certsync does
not set are never touched (tags are only added or changed, never removed).

A name that is pending deletion (deleted with a recovery window) cannot be created again nor,
on real AWS, written: `put` restores it first (RestoreSecret), then writes the new value.

boto3 is imported only in `from_destination`, so commands that never reach AWS do not load it.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any, Literal
from collections.abc import Iterator, Mapping

from pydantic import Field, ValidationInfo, field_validator

from providers.base import (
    insecure_note,
    refuse_off_loopback,
    url_host,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    BaseProvider,
    DestinationBase,
    NameRule,
    ProviderDescriptor,
    QuotaRule,
    RemoteSecret,
    name_destination,
)
from sync.errors import ConfigError, ProviderError, Throttled

SERVICE = "AWS Secrets Manager"
MAX_PAYLOAD = 64 * 1024
MAX_PAGE_SIZE = 100
THROTTLING_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
# 1-512 chars of letters, digits and /_+=.@-
NAME_RULE = NameRule(re.compile(r"[A-Za-z0-9/_+=.@-]+"), 512, "1-512 characters of letters, digits and /_+=.@-")


class AwsDestination(DestinationBase):
    provider: Literal["aws"] = Field(description="The cloud: aws (Secrets Manager).")
    region: str | None = Field(None, description="AWS region; unset: the default chain's (AWS_REGION, profile).")
    endpoint_url: str | None = Field(
        None, description=("Secrets Manager endpoint, e.g. http://127.0.0.1:4566 for LocalStack; unset: AWS.")
    )
    recovery_window_days: int | None = Field(
        default=None,
        ge=7,
        le=30,
        description=(
            "Days a deleted secret can be restored (7-30); unset: deleted at once (force delete, so the name can be "
            "reused straight away)."
        ),
    )

    @field_validator("endpoint_url")
    @classmethod
    def _plain_http_only_to_this_machine(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and _plain_http(value):
            refuse_off_loopback("an http:// endpoint_url (no TLS)", url_host(value), info)
        return value

    def insecure_transport(self) -> str | None:
        if not (self.endpoint_url and _plain_http(self.endpoint_url)):
            return None
        return insecure_note("endpoint_url is http://: no TLS", url_host(self.endpoint_url))


def _plain_http(url: str) -> bool:
    return url.strip().lower().startswith("http://")


def from_destination(dest: Any) -> AwsProvider:
    """Build the adapter for a destination, with boto3's default credential chain."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    # a pool as large as a quota domain's workers (pacing caps them at 64; botocore's default is 10)
    config = Config(
        retries={"mode": "standard", "max_attempts": 6},
        max_pool_connections=64,
        connect_timeout=5,
        read_timeout=30,
        user_agent_extra="certsync",
    )
    try:
        client = boto3.session.Session().client(
            "secretsmanager",
            region_name=getattr(dest, "region", None),
            endpoint_url=getattr(dest, "endpoint_url", None),
            config=config,
        )
    except NoRegionError:
        error = ConfigError("no AWS region; set region in the destination or AWS_DEFAULT_REGION")
        raise (name_destination(error, dest.name) if getattr(dest, "name", None) else error) from None
    provider = AwsProvider(
        client,
        adopt=getattr(dest, "adopt", False),
        recovery_window_days=getattr(dest, "recovery_window_days", None),
        destination=getattr(dest, "name", None),
    )
    client.meta.events.register("needs-retry.secretsmanager", _throttle_watch(provider))
    return provider


def _throttle_watch(provider: BaseProvider[Any]) -> Any:
    """A botocore needs-retry hook that only watches: each throttling answer tells the pacing."""

    def watch(response=None, **_: Any) -> None:
        parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else None
        code = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        if code in THROTTLING_CODES:
            provider._throttled()
        return None  # botocore's own retry decides

    return watch


class AwsProvider(BaseProvider[dict]):
    """Handle (`current`): the DescribeSecret response, which also describes a secret pending
    deletion (DeletedDate set): invisible to get, restored by put."""

    kind = "aws"
    service = SERVICE
    name_rule = NAME_RULE
    max_payload = MAX_PAYLOAD

    def __init__(
        self,
        client: Any,
        *,
        adopt: bool = False,
        recovery_window_days: int | None = None,
        page_size: int = MAX_PAGE_SIZE,
        name_free_timeout: float = 30.0,
        destination: str | None = None,
    ) -> None:
        if recovery_window_days is not None and not 7 <= recovery_window_days <= 30:
            raise ConfigError(f"recovery_window_days must be between 7 and 30, not {recovery_window_days}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        super().__init__(adopt=adopt, destination=destination)
        self.client = client
        self.recovery_window_days = recovery_window_days
        self.name_free_timeout = name_free_timeout  # seconds to wait for a force delete to finish
        self.page_size = page_size

    # --- hooks ------------------------------------------------------------------------------

    def _list(self) -> Iterator[RemoteSecret]:
        # Tag filters match by prefix and independently of each other: the template checks again.
        filters = [{"Key": "tag-key", "Values": [MANAGED_BY]}, {"Key": "tag-value", "Values": [MANAGED_BY_VALUE]}]
        return self._pages(Filters=filters)

    def _list_all(self) -> Iterator[RemoteSecret]:
        # ListSecrets leaves out secrets pending deletion (IncludePlannedDeletion unset): no value to read
        return self._pages()

    def _pages(self, **request: Any) -> Iterator[RemoteSecret]:
        pages = self.client.get_paginator("list_secrets").paginate(
            **request, PaginationConfig={"PageSize": self.page_size}
        )
        with self._errors("ListSecrets", "*"):
            for page in pages:
                for entry in page["SecretList"]:
                    yield _remote(entry)

    def _lookup(self, name: str) -> dict | None:
        """DescribeSecret, or None when the name does not exist (pending deletion exists)."""
        with self._errors("DescribeSecret", name):
            try:
                return self.client.describe_secret(SecretId=name)
            except self.client.exceptions.ResourceNotFoundException:
                return None

    def _read(self, name: str, current: dict) -> RemoteSecret | None:
        if current.get("DeletedDate"):
            return None
        with self._errors("GetSecretValue", name):
            try:
                value = self.client.get_secret_value(SecretId=name)
            except self.client.exceptions.ResourceNotFoundException:
                return _remote(current)  # exists, but has no current value
        return _remote(current, version=value["VersionId"], value=value.get("SecretString", value.get("SecretBinary")))

    def _view(self, name: str, current: dict) -> RemoteSecret:
        return _remote(current)

    def _create(self, name: str, payload: str | bytes, content_type: str, labels: Mapping[str, str]) -> RemoteSecret:
        """CreateSecret with value and tags at once, waiting out a force delete still finishing:
        AWS deletes in the background, and for a few seconds the name is neither describable nor
        free ("scheduled for deletion"). botocore does not retry that error, so this waits,
        briefly and boundedly."""
        from botocore.exceptions import ClientError

        deadline, pause = time.monotonic() + self.name_free_timeout, 0.5
        with self._errors("CreateSecret", name, payload):
            while True:
                try:
                    created = self.client.create_secret(
                        Name=name, Tags=[{"Key": k, "Value": v} for k, v in labels.items()], **_value(payload)
                    )
                    return RemoteSecret(name, labels=dict(labels), version=created["VersionId"])
                except ClientError as exc:
                    error = exc.response.get("Error", {})
                    if (
                        error.get("Code") != "InvalidRequestException"
                        or "scheduled for deletion" not in error.get("Message", "")
                        or time.monotonic() + pause > deadline
                    ):
                        raise
                time.sleep(pause)
                pause = min(pause * 2, 4.0)

    def _already_exists(self, exc) -> bool:
        return getattr(exc, "code", None) == "ResourceExistsException"

    def _written_already(self, name: str, current: dict, labels: Mapping[str, str]) -> RemoteSecret | None:
        if current.get("DeletedDate"):
            return None  # pending deletion: not a write that landed
        return super()._written_already(name, current, labels)

    def _write(
        self, name: str, current: dict | None, payload: str | bytes, content_type: str, labels: Mapping[str, str]
    ) -> dict:
        """PutSecretValue only (description, policy, rotation, replicas untouched); a secret
        pending deletion is restored first. Secrets Manager has no content type."""
        assert current is not None  # _create finishes a new secret: only an existing one gets here
        if current.get("DeletedDate"):
            with self._errors("RestoreSecret", name):
                self.client.restore_secret(SecretId=name)
        with self._errors("PutSecretValue", name, payload):
            return self.client.put_secret_value(SecretId=name, **_value(payload))

    def _relabel(
        self, name: str, current: dict | None, written: dict, content_type: str, labels: Mapping[str, str]
    ) -> RemoteSecret:
        """Tags are only added or changed, never removed; unchanged ones are not sent again."""
        assert current is not None  # as in _write
        existing = _remote(current).labels
        changed = {k: v for k, v in labels.items() if existing.get(k) != v}
        if changed:
            with self._errors("TagResource", name):
                self.client.tag_resource(SecretId=name, Tags=[{"Key": k, "Value": v} for k, v in changed.items()])
        return RemoteSecret(name, labels={**existing, **labels}, version=written["VersionId"])

    def _remove(self, name: str, current: dict, *, purge: bool) -> None:
        force = purge or self.recovery_window_days is None
        if current.get("DeletedDate") and not force:
            return  # already scheduled for deletion
        window = {"ForceDeleteWithoutRecovery": True} if force else {"RecoveryWindowInDays": self.recovery_window_days}
        with self._errors("DeleteSecret", name):
            with contextlib.suppress(self.client.exceptions.ResourceNotFoundException):
                self.client.delete_secret(SecretId=name, **window)

    # --- errors -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, operation: str, name: str, payload: str | bytes | None = None):
        """Turn botocore failures into one-line ProviderErrors naming the secret and AWS code."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            message = _one_line(error.get("Message", ""), payload)
            cls = Throttled if code in THROTTLING_CODES else ProviderError
            failure = cls(f"{SERVICE} {operation} on {name!r} failed: {code}: {message}")
            failure.code = code  # type: ignore[attr-defined]  # read by _already_exists
            raise failure from None
        except BotoCoreError as exc:
            raise ProviderError(f"{SERVICE} {operation} on {name!r} failed: {_one_line(str(exc), payload)}") from None


def _value(payload: str | bytes) -> dict[str, str | bytes]:
    """A str payload is stored as SecretString, bytes as SecretBinary."""
    return {"SecretBinary" if isinstance(payload, bytes) else "SecretString": payload}


def _remote(entry: Mapping[str, Any], *, version: str | None = None, value: str | bytes | None = None) -> RemoteSecret:
    """RemoteSecret from a ListSecrets entry or a DescribeSecret response."""
    stages = entry.get("SecretVersionsToStages") or entry.get("VersionIdsToStages") or {}
    current = next((vid for vid, names in stages.items() if "AWSCURRENT" in names), None)
    return RemoteSecret(
        name=entry["Name"],
        labels={tag["Key"]: tag["Value"] for tag in entry.get("Tags", [])},
        version=version or current,
        updated=entry.get("LastChangedDate") or entry.get("CreatedDate"),
        value=value,
    )


def _one_line(text: str, payload: str | bytes | None) -> str:
    """First line of an AWS message, capped, with the payload blanked should AWS echo it."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", "replace")
    if payload and payload in text:
        text = text.replace(payload, "<payload>")
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _quota_domain(dest: AwsDestination) -> str:
    return f"aws:{dest.endpoint_url or ''}:{dest.region or 'default'}"


DESCRIPTOR = ProviderDescriptor(
    config=AwsDestination,
    adapter=AwsProvider,
    factory=from_destination,
    # PutSecretValue/UpdateSecret 50/s per region (TagResource has its own 50/s bucket);
    # a push is one write, a delete one DeleteSecret.
    # Reads: DescribeSecret and GetSecretValue (a `get` makes both) 10,000/s; ListSecrets is paged
    # 100 to a call.
    # A push and a delete look the secret up first (DescribeSecret: a read).
    quota=QuotaRule(
        calls_per_second=50.0,
        calls_per_push=1.0,
        calls_per_delete=1.0,
        reads_per_second=10_000.0,
        calls_per_read=2.0,
        reads_per_push=1.0,
        reads_per_delete=1.0,
        page_size=100,
    ),
    quota_domain=_quota_domain,
)
