"""Profile rules: which names, keys and lifetimes a profile allows. Every violation names its rule."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import TYPE_CHECKING
from collections.abc import Sequence

from cryptography import x509

from sync.errors import PolicyError

if TYPE_CHECKING:
    from sync.config import ProfileConfig


def domain_allowed(name: str, patterns: Sequence[str]) -> bool:
    """`*.example.internal` matches exactly one label under example.internal (RFC 6125 style);
    a plain pattern matches itself. An empty pattern list allows no name."""
    name = name.lower().rstrip(".")
    for pattern in (p.lower().rstrip(".") for p in patterns):
        if pattern.startswith("*."):
            head, _, rest = name.partition(".")
            if rest == pattern[2:] and head and head != "*":
                return True
            if name == pattern:  # a wildcard SAN requested under a wildcard pattern
                return True
        elif name == pattern:
            return True
    return False


def ip_allowed(address: str, networks: Sequence[str]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def check_request(
    profile_name: str,
    profile: ProfileConfig,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    key_type: str,
    validity: timedelta,
) -> None:
    """Deny by default: a name passes only when the profile names it (allowed_domains, allowed_ips)
    or explicitly allows any name (allow_any_name = true)."""
    where = f"profile {profile_name!r}"
    if not profile.allow_any_name:
        for name in dns_names:
            if not profile.allowed_domains:
                raise PolicyError(
                    f"{where}: DNS name {name!r} is not allowed: the profile has no allowed_domains "
                    "(set allowed_domains, or allow_any_name = true)"
                )
            if not domain_allowed(name, profile.allowed_domains):
                raise PolicyError(
                    f"{where}: DNS name {name!r} is not within allowed_domains ({', '.join(profile.allowed_domains)})"
                )
        for address in ip_addresses:
            if not profile.allowed_ips:
                raise PolicyError(
                    f"{where}: IP address {address} is not allowed: the profile has no allowed_ips "
                    "(set allowed_ips, or allow_any_name = true)"
                )
            if not ip_allowed(address, profile.allowed_ips):
                raise PolicyError(
                    f"{where}: IP address {address} is not within allowed_ips ({', '.join(profile.allowed_ips)})"
                )
    allowed = profile.allowed_keys if profile.allowed_keys is not None else [profile.key]
    if key_type not in allowed:
        raise PolicyError(f"{where}: key type {key_type} is not allowed (allowed: {', '.join(allowed)})")
    if profile.max_validity is not None and validity > profile.max_validity:
        raise PolicyError(f"{where}: validity {validity.days}d exceeds max_validity {profile.max_validity.days}d")


def _networks(subtrees: Sequence[x509.GeneralName]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    # In a name constraint an iPAddress is always a network (RFC 5280 4.2.1.10; cryptography parses it so).
    return [
        g.value
        for g in subtrees
        if isinstance(g, x509.IPAddress) and isinstance(g.value, (ipaddress.IPv4Network, ipaddress.IPv6Network))
    ]


def check_name_constraints(
    where: str, constraints: x509.NameConstraints, dns_names: Sequence[str], ip_addresses: Sequence[str]
) -> None:
    """RFC 5280 4.2.1.10 for DNS names and IP addresses: a name of a type that has permitted
    subtrees must be within one of them, and no name may be within an excluded subtree. A DNS
    subtree `example.internal` holds that name and every name under it; a wildcard SAN
    (`*.example.internal`) is refused when any name it stands for would be."""
    permitted = list(constraints.permitted_subtrees or ())
    excluded = list(constraints.excluded_subtrees or ())
    allowed_dns = [g.value for g in permitted if isinstance(g, x509.DNSName)]
    denied_dns = [g.value for g in excluded if isinstance(g, x509.DNSName)]
    allowed_ip = _networks(permitted)
    denied_ip = _networks(excluded)
    for name in dns_names:
        if allowed_dns and not any(_dns_within(name, base) for base in allowed_dns):
            raise PolicyError(
                f"{where}: DNS name {name!r} is outside its name constraints (permitted: {', '.join(allowed_dns)})"
            )
        for base in denied_dns:
            if _dns_within(name, base) or _wildcard_reaches(name, base):
                raise PolicyError(f"{where}: DNS name {name!r} is within its excluded name constraint {base!r}")
    for address in ip_addresses:
        ip = ipaddress.ip_address(address)
        if allowed_ip and not any(ip in net for net in allowed_ip):
            raise PolicyError(
                f"{where}: IP address {address} is outside its name constraints "
                f"(permitted: {', '.join(str(n) for n in allowed_ip)})"
            )
        for net in denied_ip:
            if ip in net:
                raise PolicyError(f"{where}: IP address {address} is within its excluded name constraint {net}")


def _dns_within(name: str, base: str) -> bool:
    """`name` is in the subtree `base` (a leading '.' in base: only names under it)."""
    name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    if not base:
        return True
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _wildcard_reaches(name: str, base: str) -> bool:
    """`*.zone` stands for every one-label name under zone: it reaches a subtree one label below zone."""
    name, base = name.lower().rstrip("."), base.lower().strip(".")
    if not name.startswith("*."):
        return False
    head, _, rest = base.partition(".")
    return bool(head) and rest == name[2:]
