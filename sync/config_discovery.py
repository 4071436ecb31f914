"""The [discovery] table: what `certsync discover` scans (only ever what is listed here or on its
command line) and how hard it may knock. The cloud part is `[discovery.clouds]`.

TLS targets are spelled `[SCHEME://]HOST:PORT[/SNI]` (IPv6 in brackets): SCHEME is tls (the
default), smtp or imap (STARTTLS first); ports 25 and 587 mean smtp and 143 means imap unless a
scheme says otherwise. CIDR ranges are expanded into addresses only up to `max_hosts` addresses.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sync.config_base import Strict as _Strict
from sync.durations import Duration

STARTTLS_PORTS = {25: "smtp", 587: "smtp", 143: "imap"}
Scheme = Literal["tls", "smtp", "imap"]
_TARGET = re.compile(
    r"(?:(?P<scheme>[a-z]+)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})"
    r"(?:/(?P<sni>[A-Za-z0-9._*-]+))?"
)
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")


@dataclass(frozen=True)
class Target:
    host: str  # a name or an address (IPv6 without brackets)
    port: int
    sni: str | None = None
    scheme: str = "tls"

    @property
    def server_name(self) -> str | None:
        """The name sent as SNI and checked against the certificate: the SNI, else a host name (not an address)."""
        if self.sni:
            return self.sni
        return None if _is_address(self.host) else self.host

    @property
    def location(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"tls://{host}:{self.port}"
        return f"{base}/{self.sni}" if self.sni and self.sni != self.host else base

    def __str__(self) -> str:
        return self.location[len("tls://") :]


def parse_target(text: str) -> Target:
    """ "[SCHEME://]HOST:PORT[/SNI]" -> Target; ValueError (one line, naming the rule) otherwise."""
    match = _TARGET.fullmatch(text.strip())
    port = int(match.group("port")) if match else 0
    scheme = (match.group("scheme") if match else None) or STARTTLS_PORTS.get(port, "tls")
    host = match.group("host").strip("[]") if match else ""
    if (
        not match
        or not 0 < port <= 65535
        or scheme not in ("tls", "smtp", "imap")
        or not (_is_address(host) or _HOSTNAME.fullmatch(host))
    ):
        raise ValueError(
            f"{text.strip()[:80]!r} is not a TLS target: use HOST:PORT, HOST:PORT/SNI or "
            "smtp://HOST:PORT, imap://HOST:PORT (IPv6 as [::1]:443)"
        )
    return Target(host=host, port=port, sni=match.group("sni"), scheme=scheme)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def parse_ports(text: str) -> list[int]:
    """ "443,8443" -> [443, 8443]."""
    ports = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or not 0 < int(part) <= 65535:
            raise ValueError(f"{part[:20]!r} is not a port: use a comma-separated list like 443,8443")
        ports.append(int(part))
    return ports


def expand_cidr(cidr: str, ports: list[int], max_hosts: int) -> list[Target]:
    """Every host address of a listed network on every listed port; a network larger than
    max_hosts addresses is refused, not truncated (a scan covers exactly what was asked or nothing)."""
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{cidr.strip()[:60]!r} is not an IP network like 10.0.0.0/28") from None
    if network.num_addresses > max_hosts:
        raise ValueError(
            f"{cidr.strip()} has {network.num_addresses} addresses, more than max_hosts "
            f"({max_hosts}): list smaller ranges or raise --max-hosts"
        )
    if not ports:
        raise ValueError(f"{cidr.strip()}: name the ports to scan (--ports 443,8443 or [discovery.tls] ports)")
    hosts = list(network.hosts()) if network.num_addresses > 2 else list(network)
    return [Target(host=str(h), port=p, scheme=STARTTLS_PORTS.get(p, "tls")) for h in hosts for p in ports]


class TLSDiscovery(_Strict):
    targets: list[str] = Field(
        default_factory=list,
        description=(
            "Endpoints to connect to: HOST:PORT, HOST:PORT/SNI (send SNI as a name other than HOST), smtp://HOST:PORT "
            "or imap://HOST:PORT (STARTTLS; ports 25, 587 and 143 use it by default). IPv6 as [::1]:443."
        ),
    )
    target_files: list[str] = Field(
        default_factory=list,
        description=(
            "Files of targets, one a line in the same spelling (# comments and blank lines skipped); relative "
            "to the config file's folder."
        ),
    )
    cidrs: list[str] = Field(
        default_factory=list,
        description=(
            "IP networks whose every address is scanned on each of `ports`; at most max_hosts addresses each."
        ),
    )
    ports: list[int] = Field(default_factory=lambda: [443], description="Ports scanned on each address of `cidrs`.")
    max_hosts: int = Field(
        65536,
        ge=1,
        le=16777216,
        description=(
            "Largest network (in addresses) a CIDR may name (65536: a /16); a larger one is refused, not cut short."
        ),
    )
    connect_timeout: Duration = Field(
        timedelta(seconds=5),
        description=("Per connection: the TCP connect, STARTTLS and TLS handshake together must finish within this."),
    )
    concurrency: int = Field(100, ge=1, le=2000, description="Connections open at once, at most.")
    rate: float = Field(
        200.0,
        gt=0,
        le=10000,
        description=(
            "New connections per second, at most, over the whole scan (a token bucket allowing short bursts "
            "of `concurrency`)."
        ),
    )

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_target(item)
        return value

    @field_validator("cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{item[:60]!r} is not an IP network like 10.0.0.0/28") from None
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        for port in value:
            if not 0 < port <= 65535:
                raise ValueError(f"{port} is not a TCP port (1-65535)")
        return value


class FilesDiscovery(_Strict):
    roots: list[str] = Field(
        default_factory=list,
        description=(
            "Folders (or single files) searched for certificates: PEM, DER, PKCS#7, PKCS#12 by content, whatever "
            "their extension; relative to the config file's folder. Symbolic links leading out of a root are skipped."
        ),
    )
    pkcs12_password_env: str | None = Field(
        None,
        description=(
            "Name of an environment variable holding the password of PKCS#12 (.pfx/.p12) files; files without a "
            "password are read either way. The password itself never goes into the config."
        ),
    )
    max_file_size: int = Field(
        1024 * 1024,
        ge=1024,
        le=4 * 1024 * 1024,
        description=("Files larger than this (bytes) are skipped unread: certificate files are small."),
    )


class CloudDiscoveryConfig(BaseModel):
    """`certsync discover --clouds`: which destinations are read, and how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    destinations: list[str] | None = Field(
        None,
        description=(
            "Destinations ([destination.NAME]) whose secrets are inspected; unset: every configured destination. "
            "--destination on the command line overrides it."
        ),
    )
    max_reads_per_second: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Pace reads (listing pages and secret reads) at this rate per quota domain; unset: 95% of the cloud's "
            "documented read quota (AWS 10,000/s, Google 600/min per project, Key Vault 4,000 per 10 s per vault)."
        ),
    )


class DiscoveryConfig(_Strict):
    expiring_within: Duration = Field(
        timedelta(days=30),
        description=(
            "A found certificate whose notAfter is within this is `expiring` (list --discovered, metrics, [notify])."
        ),
    )
    tls: TLSDiscovery = Field(default_factory=TLSDiscovery, description="[discovery.tls]: TLS endpoints to scan.")
    files: FilesDiscovery = Field(default_factory=FilesDiscovery, description="[discovery.files]: folders to search.")
    clouds: CloudDiscoveryConfig = Field(
        default_factory=CloudDiscoveryConfig, description=("Cloud secret stores: [discovery.clouds].")
    )
