"""The agent's own config: a small TOML file (`agent.toml`), or the `[agent]` table of a larger
one. Nothing here needs the store, the CA or a master key; the token comes from an environment
variable or a file, never from the config file or the command line.

    server = "https://pki.example.internal:8443"
    ca_bundle = "/etc/certsync/root.pem"        # trusts the server's TLS; also the chain's root by default
    token_file = "/etc/certsync/agent.token"    # or token_env = "CERTSYNC_AGENT_TOKEN" (the default)

    [certificate.web]                           # the table key is the store name unless name = "..."
    dns_names = ["web.example.internal"]
    cert = "/etc/nginx/tls/web.crt"
    fullchain = "/etc/nginx/tls/web.fullchain.pem"
    key = { path = "/etc/nginx/tls/web.key", group = "www-data", mode = "0640" }
    reload = ["nginx", "-s", "reload"]
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from datetime import timedelta
from pathlib import Path
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from sync.durations import Duration, RenewBefore, parse_renew_before
from sync.errors import ConfigError

STORE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
KeyType = Literal["rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384", "ed25519"]
FILE_KINDS = ("cert", "chain", "fullchain", "key")
DEFAULT_MODES = {"cert": 0o644, "chain": 0o644, "fullchain": 0o644, "key": 0o600}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _mode(value: Any) -> int | None:
    """ "0640" (octal text, as chmod takes it) or an integer; None: the kind's default."""
    if value is None or isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and value.strip().isdigit() and set(value.strip()) <= set("01234567"):
        mode = int(value.strip(), 8)
    else:
        raise ValueError('must be an octal mode like "0640"')
    if mode is not None and not 0 <= mode <= 0o777:
        raise ValueError('must be a permission mode between "0000" and "0777"')
    return mode


class FileSpec(_Strict):
    path: Path
    owner: str | int | None = Field(None, description="User name or uid; default: the agent's user.")
    group: str | int | None = Field(None, description="Group name or gid; default: the agent's group.")
    mode: Annotated[int | None, BeforeValidator(_mode)] = Field(
        None, description='Octal, e.g. "0640"; default 0644, and 0600 for the key.'
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


def _file(value: Any) -> Any:
    return {"path": value} if isinstance(value, (str, Path)) else value


File = Annotated[FileSpec | None, BeforeValidator(_file)]


class CertificateSpec(_Strict):
    name: str | None = Field(None, description="Store name on the server; default: the table key.")
    common_name: str | None = None
    dns_names: list[str] = Field(default_factory=list)
    ip_addresses: list[str] = Field(default_factory=list)
    key_type: KeyType = "ec-p256"
    renew_before: Annotated[RenewBefore, BeforeValidator(parse_renew_before)] = Field(
        default_factory=lambda: parse_renew_before("33%"),
        description='A duration before expiry (30d) or a share of the lifetime ("33%", the default).',
    )
    cert: File = None
    chain: File = None
    fullchain: File = None
    key: File = None
    reload: list[str] = Field(default_factory=list, description="argv of the reload command (no shell).")
    reload_timeout: Duration = timedelta(seconds=60)

    @model_validator(mode="after")
    def _complete(self) -> CertificateSpec:
        if not (self.dns_names or self.ip_addresses or self.common_name):
            raise ValueError("give at least one of dns_names, ip_addresses, common_name")
        if self.key is None:
            raise ValueError("key: the key file's path is required")
        if self.fullchain is None and (self.cert is None or self.chain is None):
            raise ValueError("give fullchain, or cert and chain (the agent checks the chain it wrote on every run)")
        paths = [f.path for f in self.files().values()]
        if len(set(paths)) != len(paths):
            raise ValueError("cert, chain, fullchain and key must be different files")
        if self.reload and not self.reload[0]:
            raise ValueError("reload: the first element is the program to run")
        return self

    def files(self) -> dict[str, FileSpec]:
        return {kind: spec for kind in FILE_KINDS if (spec := getattr(self, kind)) is not None}


class AgentConfig(_Strict):
    server: str = Field(description="Base URL of `certsync serve` (https; http only on loopback).")
    ca_bundle: Path | None = Field(None, description="PEM file trusting the server's TLS certificate.")
    trust_root: Path | None = Field(
        None, description="PEM root(s) the issued chain must verify to; default: ca_bundle."
    )
    token_env: str = "CERTSYNC_AGENT_TOKEN"  # noqa: S105  the name of a variable, not a token
    token_file: Path | None = None
    host: str = Field(default_factory=socket.gethostname, description="How this host reports itself.")
    interval: Duration = Field(timedelta(hours=1), description="Daemon: longest sleep between checks.")
    backoff_max: Duration = Field(timedelta(hours=1), description="Daemon: longest wait after failures.")
    request_timeout: Duration = timedelta(seconds=30)
    certificate: dict[str, CertificateSpec]

    @field_validator("server")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an http(s) URL like https://pki.example.internal:8443")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError("http is allowed only on loopback (the token would cross the network in clear)")
        return value.rstrip("/")

    @field_validator("certificate")
    @classmethod
    def _names(cls, value: dict[str, CertificateSpec]) -> dict[str, CertificateSpec]:
        if not value:
            raise ValueError("declare at least one [certificate.NAME] table")
        for key, spec in value.items():
            name = spec.name or key
            if not STORE_NAME.fullmatch(name):
                raise ValueError(f"{name!r}: store names are 1-63 lowercase letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _trust(self) -> AgentConfig:
        if self.trust_root is None and self.ca_bundle is None:
            raise ValueError("give ca_bundle (or trust_root): the root the issued chain must verify to")
        return self

    def root_file(self) -> Path:
        return self.trust_root or self.ca_bundle  # type: ignore[return-value]

    def token(self) -> str:
        """The bearer token, from token_file or the token_env variable (ConfigError naming which)."""
        if self.token_file is not None:
            try:
                value = self.token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"token_file: cannot read {self.token_file}: {exc.__class__.__name__}") from None
            where = f"token_file {self.token_file}"
        else:
            value, where = os.environ.get(self.token_env, "").strip(), f"environment variable {self.token_env}"
        if not value:
            raise ConfigError(f"token: {where} is empty or unset")
        return value


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(path: str | os.PathLike[str]) -> AgentConfig:
    """The agent config from `path`: its `[agent]` table if it has one, else the whole file."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: agent config not found (use --agent-config or CERTSYNC_AGENT_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read agent config: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    source = str(file)
    if isinstance(data.get("agent"), dict):
        data, source = data["agent"], f"{file}: agent"
    base = file.resolve().parent
    for key in ("ca_bundle", "trust_root", "token_file"):  # relative paths: from the config's folder
        if isinstance(data.get(key), str):
            data[key] = str(base / data[key])
    try:
        config = AgentConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_error_line(source, exc.errors()[0])) from None
    for key in ("ca_bundle", "trust_root"):
        value = getattr(config, key)
        if value is not None and not value.is_file():
            raise ConfigError(f"{source}: {key}: file {value} does not exist")
    return config


def _error_line(source: str, err: Mapping[str, Any]) -> str:
    """`file: dotted.key: rule`, one line."""
    loc = ".".join(str(p) for p in err["loc"])
    msg = " ".join(err["msg"].removeprefix("Value error, ").split())
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {loc}: {msg}"
