"""AWS Certificate Manager adapter (`provider = "aws-acm"`): imported certificates.

Load balancers and CloudFront take certificates from ACM only, by ARN. The ARN is therefore the
stable identity: a renewal re-imports into the SAME ARN (ImportCertificate with CertificateArn),
so listeners and distributions keep pointing at it. ACM certificates have no names; the
destination's name for one (the certificate's name, or `{ to = ..., name = ... }`) is its `Name`
tag (the column the ACM console shows), next to the ownership tags managed-by, certsync-cert and
certsync-fp. The payload is always the `pem` rendering (leaf, intermediates, PKCS#8 key), split
here into ImportCertificate's Certificate, CertificateChain and PrivateKey.

Listing. ListCertificates returns no tags: each certificate's tags cost one ListTagsForCertificate.
ACM charges nothing per API call (imported certificates are free too); what a call costs is
quota: per account and region ListCertificates ~1/s (1,000 summaries a page), ListTagsForCertificate
10/s, DescribeCertificate and GetCertificate 10/s, AddTagsToCertificate 5/s, ImportCertificate 1/s,
DeleteCertificate 10/s (ACM quotas page, "API rate quotas"). To keep it cheap: one listing per
run builds a Name -> ARN index that every later look-up uses (no listing per certificate); only
IMPORTED certificates have their tags read (ACM-issued and private ones can never be ours); and
plan decides "unchanged" from the tags alone (certsync-fp), never reading a certificate body.
Imports also count against the yearly quota of imported certificates (twice the account's
certificate quota, 5,000 by default): a no-op run imports nothing.

Verify after write: GetCertificate reads the certificate back by ARN and its SHA-256 must be the
leaf's that was imported. A delete is refused while the certificate is in use (DescribeCertificate
InUseBy: the error names the resources). ACM's integrated services take RSA 2048 and EC P-256/P-384
keys only; config load refuses other key types for a certificate routed here (KEY_TYPES).

boto3 is imported only in `from_destination`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from typing import Any, Literal
from collections.abc import Iterator, Mapping

from pydantic import Field, ValidationInfo, field_validator

from providers.aws import THROTTLING_CODES, _one_line, _plain_http
from providers.base import (
    BaseProvider,
    DestinationBase,
    NameRule,
    ProviderDescriptor,
    QuotaRule,
    RemoteSecret,
    insecure_note,
    name_destination,
    refuse_off_loopback,
    url_host,
)
from sync.errors import ConfigError, PayloadTooLarge, ProviderError, Throttled, VerifyError

SERVICE = "AWS Certificate Manager"
NAME_TAG = "Name"
# ImportCertificate's limits: Certificate 32 KiB, PrivateKey 5 KiB, CertificateChain 2 MiB
MAX_CERTIFICATE, MAX_KEY, MAX_CHAIN = 32_768, 5_120, 2_097_152
MAX_PAYLOAD = MAX_CERTIFICATE + MAX_KEY + MAX_CHAIN
# What ELB/CloudFront accept from an imported certificate (certsync's key names); config refuses others
KEY_TYPES = ("rsa-2048", "ec-p256", "ec-p384")
# ListCertificates returns only RSA 1024/2048 certificates unless asked for every key type
LIST_KEY_TYPES = ["RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1"]
# a tag value: 0-256 of letters, digits, spaces and _.:/=+-@ (ACM); names here: no spaces, 1-256
NAME_RULE = NameRule(re.compile(r"[A-Za-z0-9_.:/=+@-]+"), 256, "1-256 characters of letters, digits and _.:/=+@-")
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\r?\n.*?\r?\n-----END \1-----\r?\n?", re.S)


class AcmDestination(DestinationBase):
    provider: Literal["aws-acm"] = Field(
        description=("The cloud: aws-acm (AWS Certificate Manager: imported certificates, one ARN across renewals).")
    )
    format: Literal["pem"] = Field(
        "pem", description=("ACM imports leaf, chain and key: always pem (split into ImportCertificate's fields).")
    )
    region: str | None = Field(None, description="AWS region; unset: the default chain's (AWS_REGION, profile).")
    endpoint_url: str | None = Field(
        None, description=("ACM endpoint, e.g. http://127.0.0.1:4566 for LocalStack; unset: AWS.")
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


def from_destination(dest: Any) -> AcmProvider:
    """The adapter for a destination, with boto3's default credential chain."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    from providers.aws import _throttle_watch

    config = Config(
        retries={"mode": "standard", "max_attempts": 6},
        max_pool_connections=16,
        connect_timeout=5,
        read_timeout=30,
        user_agent_extra="certsync",
    )
    try:
        client = boto3.session.Session().client(
            "acm",
            region_name=getattr(dest, "region", None),
            endpoint_url=getattr(dest, "endpoint_url", None),
            config=config,
        )
    except NoRegionError:
        error = ConfigError("no AWS region; set region in the destination or AWS_DEFAULT_REGION")
        raise (name_destination(error, dest.name) if getattr(dest, "name", None) else error) from None
    provider = AcmProvider(client, adopt=getattr(dest, "adopt", False), destination=getattr(dest, "name", None))
    client.meta.events.register("needs-retry.acm", _throttle_watch(provider))
    return provider


