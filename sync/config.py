"""Configuration: a TOML file plus CERTSYNC_* environment overrides, validated by pydantic.

Every problem becomes one line naming the file, the key and the rule (ConfigError, exit 2).
Environment overrides use `__` between levels, e.g. CERTSYNC_STORE__URL=postgresql+psycopg://...
Relative paths (store file, key file, CA bundles) are resolved against the config file's folder,
so a cron job started from / reads the same files as a user in the config's folder.
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from providers.base import NAME_RULES
from sync.errors import ConfigError

KeyType = Literal["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ed25519"]
Usage = Literal["serverAuth", "clientAuth"]
Format = Literal["json", "pem", "pkcs12"]

_DURATION = re.compile(r"(\d+)([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# Certificate and CA names become labels in every cloud: keep them to what all three accept.
_OBJECT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    match = _DURATION.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0:
        raise ValueError("must be a positive duration like 90d, 12h, 30m or 45s")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class RenewBefore(BaseModel):
    """Either a fixed duration before expiry or a fraction of the lifetime."""
    duration: timedelta | None = None
    fraction: float | None = None

    def window(self, lifetime: timedelta) -> timedelta:
        return self.duration if self.duration is not None else lifetime * self.fraction


def parse_renew_before(value: Any) -> RenewBefore:
    if isinstance(value, RenewBefore):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            pct = -1
        if not 0 < pct < 100:
            raise ValueError("a percentage must be between 0% and 100% (exclusive), like \"33%\"")
        return RenewBefore(fraction=pct / 100)
    try:
        return RenewBefore(duration=parse_duration(value))
    except ValueError:
        raise ValueError("must be a duration like 30d or a percentage of the lifetime like \"33%\"") from None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(Strict):
    url: str = "sqlite:///certsync.db"
    key_file: str | None = "certsync.key"
    lock_timeout: Duration = timedelta(seconds=0)


class CAConfig(Strict):
    subject: str
    key: KeyType = "ec-p384"
    validity: Duration = timedelta(days=3650)
    parent: str | None = None
    crl_url: str | None = None
    ocsp_url: str | None = None
    crl_lifetime: Duration = timedelta(days=7)     # nextUpdate - thisUpdate of its CRLs
    path_length: int | None = Field(default=None, ge=0)

    @field_validator("subject")
    @classmethod
    def _subject_parses(cls, value: str) -> str:
        from cryptography import x509
        try:
            name = x509.Name.from_rfc4514_string(value)
        except ValueError as exc:
            raise ValueError(f"must be an RFC 4514 name like \"CN=Example Root CA,O=Example\" ({exc})") from None
        if not name.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
            raise ValueError("must contain a CN")
        return value


class ProfileConfig(Strict):
    ca: str
    key: KeyType = "ec-p256"
    allowed_keys: list[KeyType] | None = None
    validity: Duration = timedelta(days=90)
    max_validity: Duration | None = None
    renew_before: Annotated[RenewBefore, BeforeValidator(parse_renew_before)] | None = None
    key_rotation: Literal["rotate", "reuse"] = "rotate"
    allowed_domains: list[str] = Field(default_factory=list)
    allowed_ips: list[str] = Field(default_factory=list)
    usages: list[Usage] = Field(default_factory=lambda: ["serverAuth"], min_length=1)

    @model_validator(mode="after")
    def _windows(self) -> "ProfileConfig":
        if self.renew_before and self.renew_before.duration is not None \
                and self.renew_before.duration >= self.validity:
            raise ValueError("renew_before must be shorter than validity")
        if self.max_validity is not None and self.validity > self.max_validity:
            raise ValueError("validity must not exceed max_validity")
        return self

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network like 10.0.0.0/8") from None
        return value

    def renew_window(self, lifetime: timedelta) -> timedelta:
        """Default: renew in the last third of the lifetime."""
        return (self.renew_before or RenewBefore(fraction=1 / 3)).window(lifetime)


class DestinationBase(Strict):
    format: Format = "json"
    adopt: bool = False
    pkcs12_password_env: str | None = None
    pkcs12_encryption: Literal["aes256", "legacy"] = "aes256"


class AwsDestination(DestinationBase):
    provider: Literal["aws"]
    region: str | None = None
    endpoint_url: str | None = None
    recovery_window_days: int | None = Field(default=None, ge=7, le=30)


class GcpDestination(DestinationBase):
    provider: Literal["gcp"]
    project: str
    endpoint: str | None = None
    transport: Literal["grpc", "rest"] = "grpc"
    insecure: bool = False
    keep_versions: int = Field(default=2, ge=1)


class AzureDestination(DestinationBase):
    provider: Literal["azure"]
    vault_url: str
    ca_bundle: str | None = None
    verify_challenge_resource: bool = True
    purge_on_delete: bool = False
    on_soft_deleted: Literal["recover", "purge"] = "recover"


Destination = Annotated[Union[AwsDestination, GcpDestination, AzureDestination],
                        Field(discriminator="provider")]


class DestinationRef(Strict):
    to: str
    name: str | None = None


class CertificateConfig(Strict):
    profile: str
    common_name: str | None = None
    dns_names: list[str] = Field(default_factory=list)
    ip_addresses: list[str] = Field(default_factory=list)
    key: KeyType | None = None
    validity: Duration | None = None
    destinations: list[Union[str, DestinationRef]] = Field(default_factory=list)

    @field_validator("ip_addresses")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
        return value

    @model_validator(mode="after")
    def _has_a_name(self) -> "CertificateConfig":
        if not (self.common_name or self.dns_names or self.ip_addresses):
            raise ValueError("needs common_name, dns_names or ip_addresses")
        return self

    def targets(self, cert_name: str) -> list[DestinationRef]:
        """Destinations as (destination, remote secret name); the name defaults to the cert's."""
        refs = [DestinationRef(to=d) if isinstance(d, str) else d for d in self.destinations]
        return [DestinationRef(to=r.to, name=r.name or cert_name) for r in refs]


