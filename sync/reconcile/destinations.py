"""Destinations as a run sees them: one provider per destination, built on first use (so a run
that touches only AWS imports only boto3), and the payload options each one asks for."""

from __future__ import annotations

import threading
from collections.abc import Callable

from providers.base import Provider, load_provider_factory
from sync.config import Config
from sync.pki import render

ProviderFactory = Callable[[str], Provider]


def render_options(config: Config, destination: str, password_tag: Callable[[str, bytes], str]) -> render.RenderOptions:
    """What a destination asks for. A pkcs12 destination with a password also gets the
    password's keyed tag (`password_tag(destination, password)`, Store.password_tag: it loads the
    master key) so that a changed password changes the fingerprint; others need no key."""
    dest = config.destination[destination]
    tag = ""
    if dest.format == "pkcs12" and dest.pkcs12_password_env:
        tag = password_tag(destination, render.pkcs12_password(dest.pkcs12_password_env))
    return render.RenderOptions(dest.format, dest.pkcs12_password_env, dest.pkcs12_encryption, tag)


class Providers:
    """One provider per destination, built on first use; a failure to build is remembered."""

    def __init__(self, config: Config, factory: Callable | None = None) -> None:
        self.config = config
        self._factory = factory
        self._built: dict[str, Provider | Exception] = {}
        self._lock = threading.Lock()  # guards the two dicts
        self._building: dict[str, threading.Lock] = {}  # one per destination: slow builds in parallel

    def __call__(self, destination: str) -> Provider:
        with self._lock:
            building = self._building.setdefault(destination, threading.Lock())
        with building:
            if destination not in self._built:
                dest = self.config.destination[destination]
                try:
                    factory = self._factory or load_provider_factory(dest.provider)
                    self._built[destination] = factory(dest)
                except Exception as exc:  # remembered: every job of that lane fails with it, once built
                    self._built[destination] = exc
        built = self._built[destination]
        if isinstance(built, Exception):
            raise built
        return built
