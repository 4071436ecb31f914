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
import time
from typing import Any, Iterator, Mapping

from providers.base import (MANAGED_BY, MANAGED_BY_VALUE, RemoteSecret, check_payload_size,
                            refuse_foreign, validate_name)
from sync.errors import ConfigError, ProviderError, Throttled

SERVICE = "AWS Secrets Manager"
MAX_PAYLOAD = 64 * 1024
MAX_PAGE_SIZE = 100
THROTTLING_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException",
                    "RequestLimitExceeded"}


def from_destination(dest: Any) -> "AwsProvider":
    """Build the adapter for a destination, with boto3's default credential chain."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    config = Config(retries={"mode": "standard", "max_attempts": 6},
                    connect_timeout=5, read_timeout=30, user_agent_extra="certsync")
    try:
        client = boto3.session.Session().client(
            "secretsmanager", region_name=getattr(dest, "region", None),
            endpoint_url=getattr(dest, "endpoint_url", None), config=config)
    except NoRegionError:
        raise ConfigError(f"destination {getattr(dest, 'name', '?')!r}: no AWS region; set "
                          f"region in the destination or AWS_DEFAULT_REGION") from None
    return AwsProvider(client, adopt=getattr(dest, "adopt", False),
                       recovery_window_days=getattr(dest, "recovery_window_days", None))


class AwsProvider:
    kind = "aws"

    def __init__(self, client: Any, *, adopt: bool = False, recovery_window_days: int | None = None,
                 page_size: int = MAX_PAGE_SIZE, name_free_timeout: float = 30.0) -> None:
        if recovery_window_days is not None and not 7 <= recovery_window_days <= 30:
            raise ConfigError(f"recovery_window_days must be between 7 and 30, "
                              f"not {recovery_window_days}")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.client = client
        self.adopt = adopt
        self.recovery_window_days = recovery_window_days
        self.name_free_timeout = name_free_timeout   # seconds to wait for a force delete to finish
        self.page_size = page_size

    # --- protocol ---------------------------------------------------------------------------

    def list_managed(self) -> Iterator[RemoteSecret]:
        # Tag filters match by prefix and independently of each other: check the pair again here.
        filters = [{"Key": "tag-key", "Values": [MANAGED_BY]},
                   {"Key": "tag-value", "Values": [MANAGED_BY_VALUE]}]
        pages = self.client.get_paginator("list_secrets").paginate(
            Filters=filters, PaginationConfig={"PageSize": self.page_size})
        with self._errors("ListSecrets", "*"):
            for page in pages:
                for entry in page["SecretList"]:
                    secret = _remote(entry)
                    if secret.managed:
                        yield secret

    def get(self, name: str) -> RemoteSecret | None:
        validate_name(self.kind, name)
        described = self._describe(name)
        if described is None or described.get("DeletedDate"):
            return None
        with self._errors("GetSecretValue", name):
            try:
                value = self.client.get_secret_value(SecretId=name)
            except self.client.exceptions.ResourceNotFoundException:
                return _remote(described)          # exists, but has no current value
        return _remote(described, version=value["VersionId"],
                       value=value.get("SecretString", value.get("SecretBinary")))

    def put(self, name: str, payload: str | bytes, *, content_type: str,
            labels: Mapping[str, str]) -> RemoteSecret:
        validate_name(self.kind, name)
        check_payload_size(name, payload, MAX_PAYLOAD, SERVICE)
        value = {"SecretBinary" if isinstance(payload, bytes) else "SecretString": payload}
        described = self._describe(name)
        if described is None:
            with self._errors("CreateSecret", name, payload):
                created = self._create(name, value, labels)
            return RemoteSecret(name, labels=dict(labels), version=created["VersionId"])

        existing = _remote(described)
        refuse_foreign(existing, name, self.adopt)
        if described.get("DeletedDate"):
            with self._errors("RestoreSecret", name):
                self.client.restore_secret(SecretId=name)
        with self._errors("PutSecretValue", name, payload):
            written = self.client.put_secret_value(SecretId=name, **value)
        # Tags after the value: if tagging fails, the fingerprint tag is stale and the next plan
        # pushes again, rather than a fresh fingerprint vouching for an old value.
        changed = {k: v for k, v in labels.items() if existing.labels.get(k) != v}
        if changed:
            with self._errors("TagResource", name):
                self.client.tag_resource(
                    SecretId=name, Tags=[{"Key": k, "Value": v} for k, v in changed.items()])
        return RemoteSecret(name, labels={**existing.labels, **labels},
                            version=written["VersionId"])

    def delete(self, name: str, *, purge: bool = False) -> None:
        validate_name(self.kind, name)
        described = self._describe(name)
        if described is None:
            return
        refuse_foreign(_remote(described), name, self.adopt)
        force = purge or self.recovery_window_days is None
        if described.get("DeletedDate") and not force:
            return                                      # already scheduled for deletion
        window = ({"ForceDeleteWithoutRecovery": True} if force
                  else {"RecoveryWindowInDays": self.recovery_window_days})
        with self._errors("DeleteSecret", name):
            with contextlib.suppress(self.client.exceptions.ResourceNotFoundException):
                self.client.delete_secret(SecretId=name, **window)

    # --- helpers ----------------------------------------------------------------------------

    def _create(self, name: str, value: Mapping[str, Any], labels: Mapping[str, str]) -> Mapping[str, Any]:
        """CreateSecret, waiting out a force delete still finishing: AWS deletes in the background,
        and for a few seconds the name is neither describable nor free ("scheduled for deletion").
        botocore does not retry that error, so this waits, briefly and boundedly."""
        from botocore.exceptions import ClientError

        deadline, pause = time.monotonic() + self.name_free_timeout, 0.5
        while True:
            try:
                return self.client.create_secret(
                    Name=name, Tags=[{"Key": k, "Value": v} for k, v in labels.items()], **value)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                if (error.get("Code") != "InvalidRequestException"
                        or "scheduled for deletion" not in error.get("Message", "")
                        or time.monotonic() + pause > deadline):
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 4.0)

    def _describe(self, name: str) -> dict | None:
        """DescribeSecret, or None when the name does not exist (pending deletion exists)."""
        with self._errors("DescribeSecret", name):
            try:
                return self.client.describe_secret(SecretId=name)
            except self.client.exceptions.ResourceNotFoundException:
                return None

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
            raise cls(f"{SERVICE} {operation} on {name!r} failed: {code}: {message}") from None
        except BotoCoreError as exc:
            raise ProviderError(f"{SERVICE} {operation} on {name!r} failed: "
                                f"{_one_line(str(exc), payload)}") from None


def _remote(entry: Mapping[str, Any], *, version: str | None = None,
            value: str | bytes | None = None) -> RemoteSecret:
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