class AcmProvider(BaseProvider[RemoteSecret]):
    """Handle (`current`): the certificate's tags, with version = its ARN (value never read:
    ACM does not hand out an imported certificate's key)."""

    kind = "aws-acm"
    service = SERVICE
    name_rule = NAME_RULE
    max_payload = MAX_PAYLOAD

    def __init__(
        self, client: Any, *, adopt: bool = False, page_size: int = 1000, destination: str | None = None
    ) -> None:
        super().__init__(adopt=adopt, destination=destination)
        self.client, self.page_size = client, page_size
        self._index: dict[str, list[str]] | None = None  # Name tag -> ARNs, from the last listing
        self._index_lock = threading.Lock()

    # --- listing and the Name -> ARN index -------------------------------------------------------

    def _list(self) -> Iterator[RemoteSecret]:
        found = list(self._scan())
        with self._index_lock:
            self._index = _index_of(found)
        return iter(found)

    def _list_all(self) -> Iterator[RemoteSecret]:
        return self._list()

    def _scan(self) -> Iterator[RemoteSecret]:
        """Every imported certificate with its tags: ListCertificates pages, one ListTagsForCertificate each."""
        pages = self.client.get_paginator("list_certificates").paginate(
            Includes={"keyTypes": LIST_KEY_TYPES}, PaginationConfig={"PageSize": self.page_size}
        )
        with self._errors("ListCertificates", "*"):
            summaries = [s for page in pages for s in page.get("CertificateSummaryList", [])]
        for summary in summaries:
            if summary.get("Type", "IMPORTED") != "IMPORTED":
                continue  # issued by ACM or a private CA: never certsync's
            tags = self._tags(summary["CertificateArn"])
            if tags is not None:
                yield _remote(summary["CertificateArn"], tags, summary.get("ImportedAt") or summary.get("CreatedAt"))

    def _tags(self, arn: str) -> dict[str, str] | None:
        """The certificate's tags; None when it is gone."""
        with self._errors("ListTagsForCertificate", arn):
            try:
                found = self.client.list_tags_for_certificate(CertificateArn=arn)
            except self.client.exceptions.ResourceNotFoundException:
                return None
        return {t["Key"]: t.get("Value", "") for t in found.get("Tags", [])}

    def _lookup(self, name: str) -> RemoteSecret | None:
        """The certificate whose Name tag is `name` (from the run's index; its tags read fresh)."""
        with self._index_lock:
            if self._index is None:
                self._index = _index_of(self._scan())
            arns = list(self._index.get(name, ()))
        found = [r for r in (self._fresh(name, arn) for arn in arns) if r is not None]
        if len(found) > 1:
            raise ProviderError(
                f"{SERVICE}: {len(found)} certificates carry tag {NAME_TAG}={name!r} "
                f"({', '.join(r.version or '' for r in found)}); keep one"
            )
        return found[0] if found else None

    def _fresh(self, name: str, arn: str) -> RemoteSecret | None:
        tags = self._tags(arn)
        if tags is None or tags.get(NAME_TAG) != name:  # deleted or renamed since the listing
            self._forget(name, arn)
            return None
        return _remote(arn, tags)

    def _remember(self, name: str, arn: str) -> None:
        with self._index_lock:
            if self._index is not None and arn not in self._index.setdefault(name, []):
                self._index[name].append(arn)

    def _forget(self, name: str, arn: str) -> None:
        with self._index_lock:
            if self._index is not None and arn in self._index.get(name, ()):
                self._index[name].remove(arn)

    # --- reads and writes ------------------------------------------------------------------------

    def _read(self, name: str, current: RemoteSecret) -> RemoteSecret:
        return current

    def _prepare(self, name: str, payload: str | bytes) -> str:
        # the pem bundle is split and checked (key type, part sizes) before the import itself,
        # in _create/_write: after the look-up, before any write
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload

    def _create(self, name: str, payload: str | bytes, content_type: str, labels: Mapping[str, str]) -> RemoteSecret:
        """ImportCertificate with the tags (real ACM applies them with the import; LocalStack
        ignores them, so AddTagsToCertificate follows), then verify."""
        leaf, chain, key = _parts(name, payload)
        tags = _tag_list({**labels, NAME_TAG: name})
        with self._errors("ImportCertificate", name):
            arn = self.client.import_certificate(**_import_args(leaf, chain, key), Tags=tags)["CertificateArn"]
        self._remember(name, arn)
        with self._errors("AddTagsToCertificate", name):
            self.client.add_tags_to_certificate(CertificateArn=arn, Tags=tags)
        self._verify(name, arn, leaf)
        return _remote(arn, {**labels, NAME_TAG: name})

    def _write(
        self,
        name: str,
        current: RemoteSecret | None,
        payload: str | bytes,
        content_type: str,
        labels: Mapping[str, str],
    ) -> str:
        """Re-import into the same ARN (ACM refuses Tags on a re-import: _relabel sets them)."""
        if current is None:  # _create imports new certificates; a re-import needs the ARN
            raise ProviderError(f"ACM: no certificate to re-import for {name!r}")
        leaf, chain, key = _parts(name, payload)
        with self._errors("ImportCertificate", name):
            self.client.import_certificate(CertificateArn=current.version, **_import_args(leaf, chain, key))
        self._verify(name, current.version or "", leaf)
        return current.version or ""

    def _relabel(
        self, name: str, current: RemoteSecret | None, written: str, content_type: str, labels: Mapping[str, str]
    ) -> RemoteSecret:
        """Tags after the certificate, all of ours every time (one call either way; LocalStack
        drops a certificate's tags on re-import, real ACM keeps them); none removed."""
        wanted = {**labels, NAME_TAG: name}
        with self._errors("AddTagsToCertificate", name):
            self.client.add_tags_to_certificate(CertificateArn=written, Tags=_tag_list(wanted))
        return _remote(written, {**(current.labels if current else {}), **wanted})

    def _verify(self, name: str, arn: str, leaf: bytes) -> None:
        """GetCertificate by ARN: ACM must now hand out the leaf just imported."""
        with self._errors("GetCertificate", name):
            got = self.client.get_certificate(CertificateArn=arn).get("Certificate", "")
        if _sha256(got.encode()) != _sha256(leaf):
            raise VerifyError(
                f"verify after write: ACM certificate {name!r} ({arn}) does not hold the certificate just imported"
            )

    def _remove(self, name: str, current: RemoteSecret, *, purge: bool) -> None:
        """DeleteCertificate, refused while a load balancer, distribution or other resource uses it
        (ACM itself refuses with ResourceInUseException; DescribeCertificate names the users)."""
        arn = current.version or ""
        with self._errors("DescribeCertificate", name):
            try:
                users = self.client.describe_certificate(CertificateArn=arn)["Certificate"].get("InUseBy") or []
            except self.client.exceptions.ResourceNotFoundException:
                self._forget(name, arn)
                return
        if users:
            raise ProviderError(
                f"{SERVICE}: certificate {name!r} ({arn}) is in use by {', '.join(users)}; "
                "detach it there first (not deleted)"
            )
        with self._errors("DeleteCertificate", name):
            with contextlib.suppress(self.client.exceptions.ResourceNotFoundException):
                self.client.delete_certificate(CertificateArn=arn)
        self._forget(name, arn)

    # --- errors ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, operation: str, name: str):
        """botocore failures as one-line ProviderErrors naming the certificate and AWS code (the
        key is never in a message: ACM does not echo it, and only the first line is kept)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            cls = Throttled if code in THROTTLING_CODES else ProviderError
            failure = cls(
                f"{SERVICE} {operation} on {name!r} failed: {code}: {_one_line(error.get('Message', ''), None)}"
            )
            failure.code = code  # type: ignore[attr-defined]
            raise failure from None
        except BotoCoreError as exc:
            raise ProviderError(f"{SERVICE} {operation} on {name!r} failed: {_one_line(str(exc), None)}") from None


# --- helpers --------------------------------------------------------------------------------------


def _parts(name: str, payload: str | bytes) -> tuple[bytes, bytes | None, bytes]:
    """(leaf, chain or None, key) PEM from the pem payload; refused unless ACM can import it."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    blocks = [(m.group(1), m.group(0).strip() + "\n") for m in _PEM.finditer(text)]
    certs = [b for kind, b in blocks if kind == "CERTIFICATE"]
    keys = [b for kind, b in blocks if kind.endswith("PRIVATE KEY")]
    if not certs or len(keys) != 1:
        raise ProviderError(
            f"{SERVICE}: payload for {name!r} must be PEM with a certificate, its chain and one "
            'private key (format = "pem")'
        )
    leaf, chain, key = certs[0].encode(), "".join(certs[1:]).encode() or None, keys[0].encode()
    for part, size, limit in (
        ("certificate", len(leaf), MAX_CERTIFICATE),
        ("private key", len(key), MAX_KEY),
        ("chain", len(chain or b""), MAX_CHAIN),
    ):
        if size > limit:
            raise PayloadTooLarge(f"{part} for {name!r} is {size} bytes; {SERVICE} allows at most {limit}")
    _check_key(name, key)
    return leaf, chain, key


