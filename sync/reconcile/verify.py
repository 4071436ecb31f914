"""Verify after write: the cloud kept what was written (its answer, or a read-back)."""

from __future__ import annotations

from providers.base import RemoteSecret
from sync.errors import VerifyError


def check_written(remote: RemoteSecret, fingerprint: str, body: str | None = None) -> None:
    """The write response (or a read) must show our fingerprint, a version, and our value."""
    if remote.fingerprint is not None and remote.fingerprint != fingerprint:
        raise VerifyError(
            f"verify after write: {remote.name!r} carries fingerprint {remote.fingerprint}, expected {fingerprint}"
        )
    if not remote.version:
        raise VerifyError(f"verify after write: the cloud reported no version for {remote.name!r}")
    if body is not None and remote.value is not None:
        value = remote.value.decode() if isinstance(remote.value, bytes) else remote.value
        if value != body:
            raise VerifyError(f"verify after write: the value read back from {remote.name!r} differs")
