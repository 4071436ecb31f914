"""One error hierarchy. Every user-facing failure is a CertsyncError with a one-line message.

`exit_code` is what the CLI returns: 2 for bad usage, config or input; 1 for a failure at run time.
Messages never contain key material, tokens or passwords.
"""

from __future__ import annotations


class CertsyncError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(CertsyncError):
    """Bad input from the user: config, CSR, names, sizes. Exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    pass


class NameError_(UsageError):
    """A secret name that its provider would refuse (checked before any call)."""


class PolicyError(UsageError):
    """A request that the profile forbids."""


class PayloadTooLarge(UsageError):
    pass


class MasterKeyError(CertsyncError):
    """Missing or wrong master key: never silently replaced."""


class VerifyError(CertsyncError):
    """A bundle that is not what consumers need, or a cloud that did not keep what was written."""


class StoreError(CertsyncError):
    pass


class LockError(CertsyncError):
    pass


class NotFound(CertsyncError):
    pass


class AuthError(CertsyncError):
    """A server request without valid credentials (HTTP 401). Says which credential, never its value."""


class Forbidden(CertsyncError):
    """Valid credentials that do not allow this request: scope, profile, names (HTTP 403)."""


class ProviderError(CertsyncError):
    """A cloud call failed. `destination` names where, the message says what."""

    def __init__(self, message: str, *, destination: str | None = None) -> None:
        super().__init__(message)
        self.destination = destination


class NotOwned(ProviderError):
    """The remote secret exists and lacks managed-by=certsync; adopt is off."""


class Throttled(ProviderError):
    pass


def one_line(exc: BaseException) -> str:
    """A failure as one line: our message as is, anything else as `Type: first line`."""
    if isinstance(exc, CertsyncError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}".rstrip(": ")
