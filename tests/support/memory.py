"""An in-memory provider for the unit tests of apply, alerts and metrics: the BaseProvider
template over a dict, so it checks names, sizes and ownership as the cloud adapters do. It runs
through the contract suite (tests/contract, kit "memory") like every other provider.

It stands in for an AWS destination (`kind = "aws"`, AWS's name rule and payload limit): the
unit tests configure `provider = "aws"` and pass `providers=lambda d: MemoryProvider()`.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from datetime import datetime, UTC
from typing import Any
from collections.abc import Iterator, Mapping

from providers import aws
from providers.base import BaseProvider, RemoteSecret
from sync.errors import ProviderError


class MemoryCloud(dict):
    """The secrets of one in-memory "cloud" (name -> RemoteSecret with its value); providers built
    on the same cloud see the same secrets."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.versions = itertools.count(1)


class Unreachable(MemoryCloud):
    """A cloud no call reaches: for checks that must happen before any call."""

    def _down(self, *args: Any, **kwargs: Any) -> Any:
        raise ProviderError("memory: unreachable")

    get = __getitem__ = __setitem__ = pop = values = items = _down


class MemoryProvider(BaseProvider[RemoteSecret]):
    """`fail = True` makes every write fail (a simulated outage)."""

    kind = "aws"
    service = "memory (standing in for AWS Secrets Manager)"
    name_rule = aws.NAME_RULE
    max_payload = aws.MAX_PAYLOAD

    def __init__(
        self, cloud: MemoryCloud | None = None, *, adopt: bool = False, destination: str | None = None
    ) -> None:
        super().__init__(adopt=adopt, destination=destination)
        self.cloud = MemoryCloud() if cloud is None else cloud
        self.fail = False

    @property
    def secrets(self) -> MemoryCloud:
        return self.cloud

    def _list(self) -> Iterator[RemoteSecret]:
        with self.cloud.lock:
            listed = [replace(s, value=None) for s in self.cloud.values()]
        yield from listed

    def _list_all(self) -> Iterator[RemoteSecret]:
        return self._list()

    def _lookup(self, name: str) -> RemoteSecret | None:
        return self.cloud.get(name)

    def _read(self, name: str, current: RemoteSecret) -> RemoteSecret:
        return current

    def _write(
        self,
        name: str,
        current: RemoteSecret | None,
        payload: str | bytes,
        content_type: str,
        labels: Mapping[str, str],
    ) -> RemoteSecret:
        """Value, content type and labels at once; labels set by others are kept (as AWS tags)."""
        if self.fail:
            raise ProviderError("simulated outage")
        with self.cloud.lock:
            old = self.cloud.get(name)
            secret = RemoteSecret(
                name,
                {**(old.labels if old else {}), **labels},
                str(next(self.cloud.versions)),
                updated=datetime.now(UTC),
                value=payload,
                content_type=content_type,
            )
            self.cloud[name] = secret
        return secret

    def _relabel(
        self,
        name: str,
        current: RemoteSecret | None,
        written: RemoteSecret,
        content_type: str,
        labels: Mapping[str, str],
    ) -> RemoteSecret:
        return replace(written, value=None)

    def _remove(self, name: str, current: RemoteSecret, *, purge: bool) -> None:
        self.cloud.pop(name, None)