class NotifyConfig(Strict):
    webhook_url: str | None = None
    format: Literal["json", "slack"] = "json"
    expiring_within: Duration = timedelta(days=30)


class Config(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CERTSYNC_", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    store: StoreConfig = Field(default_factory=StoreConfig)
    ca: dict[str, CAConfig] = Field(default_factory=dict)
    profile: dict[str, ProfileConfig] = Field(default_factory=dict)
    destination: dict[str, Destination] = Field(default_factory=dict)
    certificate: dict[str, CertificateConfig] = Field(default_factory=dict)
    notify: NotifyConfig | None = None
    base_dir: Path = Field(default=Path("."), exclude=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        return (env_settings, init_settings)  # environment beats the file

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def store_url(self) -> str:
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and url != "sqlite:///:memory:" and not url.startswith("sqlite:////"):
            return prefix + str(self.resolve(url[len(prefix):]))
        return url

    def chain_of(self, ca_name: str) -> list[str]:
        """CA names from `ca_name` up to its root."""
        chain = [ca_name]
        while (parent := self.ca[chain[-1]].parent) is not None:
            chain.append(parent)
        return chain


# --- loading ------------------------------------------------------------------------------------

def load(path: str | os.PathLike[str]) -> Config:
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found (use --config or CERTSYNC_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return from_dict(data, source=str(file), base_dir=file.resolve().parent)


def from_dict(data: dict[str, Any], *, source: str = "<config>", base_dir: Path = Path(".")) -> Config:
    if "base_dir" in data:
        raise ConfigError(f"{source}: base_dir: unknown key")
    try:
        config = Config(**data, base_dir=base_dir)
    except ValidationError as exc:
        raise ConfigError("\n".join(_error_line(source, err) for err in exc.errors())) from None
    problems = list(_reference_problems(config))
    if problems:
        raise ConfigError("\n".join(f"{source}: {key}: {rule}" for key, rule in problems))
    return config


def _error_line(source: str, err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {loc}: {msg}"


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member ("aws", "str", "DestinationRef") in the location; hide it
    return part in ("aws", "gcp", "azure", "str", "DestinationRef", "function-before[parse_renew_before(), RenewBefore]")


def _reference_problems(config: Config):
    for name in [*config.ca, *config.certificate]:
        if not _OBJECT_NAME.fullmatch(name):
            section = "ca" if name in config.ca else "certificate"
            yield f"{section}.{name}", ("name must be 1-63 lowercase letters, digits or '-', "
                                        "starting and ending with a letter or digit")
    yield from _ca_problems(config)
    for name, profile in config.profile.items():
        if profile.ca not in config.ca:
            yield f"profile.{name}.ca", f"unknown CA {profile.ca!r} (defined: {_names(config.ca)})"
        if profile.allowed_keys is not None and profile.key not in profile.allowed_keys:
            yield f"profile.{name}.key", f"{profile.key!r} is not in allowed_keys"
    for name, dest in config.destination.items():
        if dest.pkcs12_password_env and dest.format != "pkcs12":
            yield f"destination.{name}.pkcs12_password_env", "only applies when format = \"pkcs12\""
    for name, cert in config.certificate.items():
        yield from _certificate_problems(config, name, cert)


def _ca_problems(config: Config):
    for name, ca in config.ca.items():
        if ca.parent is not None and ca.parent not in config.ca:
            yield f"ca.{name}.parent", f"unknown CA {ca.parent!r} (defined: {_names(config.ca)})"
            continue
        seen = {name}
        current = ca
        while current.parent is not None and current.parent in config.ca:
            if current.parent in seen:
                yield f"ca.{name}.parent", "CA parents form a cycle"
                break
            seen.add(current.parent)
            current = config.ca[current.parent]


def _certificate_problems(config: Config, name: str, cert: CertificateConfig):
    key = f"certificate.{name}"
    profile = config.profile.get(cert.profile)
    if profile is None:
        yield f"{key}.profile", f"unknown profile {cert.profile!r} (defined: {_names(config.profile)})"
    else:
        validity = cert.validity or profile.validity
        if profile.max_validity is not None and validity > profile.max_validity:
            yield f"{key}.validity", f"exceeds the profile's max_validity ({profile.max_validity.days}d)"
        if profile.renew_before and profile.renew_before.duration is not None \
                and profile.renew_before.duration >= validity:
            yield f"{key}.validity", "must be longer than the profile's renew_before"
        if cert.key and profile.allowed_keys is not None and cert.key not in profile.allowed_keys:
            yield f"{key}.key", f"{cert.key!r} is not allowed by profile {cert.profile!r}"
    seen: set[tuple[str, str]] = set()
    for i, ref in enumerate(cert.targets(name)):
        where = f"{key}.destinations[{i}]"
        dest = config.destination.get(ref.to)
        if dest is None:
            yield where, f"unknown destination {ref.to!r} (defined: {_names(config.destination)})"
            continue
        rule = NAME_RULES[dest.provider]
        if not (0 < len(ref.name) <= rule.max_len and rule.pattern.fullmatch(ref.name)):
            yield where, f"name {ref.name!r} is invalid for {dest.provider} destination {ref.to!r}: {rule.description}"
        if (ref.to, ref.name) in seen:
            yield where, f"duplicate destination {ref.to!r} with name {ref.name!r}"
        seen.add((ref.to, ref.name))


def _names(section: dict[str, Any]) -> str:
    return ", ".join(sorted(section)) or "none"
