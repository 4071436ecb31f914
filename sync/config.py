"""Configuration: a TOML file plus CERTSYNC_* environment overrides, validated by pydantic.

Every problem becomes one line naming the file, the key and the rule (ConfigError, exit 2).
Environment overrides use `__` between levels, e.g. CERTSYNC_STORE__URL=postgresql+psycopg://...
Relative paths (store file, key file, CA bundles) are resolved against the config file's folder,
so a cron job started from / reads the same files as a user in the config's folder.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, Union

from pydantic import BeforeValidator, Field, ValidationError, WithJsonSchema, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from providers.base import DestinationBase
from providers.registry import descriptor, descriptors, destination_models
from sync.config_base import Strict
from sync.config_discovery import DiscoveryConfig
from sync.config_server import ServerConfig, ip_networks
from sync.durations import Duration, Wait

# Re-exported (explicitly, `as` the same name): callers find the duration helpers with the config.
from sync.durations import MAX_DURATION as MAX_DURATION, format_duration as format_duration, parse_wait as parse_wait
from sync.durations import RenewBefore as RenewBefore, parse_renew_before as parse_renew_before
from sync.errors import ConfigError

KeyType = Literal["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ed25519"]
Usage = Literal["serverAuth", "clientAuth"]
_SERVER_AUTH: list[Usage] = ["serverAuth"]

# Certificate and CA names become labels in every cloud: keep them to what all three accept.
# Without renew_before, a certificate is renewed in the last third of its lifetime.
DEFAULT_RENEW_FRACTION = 1 / 3
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
OBJECT_NAME = _OBJECT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class StoreConfig(Strict):
    url: str = Field(
        "sqlite:///certsync.db",
        description=(
            "SQLAlchemy URL of the store: sqlite:///FILE (relative to the config file's folder) or "
            "postgresql+psycopg://USER@HOST/DB. Keep a password out of the file: set CERTSYNC_STORE__URL instead."
        ),
    )
    key_file: str | None = Field(
        "certsync.key",
        description=(
            "File holding the master key that encrypts private keys at rest (init creates it, mode 0600). "
            "CERTSYNC_MASTER_KEY (base64 of 32 random bytes), when set, is used instead. Back it up."
        ),
    )
    lock_timeout: Wait = Field(
        timedelta(seconds=0),
        description=("How long a run waits for another run's store lock before failing; 0 fails at once."),
    )
    connect_timeout: Duration = Field(
        timedelta(seconds=10),
        description=(
            "PostgreSQL: how long to wait for the server when connecting (whole seconds, at least 2 as libpq counts)."
        ),
    )
    statement_timeout: Wait = Field(
        timedelta(seconds=60),
        description=(
            "PostgreSQL: the server cancels any statement running longer than this (also a wait for a row lock); "
            "0: no limit."
        ),
    )


class NameConstraintsConfig(Strict):
    """RFC 5280 name constraints of a CA (a critical extension of its certificate)."""

    permitted_dns: list[str] = Field(
        default_factory=list,
        description=(
            'DNS subtrees the names below this CA must be within: "example.internal" holds it and every name under it.'
        ),
    )
    excluded_dns: list[str] = Field(
        default_factory=list, description=("DNS subtrees no name below this CA may be within.")
    )
    permitted_ip: list[str] = Field(
        default_factory=list, description=("IP networks (CIDR) the IP addresses below this CA must be within.")
    )
    excluded_ip: list[str] = Field(
        default_factory=list, description=("IP networks (CIDR) no IP address below this CA may be within.")
    )

    @field_validator("permitted_dns", "excluded_dns")
    @classmethod
    def _subtrees(cls, value: list[str]) -> list[str]:
        for item in value:
            if item.startswith("*") or not _DNS_NAME.fullmatch(item) or len(item) > 253:
                raise ValueError(
                    f"{item!r} is not a DNS name subtree like example.internal (no wildcard: a subtree "
                    "already holds every name under it)"
                )
        return value

    @field_validator("permitted_ip", "excluded_ip")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network like 10.0.0.0/8 (no host bits set)") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> NameConstraintsConfig:
        if not (self.permitted_dns or self.excluded_dns or self.permitted_ip or self.excluded_ip):
            raise ValueError(
                "name at least one permitted or excluded subtree (RFC 5280 forbids empty name constraints)"
            )
        return self

    def extension(self):
        """The x509.NameConstraints to write into the CA certificate and to check requests against."""
        from cryptography import x509

        permitted = [
            *(x509.DNSName(d) for d in self.permitted_dns),
            *(x509.IPAddress(ipaddress.ip_network(n)) for n in self.permitted_ip),
        ]
        excluded = [
            *(x509.DNSName(d) for d in self.excluded_dns),
            *(x509.IPAddress(ipaddress.ip_network(n)) for n in self.excluded_ip),
        ]
        return x509.NameConstraints(permitted_subtrees=permitted or None, excluded_subtrees=excluded or None)


class CAConfig(Strict):
    subject: str = Field(description=('Distinguished name (RFC 4514) with a CN, e.g. "CN=Example Root CA,O=Example".'))
    key: KeyType = Field("ec-p384", description="Key type of the CA.")
    validity: Duration = Field(timedelta(days=3650), description="Lifetime of the CA certificate.")
    parent: str | None = Field(
        None, description=("Name of the CA that signs this one; unset makes a self-signed root.")
    )
    crl_url: str | None = Field(
        None, description=("CRL distribution point written into the certificates this CA issues.")
    )
    ocsp_url: str | None = Field(
        None,
        description=("OCSP responder URL written (Authority Information Access) into the certificates this CA issues."),
    )
    crl_lifetime: Duration = Field(
        timedelta(days=7), description=("Validity of each CRL this CA issues (nextUpdate - thisUpdate).")
    )
    path_length: int | None = Field(
        default=None,
        ge=0,
        description=(
            "pathLenConstraint of the CA certificate. Unset: derived from the declared hierarchy for a CA with a "
            "parent (the number of CA levels below it, 0 for an issuing CA); a root is left unconstrained. A value "
            "smaller than the CA levels declared below it is refused."
        ),
    )
    name_constraints: NameConstraintsConfig | None = Field(
        None,
        description=(
            "Name constraints (RFC 5280 4.2.1.10) written into the CA certificate as a critical extension, e.g. "
            '{ permitted_dns = ["example.internal"], excluded_ip = ["10.99.0.0/16"] }; certsync also refuses to '
            "issue a certificate outside the constraints of any CA above it."
        ),
    )

    @field_validator("subject")
    @classmethod
    def _subject_parses(cls, value: str) -> str:
        from cryptography import x509

        try:
            name = x509.Name.from_rfc4514_string(value)
        except ValueError as exc:
            raise ValueError(f'must be an RFC 4514 name like "CN=Example Root CA,O=Example" ({exc})') from None
        if not name.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
            raise ValueError("must contain a CN")
        return value


class ProfileConfig(Strict):
    ca: str = Field(description="CA that issues the certificates of this profile.")
    key: KeyType = Field(
        "ec-p256", description=("Key type of its certificates (a certificate may choose another from allowed_keys).")
    )
    allowed_keys: list[KeyType] | None = Field(
        None, description=("Key types a certificate or CSR may use; unset allows only `key`.")
    )
    validity: Duration = Field(timedelta(days=90), description="Lifetime of the certificates issued.")
    max_validity: Duration | None = Field(
        None, description=("Upper bound for a certificate's own validity; unset: no bound beyond `validity`.")
    )
    renew_before: (
        Annotated[
            RenewBefore,
            BeforeValidator(parse_renew_before),
            WithJsonSchema(
                {
                    "type": "string",
                    "pattern": r"^\s*([0-9]*[1-9][0-9]*[dhms]|[0-9]+(\.[0-9]+)?%)\s*$",
                    "examples": ["30d", "33%"],
                }
            ),
        ]
        | None
    ) = Field(
        None,
        description=(
            'Renew this long before expiry ("30d") or at this share of the lifetime left ("33%"); unset: the last '
            "third of the lifetime."
        ),
    )
    key_rotation: Literal["rotate", "reuse"] = Field(
        "rotate", description=('On renewal, make a new key ("rotate") or keep the current one ("reuse").')
    )
    allowed_domains: list[str] = Field(
        default_factory=list,
        description=(
            'DNS names allowed in certificates: exact names, or "*.example.internal" for one label under it; empty '
            "allows no DNS name (deny by default)."
        ),
    )
    allowed_ips: list[str] = Field(
        default_factory=list,
        description=("IP networks (CIDR) that IP addresses in certificates must fall within; empty allows none."),
    )
    allow_any_name: bool = Field(
        False,
        description=(
            "Issue for any DNS name and IP address (no allowed_domains or allowed_ips then). An explicit opt-in: "
            "init and plan warn about every profile that sets it."
        ),
    )
    usages: list[Usage] = Field(
        default_factory=lambda: list(_SERVER_AUTH),
        min_length=1,
        description=("Extended key usages of the certificates."),
    )
    deploy_to: list[str] = Field(
        default_factory=list,
        description=(
            "Destinations that certificates enrolled under this profile through `certsync serve` (ACME, EST, REST "
            "sign) are pushed to once issued, chain only (the key stays with the client), like `certsync sign --to`. "
            "A push that cannot run now (the run lock is held, a cloud fails) is retried, and a server that "
            "restarts pushes what is missing."
        ),
    )

    @model_validator(mode="after")
    def _windows(self) -> ProfileConfig:
        if self.renew_before and self.renew_before.duration is not None and self.renew_before.duration >= self.validity:
            raise ValueError("renew_before must be shorter than validity")
        if self.max_validity is not None and self.validity > self.max_validity:
            raise ValueError("validity must not exceed max_validity")
        if self.allow_any_name and (self.allowed_domains or self.allowed_ips):
            raise ValueError(
                "allow_any_name = true cannot be combined with allowed_domains or allowed_ips "
                "(it allows every name): keep one"
            )
        return self

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return ip_networks(value)


# [destination.NAME]: DestinationBase (keys of every kind) and each cloud's model live in
# providers/ (providers/registry.py lists them); `provider` picks the model.
if TYPE_CHECKING:  # the models are known at run time only: to the type checker, what every one has

    class Destination(DestinationBase):
        provider: str
else:
    Destination = Annotated[Union[destination_models()], Field(discriminator="provider")]  # noqa: UP007  built at run time


class DestinationRef(Strict):
    to: str = Field(description="Destination name (a [destination.NAME] section).")
    name: str | None = Field(None, description="Secret name there; unset: the certificate's name.")


class CertificateConfig(Strict):
    profile: str = Field(description="Profile whose CA and rules issue this certificate.")
    common_name: str | None = Field(
        None, description=("Subject CN; optional when dns_names or ip_addresses are given.")
    )
    dns_names: list[str] = Field(default_factory=list, description="DNS subject alternative names.")
    ip_addresses: list[str] = Field(default_factory=list, description="IP address subject alternative names.")
    key: KeyType | None = Field(
        None, description=("Key type, overriding the profile's `key` (must be in its allowed_keys).")
    )
    validity: Duration | None = Field(
        None, description=("Lifetime, overriding the profile's `validity` (at most its max_validity).")
    )
    destinations: list[str | DestinationRef] = Field(
        default_factory=list,
        description=(
            'Where copies go: destination names, or tables { to = "DEST", name = "SECRET" } to choose the secret\'s '
            "name."
        ),
    )

    @field_validator("ip_addresses")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
        return value

    @field_validator("common_name")
    @classmethod
    def _cn_length(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not 0 < len(value) <= 64:  # RFC 5280 ub-common-name
            raise ValueError("must be 1-64 characters (RFC 5280 upper bound for a CN)")
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _DNS_NAME.fullmatch(value):  # the CN is always repeated in the SAN (CA/B BR 7.1.4.3)
                raise ValueError(f"{value!r} must be a DNS name or an IP address (it is also put in the SAN)") from None
        return value

    @field_validator("dns_names")
    @classmethod
    def _dns(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _DNS_NAME.fullmatch(item) or len(item) > 253:
                raise ValueError(
                    f"{item!r} is not a DNS name (ASCII letters, digits and '-' in labels of "
                    "1-63, a leading '*.' at most; write internationalised names as xn-- A-labels)"
                )
        return value

    @model_validator(mode="after")
    def _has_a_name(self) -> CertificateConfig:
        if not (self.common_name or self.dns_names or self.ip_addresses):
            raise ValueError("needs common_name, dns_names or ip_addresses")
        return self

    def targets(self, cert_name: str) -> list[Target]:
        """Destinations as (destination, remote secret name); the name defaults to the cert's."""
        refs = [DestinationRef(to=d) if isinstance(d, str) else d for d in self.destinations]
        return [Target(r.to, r.name or cert_name) for r in refs]


