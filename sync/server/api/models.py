"""The REST API's bodies, as pydantic models: they validate requests (strictly: unknown fields
and wrong JSON types are refused) and are the OpenAPI document's schemas (`model_json_schema`).

JSON Schema draws the line the server enforces with 422: a body that matches the schema may
still be refused for its content (400: a CSR that does not parse; 403: names the profile
forbids), which no schema can say.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from sync.pki.crl import REVOKE_REASONS

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_PATTERN = rf"^(\*\.)?({_LABEL}\.)*{_LABEL}$"
SERIAL_PATTERN = r"^(0x)?[0-9a-fA-F]{1,64}$"
HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$"
DURATION_PATTERN = r"^[1-9][0-9]{0,3}[dhms]$"
KEY_TYPES = ("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ed25519")
STATES = ("active", "superseded", "revoked", "retired")

KeyType = Literal["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ed25519"]
State = Literal["active", "superseded", "revoked", "retired"]
Reason = Literal[REVOKE_REASONS]  # type: ignore[valid-type]
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="A store name: 1-63 lowercase letters, digits, '-'.")]
DnsName = Annotated[str, Field(pattern=DNS_PATTERN, max_length=253)]


def valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN[1:-1], name) is not None


def _ip(value: str) -> str:
    return str(ipaddress.ip_address(value))


IpAddress = Annotated[
    str,
    AfterValidator(_ip),
    WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}], "maxLength": 45}),
]
Pem = Annotated[str, Field(min_length=1, max_length=60000)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ------------------------------------------------------------------------------------------
class IssueRequest(_Request):
    """CSR-less issuance: certsync makes the key (the profile's key type unless key_type says
    another it allows) and returns it once. At least one DNS name or IP address (or a common name)."""

    name: Name | None = Field(None, description="Store name; default: made from the first name.")
    common_name: str | None = Field(None, min_length=1, max_length=64)
    dns_names: list[DnsName] = Field(default_factory=list, max_length=100)
    ip_addresses: list[IpAddress] = Field(default_factory=list, max_length=100)
    key_type: KeyType | None = None

    @model_validator(mode="after")
    def _named(self) -> IssueRequest:
        if not (self.dns_names or self.ip_addresses or self.common_name):
            raise ValueError("give at least one of dns_names, ip_addresses, common_name")
        return self


# the same rule, for the schema (and so for clients generated from it)
IssueRequest.model_config["json_schema_extra"] = {
    "examples": [{"dns_names": ["app.example.internal"]}],
    "anyOf": [
        {"required": ["dns_names"], "properties": {"dns_names": {"minItems": 1}}},
        {"required": ["ip_addresses"], "properties": {"ip_addresses": {"minItems": 1}}},
        {"required": ["common_name"], "properties": {"common_name": {"type": "string"}}},
    ],
}
IssueRequest.model_rebuild(force=True)


class SignRequest(_Request):
    """A client's PKCS#10 CSR (PEM), enrolled as by `certsync sign`."""

    csr: Pem
    name: Name | None = Field(None, description="Store name; default: made from the CSR's first name.")


class RenewRequest(_Request):
    """Client-driven renewal. A CSR enrollment: `csr`, a new key for the same names (rekey). A
    certificate certsync holds the key of: `reuse_key` (omitted: the profile's key_rotation)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"reuse_key": False}]})
    csr: Pem | None = None
    reuse_key: bool | None = None


class RevokeRequest(_Request):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "superseded"}]})
    reason: Reason = Field(description="RFC 5280 reason; keyCompromise revokes every certificate with the key.")
    serial: str | None = Field(
        None, pattern=SERIAL_PATTERN, description="An older version (hex serial); default: the active version."
    )


class DeploymentReport(_Request):
    """What a host's agent did with a version of the certificate (`certsync agent`): deployed
    (files written, service reloaded), failed, or rolled-back (the reload failed; the previous
    files are back). Recorded in the audit trail (action `deploy`)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"serial": "1f2e", "host": "web-1", "outcome": "deployed"}]}
    )
    serial: str = Field(pattern=SERIAL_PATTERN, description="The version deployed (hex serial).")
    host: str = Field(pattern=HOST_PATTERN, description="The reporting host (its name for itself).")
    outcome: Literal["deployed", "failed", "rolled-back"]
    detail: str | None = Field(None, min_length=1, max_length=500, description="One line: why it failed.")


# -- responses -----------------------------------------------------------------------------------------
class Certificate(_Response):
    name: str
    version: int
    serial: str = Field(description="Hexadecimal, lowercase.")
    state: State
    not_before: datetime
    not_after: datetime
    common_name: str | None
    sans: list[str] = Field(description="DNS:name and IP:address entries.")
    key_type: str
    profile: str
    source: Literal["config", "csr"] = Field(description="config: certsync holds the key; csr: the client does.")
    ca: str
    revoked_at: datetime | None = None
    revocation_reason: str | None = None


class CertificateList(_Response):
    items: list[Certificate]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class Version(_Response):
    version: int
    serial: str
    state: State
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None = None
    revocation_reason: str | None = None


class CertificateDetail(_Response):
    certificate: Certificate = Field(description="The current version (the newest active one, else the newest).")
    versions: list[Version] = Field(description="Every version, newest first.")


class Enrolled(_Response):
    certificate: Certificate
    certificate_pem: str = Field(description="The leaf certificate (PEM).")
    chain_pem: str = Field(description="Leaf then intermediates (PEM), the root excluded.")


class Issued(Enrolled):
    private_key_pem: str = Field(description="PKCS#8 PEM. Returned this once; certsync does not keep it.")


class Pushed(_Response):
    destination: str | None
    status: str
    error: str | None = None


class Renewed(Enrolled):
    pushes: list[Pushed] = Field(
        default_factory=list,
        description="Pushes of the new version to the "
        "certificate's destinations (certificates certsync holds the key of).",
    )


class AlsoRevoked(_Response):
    certificate: str
    version: int
    serial: str
    ca: str


class Revoked(_Response):
    certificate: str
    serial: str
    reason: str
    revoked_at: datetime
    ca: str
    crl_number: int | None
    also_revoked: list[AlsoRevoked]


class Deployment(_Response):
    """The report, as recorded."""

    certificate: str
    version: int
    serial: str
    host: str
    outcome: str
    recorded_at: datetime


class FieldError(_Response):
    field: str = Field(description="Dotted path of the field, e.g. dns_names.0 or query.limit.")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(None, description="Each invalid field (422).")


class ListQuery(BaseModel):
    """?expiring_within=30d&state=active&limit=100&cursor=NAME (unknown parameters are ignored)."""

    model_config = ConfigDict(extra="ignore")
    expiring_within: str | None = Field(None, pattern=DURATION_PATTERN)
    state: State | None = None
    limit: int = Field(100, ge=1, le=500)
    cursor: str | None = Field(None, pattern=NAME_PATTERN)


REQUESTS = (IssueRequest, SignRequest, RenewRequest, RevokeRequest, DeploymentReport)
RESPONSES = (CertificateList, CertificateDetail, Issued, Enrolled, Renewed, Revoked, Deployment, Problem)
