"""The provider protocol shared by every cloud adapter.

Providers see a name, a payload, a content type and labels; never the config tree or the CA.
Ownership (managed-by=certsync) is enforced here too, as a last line of defence: `put` and
`delete` refuse a secret that lacks the tag unless the adapter was built with adopt=True.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator, Mapping, Protocol

from sync.errors import NameError_, NotOwned, PayloadTooLarge

MANAGED_BY = "managed-by"
MANAGED_BY_VALUE = "certsync"
CERT_LABEL = "certsync-cert"
FP_LABEL = "certsync-fp"


@dataclass(frozen=True)
class RemoteSecret:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    version: str | None = None          # provider version id of the current value
    updated: datetime | None = None
    value: str | bytes | None = None    # only from get()
    content_type: str | None = None

    @property
    def managed(self) -> bool:
        return self.labels.get(MANAGED_BY) == MANAGED_BY_VALUE

    @property
    def fingerprint(self) -> str | None:
        return self.labels.get(FP_LABEL)


class Provider(Protocol):
    kind: str

    def list_managed(self) -> Iterator[RemoteSecret]: ...

    def get(self, name: str) -> RemoteSecret | None: ...

    def put(self, name: str, payload: str | bytes, *, content_type: str,
            labels: Mapping[str, str]) -> RemoteSecret: ...

    def delete(self, name: str, *, purge: bool = False) -> None: ...


def ownership_labels(cert_name: str, fingerprint: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGED_BY_VALUE, CERT_LABEL: cert_name, FP_LABEL: fingerprint}


def refuse_foreign(existing: RemoteSecret | None, name: str, adopt: bool) -> None:
    """Raise NotOwned when `existing` is a secret certsync did not create and adopt is off."""
    if existing is not None and not existing.managed and not adopt:
        raise NotOwned(f"secret {name!r} exists and is not managed by certsync "
                       f"(no tag {MANAGED_BY}={MANAGED_BY_VALUE}); set adopt = true to take it over")


def check_payload_size(name: str, payload: str | bytes, limit: int, service: str) -> None:
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > limit:
        raise PayloadTooLarge(f"payload for {name!r} is {size} bytes; {service} allows at most {limit}")


# --- name rules, checked before any call -------------------------------------------------------

@dataclass(frozen=True)
class NameRule:
    pattern: re.Pattern[str]
    max_len: int
    description: str

    def check(self, name: str, provider: str) -> None:
        if not name or len(name) > self.max_len or not self.pattern.fullmatch(name):
            raise NameError_(f"invalid {provider} secret name {name!r}: {self.description}")


NAME_RULES: dict[str, NameRule] = {
    # AWS: 1-512 chars of letters, digits and /_+=.@-
    "aws": NameRule(re.compile(r"[A-Za-z0-9/_+=.@-]+"), 512,
                    "1-512 characters of letters, digits and /_+=.@-"),
    # Google: 1-255 chars of letters, digits, underscore and hyphen
    "gcp": NameRule(re.compile(r"[A-Za-z0-9_-]+"), 255,
                    "1-255 characters of letters, digits, '_' and '-'"),
    # Azure: 1-127 chars of letters, digits and hyphen
    "azure": NameRule(re.compile(r"[0-9A-Za-z-]+"), 127,
                      "1-127 characters of letters, digits and '-'"),
}


def validate_name(provider: str, name: str) -> None:
    NAME_RULES[provider].check(name, provider)


# Registry of adapter factories, filled lazily so no cloud SDK is imported until needed.
# Each factory takes the destination's config model and returns a Provider.
REGISTRY: dict[str, Callable[..., Provider]] = {}


def load_provider_factory(kind: str) -> Callable[..., Provider]:
    if kind not in REGISTRY:
        import importlib
        module = importlib.import_module(f"providers.{kind}")
        REGISTRY[kind] = module.from_destination
    return REGISTRY[kind]