class Target(NamedTuple):
    """A certificate's destination and its secret name there (CertificateConfig.targets)."""

    to: str
    name: str


class NotifyConfig(Strict):
    webhook_url: str | None = Field(
        None,
        description=(
            "Webhook that receives alerts (POST, JSON body). It may embed a token (Slack): prefer setting "
            "CERTSYNC_NOTIFY__WEBHOOK_URL in the environment; it is never printed or logged."
        ),
    )
    format: Literal["json", "slack"] = Field(
        "json",
        description=("Body: json (generic document with an events list) or slack (Slack-compatible text and blocks)."),
    )
    expiring_within: Duration = Field(
        timedelta(days=30), description=("Alert on certificates and CAs whose notAfter is within this duration.")
    )
    repeat_every: Duration = Field(
        timedelta(hours=24),
        description=(
            "A standing condition (expiring, stale copy) is alerted again only after this long; failures, "
            "renewals and revocations are alerted every time."
        ),
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")  # never echo it: it may hold a token
        return value


class Config(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CERTSYNC_", env_nested_delimiter="__", extra="forbid", frozen=True)

    store: StoreConfig = Field(
        default_factory=StoreConfig, description=("Where certificates, keys and push records are kept.")
    )
    ca: dict[str, CAConfig] = Field(default_factory=dict, description="Certificate authorities, by name: [ca.NAME].")
    profile: dict[str, ProfileConfig] = Field(
        default_factory=dict, description=("Issuance rules, by name: [profile.NAME].")
    )
    destination: dict[str, Destination] = Field(
        default_factory=dict, description=("Cloud secret stores, by name: [destination.NAME].")
    )
    certificate: dict[str, CertificateConfig] = Field(
        default_factory=dict, description=("Certificates to issue, renew and push, by name: [certificate.NAME].")
    )
    notify: NotifyConfig | None = Field(
        None,
        description=(
            "Webhook alerts after apply, push, renew and revoke; no [notify] table (or no webhook_url): none."
        ),
    )
    server: ServerConfig | None = Field(
        None,
        description=(
            "`certsync serve`: listen address, TLS, client certificates, public URL, rate limits (docs/server.md)."
        ),
    )
    discovery: DiscoveryConfig | None = Field(
        None,
        description=(
            "`certsync discover`: TLS endpoints, folders and cloud secret stores to scan for certificates "
            "(docs/discovery.md, docs/discovery-clouds.md)."
        ),
    )
    base_dir: Path = Field(default=Path("."), exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ):
        return (env_settings, init_settings)  # environment beats the file

    @field_validator("destination")
    @classmethod
    def _name_destinations(cls, value: dict[str, DestinationBase]) -> dict[str, DestinationBase]:
        """Each destination knows its NAME, so that errors from its provider can say which."""
        return {name: dest.named(name) for name, dest in value.items()}

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def store_url(self) -> str:
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and url != "sqlite:///:memory:" and not url.startswith("sqlite:////"):
            return prefix + str(self.resolve(url[len(prefix) :]))
        return url

    def levels_below(self, ca_name: str) -> tuple[int, str | None]:
        """(CA levels in the deepest chain below `ca_name`, the CA right below it on that chain):
        the pathLenConstraint the hierarchy needs. A CA with no CA below it: (0, None)."""
        best: tuple[int, str | None] = (0, None)
        for name, ca in self.ca.items():
            if ca.parent == ca_name and name != ca_name:
                depth = self.levels_below(name)[0] + 1
                if depth > best[0]:
                    best = (depth, name)
        return best

    def path_length_of(self, ca_name: str) -> int | None:
        """The pathLenConstraint written into the CA's certificate: as configured; unset, derived from
        the hierarchy for a CA with a parent; None (unconstrained) for a root."""
        spec = self.ca[ca_name]
        if spec.path_length is not None or spec.parent is None:
            return spec.path_length
        return self.levels_below(ca_name)[0]

    def crl_url_of(self, ca_name: str) -> str | None:
        """The CRL distribution point of `ca_name`'s certificates: as configured, else derived from
        the server's public URL (PUBLIC/crl/CA.crl), else none."""
        base = self.server.revocation_base() if self.server else None
        return self.ca[ca_name].crl_url or (f"{base}/crl/{ca_name}.crl" if base else None)

    def ocsp_url_of(self, ca_name: str) -> str | None:
        """The OCSP responder URL of `ca_name`'s certificates, configured or derived (PUBLIC/ocsp/CA)."""
        base = self.server.revocation_base() if self.server else None
        return self.ca[ca_name].ocsp_url or (f"{base}/ocsp/{ca_name}" if base else None)

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
    except SettingsError as exc:  # an environment override that is not the JSON its field needs
        raise ConfigError(_env_error_line(source, exc)) from None
    problems = list(_reference_problems(config))
    if problems:
        raise ConfigError("\n".join(_printable(f"{source}: {key}: {rule}") for key, rule in problems))
    return config


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_*@+=/-][A-Za-z0-9_.*@+=/ -]*[A-Za-z0-9_.*@+=/-]|[A-Za-z0-9_*@+=/-]")


def _key(part: Any) -> str:
    """A config key as an error names it: quoted (JSON) when empty, padded or holding control
    characters, so that the line stays one line and the key stays visible."""
    text = str(part)
    return text if _PLAIN_KEY.fullmatch(text) else json.dumps(text)


def _printable(text: str) -> str:
    """One line whatever a user's name holds: control characters and Unicode line breaks escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def _error_line(source: str, err: ErrorDetails) -> str:
    loc = ".".join(_key(p) for p in err["loc"] if not _is_union_tag(p))
    msg = " ".join(err["msg"].removeprefix("Value error, ").split("\n"))
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return _printable(f"{source}: {loc}: {msg}")


def _env_error_line(source: str, exc: SettingsError) -> str:
    found = re.search(r'field "([^"]+)"', str(exc))
    field = found.group(1) if found else "environment"
    prefix = f"CERTSYNC_{field}".upper()
    names = sorted(n for n in os.environ if n.upper() == prefix or n.upper().startswith(prefix + "__"))
    cause = str(exc.__cause__).splitlines()[0] if exc.__cause__ is not None and str(exc.__cause__) else "cannot parse"
    return (
        f"{source}: {field}: environment override {', '.join(names) or prefix} is not valid JSON ({cause}): "
        f"a table or a list in the environment is JSON, or set one key per variable ({prefix}__KEY)"
    )


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member ("aws", "str", "DestinationRef") in the location; hide it
    return part in descriptors() or part in (
        "str",
        "DestinationRef",
        "function-before[parse_renew_before(), RenewBefore]",
    )


def _reference_problems(config: Config):
    for name in [*config.ca, *config.certificate]:
        if not _OBJECT_NAME.fullmatch(name):
            section = "ca" if name in config.ca else "certificate"
            yield (
                f"{section}.{name}",
                ("name must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"),
            )
    yield from _ca_problems(config)
    for name, profile in config.profile.items():
        if profile.ca not in config.ca:
            yield f"profile.{name}.ca", f"unknown CA {profile.ca!r} (defined: {_names(config.ca)})"
        if profile.allowed_keys is not None and profile.key not in profile.allowed_keys:
            yield f"profile.{name}.key", f"{profile.key!r} is not in allowed_keys"
        for i, dest_name in enumerate(profile.deploy_to):
            if dest_name not in config.destination:
                yield (
                    f"profile.{name}.deploy_to[{i}]",
                    f"unknown destination {dest_name!r} (defined: {_names(config.destination)})",
                )
                continue
            taken = descriptor(config.destination[dest_name].provider).key_types or ()
            refused = [k for k in (profile.allowed_keys or [profile.key]) if taken and k not in taken]
            if refused:
                yield (
                    f"profile.{name}.deploy_to[{i}]",
                    f"{config.destination[dest_name].provider} destination {dest_name!r} takes only "
                    f"{', '.join(taken)} keys; "
                    f"this profile allows {', '.join(refused)} (set key/allowed_keys to those)",
                )
    clouds = config.discovery.clouds if config.discovery else None
    for i, name in enumerate(clouds.destinations or [] if clouds else []):
        if name not in config.destination:
            yield (
                f"discovery.clouds.destinations[{i}]",
                f"unknown destination {name!r} (defined: {_names(config.destination)})",
            )
    for name, dest in config.destination.items():
        if dest.pkcs12_password_env and dest.format != "pkcs12":
            yield f"destination.{name}.pkcs12_password_env", 'only applies when format = "pkcs12"'
    owners: dict[tuple[str, str], tuple[str, str]] = {}
    for name, cert in config.certificate.items():
        yield from _certificate_problems(config, name, cert)
        for i, ref in enumerate(cert.targets(name)):
            if ref.to not in config.destination:
                continue
            other, other_dest = owners.setdefault(secret_key(config, ref.to, ref.name), (name, ref.to))
            if other != name:
                yield (
                    f"certificate.{name}.destinations[{i}]",
                    f"secret {ref.name!r} in destination {ref.to!r} is already the target of certificate "
                    f"{other!r}" + same_store_note(ref.to, other_dest),
                )


def secret_key(config: Config, destination: str, remote_name: str) -> tuple[str, str]:
    """Which secret (destination, remote name) is: destinations that reach the same store (same
    AWS region and endpoint, Google project, Key Vault) give the same key. Key Vault names are
    case-insensitive."""
    dest = config.destination[destination]
    store = descriptor(dest.provider).quota_domain(dest)
    return store, remote_name.lower() if dest.provider == "azure" else remote_name


def target_owners(config: Config) -> dict[tuple[str, str], tuple[str, str]]:
    """secret_key -> (certificate, destination) for every configured target."""
    return {
        secret_key(config, ref.to, ref.name): (name, ref.to)
        for name, cert in config.certificate.items()
        for ref in cert.targets(name)
        if ref.to in config.destination
    }


def same_store_note(destination: str, other: str) -> str:
    return "" if destination == other else f" (destination {other!r} is the same store)"


def _ca_problems(config: Config):
    sound = True
    for name, ca in config.ca.items():
        if ca.parent is not None and ca.parent not in config.ca:
            yield f"ca.{name}.parent", f"unknown CA {ca.parent!r} (defined: {_names(config.ca)})"
            sound = False
            continue
        seen = {name}
        current = ca
        while current.parent is not None and current.parent in config.ca:
            if current.parent in seen:
                yield f"ca.{name}.parent", "CA parents form a cycle"
                sound = False
                break
            seen.add(current.parent)
            current = config.ca[current.parent]
    if not sound:
        return
    for name, ca in config.ca.items():
        depth, below = config.levels_below(name)
        if ca.path_length is not None and ca.path_length < depth:
            yield (
                f"ca.{name}.path_length",
                f"{ca.path_length} leaves no room for the CA below it "
                f"({below}, {depth} level{'s' if depth > 1 else ''} deep): remove path_length or set it to "
                f"at least {depth}",
            )


def _certificate_problems(config: Config, name: str, cert: CertificateConfig):
    key = f"certificate.{name}"
    profile = config.profile.get(cert.profile)
    if profile is None:
        yield f"{key}.profile", f"unknown profile {cert.profile!r} (defined: {_names(config.profile)})"
    else:
        validity = cert.validity or profile.validity
        if profile.max_validity is not None and validity > profile.max_validity:
            yield f"{key}.validity", f"exceeds the profile's max_validity ({profile.max_validity.days}d)"
        if (
            profile.renew_before
            and profile.renew_before.duration is not None
            and profile.renew_before.duration >= validity
        ):
            yield f"{key}.validity", "must be longer than the profile's renew_before"
        if cert.key and profile.allowed_keys is not None and cert.key not in profile.allowed_keys:
            yield f"{key}.key", f"{cert.key!r} is not allowed by profile {cert.profile!r}"
    yield from _key_type_problems(config, name, cert, profile)
    seen: set[tuple[str, str]] = set()
    for i, ref in enumerate(cert.targets(name)):
        where = f"{key}.destinations[{i}]"
        dest = config.destination.get(ref.to)
        if dest is None:
            yield where, f"unknown destination {ref.to!r} (defined: {_names(config.destination)})"
            continue
        rule = descriptor(dest.provider).name_rule
        if not rule.ok(ref.name):
            yield where, f"name {ref.name!r} is invalid for {dest.provider} destination {ref.to!r}: {rule.description}"
        if (ref.to, ref.name) in seen:
            yield where, f"duplicate destination {ref.to!r} with name {ref.name!r}"
        seen.add((ref.to, ref.name))


def _key_type_problems(config: Config, name: str, cert: CertificateConfig, profile: ProfileConfig | None):
    """A destination that takes only some key types (ACM) refuses a certificate of another: one
    line, on the certificate's `key` (or its first such destination, when the key is the profile's)."""
    key, chosen = f"certificate.{name}", cert.key or (profile.key if profile is not None else None)
    for i, ref in enumerate(cert.targets(name)):
        dest = config.destination.get(ref.to)
        taken = descriptor(dest.provider).key_types if dest is not None else None
        if dest is not None and chosen and taken and chosen not in taken:
            field, source = (
                (f"{key}.key", "") if cert.key else (f"{key}.destinations[{i}]", f" (profile {cert.profile!r}'s key)")
            )
            yield (
                field,
                (
                    f"key {chosen!r}{source} cannot go to {dest.provider} destination {ref.to!r}: "
                    f"it takes only {', '.join(taken)}"
                ),
            )
            return


def warnings(config: Config) -> list[str]:
    """What a valid config does that deserves a loud word (init and plan print these)."""
    return [
        f"profile {name!r} has allow_any_name = true: it issues certificates for any DNS name or IP address"
        for name, profile in config.profile.items()
        if profile.allow_any_name
    ]


def _names(section: dict[str, Any]) -> str:
    return ", ".join(sorted(section)) or "none"
