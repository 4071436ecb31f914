"""`certsync adopt`: from a found certificate to the [certificate.NAME] stanza that replaces it.

The stanza reproduces the certificate's names (its CN when that is a DNS name or an IP address,
its DNS and IP SANs) under a profile, checked against the profile's rules and its CAs' name
constraints; for a certificate found in a cloud secret, it targets that secret, so the next
`apply` (on a destination with adopt = true) overwrites it with a certificate certsync issued.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from pydantic import ValidationError

from providers.registry import descriptors
from sync import config as config_mod
from sync.ca.hierarchy import check_name_constraints
from sync.config import CertificateConfig, Config
from sync.errors import ConfigError, PolicyError, UsageError
from sync.files import write_atomic
from sync.pki.policy import check_request
from sync.store import Found


@dataclass
class Proposal:
    name: str
    profile: str
    fingerprint: str
    source: str  # the location (or fingerprint) it was asked for
    common_name: str | None = None
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)
    key: str | None = None  # set only when it differs from the profile's key
    targets: list[tuple[str, str]] = field(default_factory=list)  # (destination, secret name)
    refused: list[str] = field(default_factory=list)  # why the profile would refuse a name
    needs_adopt: list[str] = field(default_factory=list)  # target destinations with adopt = false
    notes: list[str] = field(default_factory=list)

    @property
    def stanza(self) -> str:
        lines = [
            f"# adopted from {self.source} (sha256 {self.fingerprint[:16]}...) by certsync adopt",
            f"[certificate.{self.name}]",
            f"profile = {_s(self.profile)}",
        ]
        if self.common_name:
            lines.append(f"common_name = {_s(self.common_name)}")
        if self.dns_names:
            lines.append(f"dns_names = [{', '.join(_s(n) for n in self.dns_names)}]")
        if self.ip_addresses:
            lines.append(f"ip_addresses = [{', '.join(_s(n) for n in self.ip_addresses)}]")
        if self.key:
            lines.append(f"key = {_s(self.key)}")
        if self.targets:
            refs = ", ".join(f"{{ to = {_s(d)}, name = {_s(n)} }}" for d, n in self.targets)
            lines.append(f"destinations = [{refs}]")
        return "\n".join(lines) + "\n"

    @property
    def destination_lines(self) -> list[str]:
        """What to add to each target destination that does not allow adopting yet."""
        return [f"[destination.{d}]\nadopt = true" for d in self.needs_adopt]

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "profile": self.profile,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "common_name": self.common_name,
            "dns_names": self.dns_names,
            "ip_addresses": self.ip_addresses,
            "key": self.key,
            "destinations": [{"to": d, "name": n} for d, n in self.targets],
            "needs_adopt": self.needs_adopt,
            "refused": self.refused,
            "notes": self.notes,
            "stanza": self.stanza,
        }


def propose(config: Config, found: Found, key: str, name: str, profile_name: str) -> Proposal:
    if not config_mod.OBJECT_NAME.fullmatch(name):
        raise UsageError(
            f"--as {name!r}: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
        )
    if name in config.certificate:
        raise UsageError(f"--as {name!r}: certificate {name!r} is already in the config")
    profile = config.profile.get(profile_name)
    if profile is None:
        raise UsageError(
            f"--profile: unknown profile {profile_name!r} (defined: {', '.join(sorted(config.profile)) or 'none'})"
        )
    row = found.certificate
    source = key if any(loc.location == key for loc in found.locations) else row.fingerprint
    p = Proposal(name, profile_name, row.fingerprint, source)
    _names(p, row.subject, list(row.sans or []))
    if not (p.common_name or p.dns_names or p.ip_addresses):
        p.refused.append("the certificate has no DNS name or IP address certsync could issue for")
    _check_policy(config, p)
    _key(p, profile, row.key_type, row.key_size)
    _targets(config, p, found)
    return p


def _names(p: Proposal, subject: str, sans: list[str]) -> None:
    for san in sans:
        kind, _, value = san.partition(":")
        if kind == "DNS" and value not in p.dns_names:
            if _expressible(dns_names=[value]):
                p.dns_names.append(value)
            else:
                p.refused.append(f"DNS name {value!r} cannot be written in the config (not an ASCII DNS name)")
        elif kind == "IP" and value not in p.ip_addresses:
            p.ip_addresses.append(value)
    cn = _common_name(subject)
    if cn is None:
        return
    if _is_ip(cn) or _expressible(common_name=cn):
        p.common_name = cn
    else:
        p.notes.append(f"its CN {cn!r} is neither a DNS name nor an IP address: left out")


def _check_policy(config: Config, p: Proposal) -> None:
    profile = config.profile[p.profile]
    cn = p.common_name
    dns = list(dict.fromkeys([*p.dns_names, *([cn] if cn and not _is_ip(cn) else [])]))
    ips = list(dict.fromkeys([*p.ip_addresses, *([cn] if cn and _is_ip(cn) else [])]))
    for names, addresses in [*(([n], []) for n in dns), *(([], [a]) for a in ips)]:
        try:
            check_request(
                p.profile,
                profile,
                dns_names=names,
                ip_addresses=addresses,
                key_type=profile.key,
                validity=profile.validity,
            )
            check_name_constraints(config, profile.ca, names, addresses)
        except PolicyError as exc:
            p.refused.append(str(exc))


def _key(p: Proposal, profile, key_type: str, key_size: int) -> None:
    found = f"rsa-{key_size}" if key_type == "rsa" else key_type
    allowed = profile.allowed_keys if profile.allowed_keys is not None else [profile.key]
    if found == profile.key:
        return
    if found in allowed:
        p.key = found
    else:
        p.notes.append(
            f"its key ({found}) is not allowed by profile {p.profile!r}: certsync will issue a {profile.key} key"
        )


def _targets(config: Config, p: Proposal, found: Found) -> None:
    clouds = set(descriptors())
    for loc in found.locations:
        if loc.kind not in clouds or loc.gone_since is not None or loc.position != 0:
            continue
        dest, _, secret = loc.location.partition(":")[2].partition("/")
        if dest not in config.destination:
            p.notes.append(f"{loc.location}: destination {dest!r} is no longer in the config: not targeted")
            continue
        p.targets.append((dest, secret))
        if not config.destination[dest].adopt and dest not in p.needs_adopt:
            p.needs_adopt.append(dest)
    if not p.targets:
        p.notes.append("not found in any configured cloud destination: add destinations to push it to")


def append(path: Path, proposal: Proposal) -> None:
    """Append the stanza to the config file atomically, keeping its mode; the result must load."""
    if proposal.refused:
        raise PolicyError("nothing appended: " + "; ".join(proposal.refused))
    try:
        text = path.read_text(encoding="utf-8")
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise UsageError(f"--append: cannot read {path}: {exc.strerror}") from None
    new = text + ("" if text.endswith("\n") or not text else "\n") + "\n" + proposal.stanza
    try:
        data = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--append: {path} would not be valid TOML ({exc}); nothing appended") from None
    if proposal.name in tomllib.loads(text).get("certificate", {}):
        raise UsageError(f"--append: certificate {proposal.name!r} is already in {path}")
    try:
        config_mod.from_dict(data, source=str(path), base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise UsageError(f"--append: the config would not load, nothing appended: {exc}") from None
    write_atomic(path, new, mode=mode, option="--append")


def _common_name(subject: str) -> str | None:
    try:
        attrs = x509.Name.from_rfc4514_string(subject).get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    except ValueError:
        return None
    return str(attrs[0].value) if attrs else None


def _expressible(**names) -> bool:
    try:
        CertificateConfig(profile="p", **names)
        return True
    except ValidationError:
        return False


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _s(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)