def _check_key(name: str, key_pem: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ProviderError(f"{SERVICE}: the private key for {name!r} is not an unencrypted PEM key") from None
    ok = (isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in ("secp256r1", "secp384r1")
    )
    if not ok:
        raise ProviderError(f"{SERVICE}: key of {name!r} is not one ACM's services accept ({', '.join(KEY_TYPES)})")


def _import_args(leaf: bytes, chain: bytes | None, key: bytes) -> dict[str, bytes]:
    args = {"Certificate": leaf, "PrivateKey": key}
    if chain:
        args["CertificateChain"] = chain
    return args


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _sha256(pem: bytes) -> str | None:
    from cryptography import x509

    try:
        return hashlib.sha256(x509.load_pem_x509_certificate(pem).tbs_certificate_bytes).hexdigest()
    except ValueError:
        return None


def _remote(arn: str, tags: Mapping[str, str], updated: Any = None) -> RemoteSecret:
    """The Name tag is the certificate's name here, not one of its labels; unnamed: its ARN."""
    labels = {k: v for k, v in tags.items() if k != NAME_TAG}
    return RemoteSecret(name=tags.get(NAME_TAG) or arn, labels=labels, version=arn, updated=updated)


def _index_of(found: Iterator[RemoteSecret] | list[RemoteSecret]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for remote in found:
        if remote.version and remote.name != remote.version:
            index.setdefault(remote.name, []).append(remote.version)
    return index


def _quota_domain(dest: AcmDestination) -> str:
    return f"aws-acm:{dest.endpoint_url or ''}:{dest.region or 'default'}"


DESCRIPTOR = ProviderDescriptor(
    config=AcmDestination,
    adapter=AcmProvider,
    factory=from_destination,
    # Writes: ImportCertificate 1/s per account and region is the bottleneck (AddTagsToCertificate
    # 5/s and DeleteCertificate 10/s have their own buckets): a push is one import; a delete, at
    # 10/s, takes a tenth of an import's slot.
    # Reads (10/s: ListTagsForCertificate, DescribeCertificate, GetCertificate): a push looks the
    # certificate's tags up and reads it back (GetCertificate); a delete looks up and describes
    # (InUseBy); a `get` is one ListTagsForCertificate. A listing costs one ListTagsForCertificate
    # per certificate (page_size 1; ListCertificates itself pages 1,000 at a time).
    quota=QuotaRule(
        calls_per_second=1.0,
        calls_per_push=1.0,
        calls_per_delete=0.1,
        reads_per_second=10.0,
        calls_per_read=1.0,
        reads_per_push=2.0,
        reads_per_delete=2.0,
        page_size=1,
    ),
    quota_domain=_quota_domain,
    key_types=KEY_TYPES,
)
