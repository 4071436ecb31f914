"""Every cloud certsync can push to: one line per provider module, each exporting a DESCRIPTOR
(providers.base.ProviderDescriptor: config model, adapter with its name rule and payload limit,
factory, quota).

To add a cloud: write providers/<kind>.py (a DestinationBase subclass, a BaseProvider subclass,
`from_destination`, DESCRIPTOR) and add its line below. The config union, the name checks at
load time, pacing and the factories all come from here. The modules import no cloud SDK until an
adapter is built, so loading them all is cheap.
"""

from __future__ import annotations

import importlib
from functools import cache

from providers.base import DestinationBase, ProviderDescriptor

MODULES = (
    "providers.aws",
    "providers.gcp",
    "providers.azure",
    "providers.aws_acm",
)


@cache
def descriptors() -> dict[str, ProviderDescriptor]:
    """Descriptors by kind, in MODULES order (the order of the configuration reference)."""
    found: dict[str, ProviderDescriptor] = {}
    for module in MODULES:
        d = importlib.import_module(module).DESCRIPTOR
        if d.kind in found:
            raise TypeError(f"{module}: provider kind {d.kind!r} is already registered")
        found[d.kind] = d
    return found


def descriptor(kind: str) -> ProviderDescriptor:
    try:
        return descriptors()[kind]
    except KeyError:
        raise KeyError(f"unknown provider {kind!r} (known: {', '.join(descriptors())})") from None


def destination_models() -> tuple[type[DestinationBase], ...]:
    return tuple(d.config for d in descriptors().values())
