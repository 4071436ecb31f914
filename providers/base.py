"""What every cloud adapter shares: the protocol, the put/get/delete template, the descriptor.

Providers see a name, a payload, a content type and labels; never the config tree or the CA.

`BaseProvider` writes the sequence once (names and sizes checked before any call, ownership
enforced as a last line of defence: `put` and `delete` refuse a secret that lacks
managed-by=certsync, or whose certsync-cert names another certificate than the one written or
deleted, unless the adapter was built with adopt=True; delete is idempotent; every
error raised names the destination). An adapter (providers/aws.py, gcp.py, azure.py) fills in
only the hooks, which is where the clouds really differ.

`ProviderDescriptor` is everything the rest of certsync needs to know about one cloud: its
[destination.NAME] config model, the adapter (name rule, payload limit), the factory and the quota.
Each adapter module exports one as DESCRIPTOR; providers/registry.py lists them.
"""

from __future__ import annotations

import ipaddress
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, get_args
from collections.abc import Callable, Iterator, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from urllib.parse import urlsplit

from sync.durations import Duration
from sync.errors import CertsyncError, NameError_, NotOwned, PayloadTooLarge, UsageError

MANAGED_BY = "managed-by"
MANAGED_BY_VALUE = "certsync"
CERT_LABEL = "certsync-cert"
FP_LABEL = "certsync-fp"


@dataclass(frozen=True)
class RemoteSecret:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    version: str | None = None  # provider version id of the current value
    updated: datetime | None = None
    value: str | bytes | None = None  # only from get()
    content_type: str | None = None
    enabled: bool = True  # False: the service will not hand out its value (Key Vault: disabled)

    @property
    def managed(self) -> bool:
        return self.labels.get(MANAGED_BY) == MANAGED_BY_VALUE

    @property
    def fingerprint(self) -> str | None:
        return self.labels.get(FP_LABEL)


class Provider(Protocol):
    @property
    def kind(self) -> str: ...

    def list_managed(self) -> Iterator[RemoteSecret]: ...

    def list_all(self) -> Iterator[RemoteSecret]: ...

    def get(self, name: str) -> RemoteSecret | None: ...

    def put(self, name: str, payload: str | bytes, *, content_type: str, labels: Mapping[str, str]) -> RemoteSecret: ...

    def delete(self, name: str, *, cert: str, purge: bool = False) -> None: ...


def ownership_labels(cert_name: str, fingerprint: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGED_BY_VALUE, CERT_LABEL: cert_name, FP_LABEL: fingerprint}


def refuse_foreign(existing: RemoteSecret | None, name: str, adopt: bool, cert: str) -> None:
    """Raise NotOwned unless `existing` is absent, or certsync wrote it for certificate `cert`
    (tags managed-by=certsync and certsync-cert=`cert`), or adopt is on."""
    if existing is None or adopt:
        return
    if not existing.managed:
        raise NotOwned(
            f"secret {name!r} exists and is not managed by certsync "
            f"(no tag {MANAGED_BY}={MANAGED_BY_VALUE}); set adopt = true to take it over"
        )
    owner = existing.labels.get(CERT_LABEL)
    if owner != cert:
        raise NotOwned(
            f"secret {name!r} belongs to certificate {owner!r}, not {cert!r} "
            f"(tag {CERT_LABEL}); set adopt = true to take it over"
        )


def label_cert(name: str, labels: Mapping[str, str]) -> str:
    """The certificate a put writes for: its certsync-cert label (required: ownership is per certificate)."""
    cert = labels.get(CERT_LABEL)
    if not cert:
        raise UsageError(f"put of secret {name!r}: labels must name the certificate ({CERT_LABEL})")
    return cert


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

    def ok(self, name: str) -> bool:
        return 0 < len(name) <= self.max_len and bool(self.pattern.fullmatch(name))

    def check(self, name: str, provider: str) -> None:
        if not self.ok(name):
            raise NameError_(f"invalid {provider} secret name {name!r}: {self.description}")


# --- the template -------------------------------------------------------------------------------

H = TypeVar("H")  # an adapter's handle on the current secret: what its lookup returns


class BaseProvider(Generic[H]):
    """The Provider protocol written once; subclasses implement the hooks below.

        get(name)     check the name -> _lookup -> _read
        put(name, …)  check name, size (_prepare, _check_labels, certsync-cert present) -> _lookup
                      -> absent: _create (which may finish the job; "already exists", per
                         _already_exists, after a lost answer: _lookup again, and a secret with our
                         tags and fingerprint is the write done) | present: _check_owner
                      -> _write the value -> _relabel (labels after the value: a failed write
                         never leaves a fresh fingerprint vouching for an old value)
        delete(name, cert)  check the name -> _lookup -> present: _check_owner, _remove
                      -> _after_delete (absent is not an error)
        list_managed  _list, keeping only secrets labelled managed-by=certsync
        list_all      _list_all: every secret (names, labels, no values), for discovery; reading
                      one is `get`, which never checks ownership (a foreign secret reads the same)

    `H` is whatever `_lookup` returns for an existing secret (AWS: the DescribeSecret response,
    Google: the Secret with its etag, Azure: the current version with its tags). Hooks wrap
    their own SDK calls into one-line ProviderErrors; the template adds the destination's name.
    """

    kind: ClassVar[str]  # the `provider = "..."` of its destinations
    service: ClassVar[str]  # the cloud service's name, for messages
    name_rule: ClassVar[NameRule]
    max_payload: ClassVar[int]  # bytes

    # called once per throttling answer the SDK retried on its own (pacing slows down on it)
    on_throttle: Callable[[], None] | None = None

    def __init__(self, *, adopt: bool = False, destination: str | None = None) -> None:
        self.adopt = adopt
        self.destination = destination  # the [destination.NAME] this adapter serves; in every error

    def _throttled(self) -> None:
        """An adapter's SDK hook saw a throttling answer (which the SDK then retries)."""
        if self.on_throttle is not None:
            self.on_throttle()

    # --- protocol (the template) -----------------------------------------------------------

    def list_managed(self) -> Iterator[RemoteSecret]:
        with self._naming():
            for secret in self._list():
                if secret.managed:  # server-side filters are prefixes or absent: check again
                    yield secret

    def list_all(self) -> Iterator[RemoteSecret]:
        """Every secret of the destination, managed or not, paged by the SDK; no values."""
        with self._naming():
            yield from self._list_all()

    def get(self, name: str) -> RemoteSecret | None:
        with self._naming():
            self.check_name(name)
            current = self._lookup(name)
            return None if current is None else self._read(name, current)

    def put(self, name: str, payload: str | bytes, *, content_type: str, labels: Mapping[str, str]) -> RemoteSecret:
        with self._naming():
            self.check_name(name)
            payload = self._prepare(name, payload)
            check_payload_size(name, payload, self.max_payload, self.service)
            self._check_labels(name, labels)
            cert = label_cert(name, labels)
            current = self._lookup(name)
            if current is None:
                try:
                    created = self._create(name, payload, content_type, labels)
                except CertsyncError as exc:
                    if not self._already_exists(exc):
                        raise
                    # the create reached the cloud but its answer was lost, and the SDK's retry
                    # heard "already exists" (or someone else created it meanwhile): look again
                    current = self._lookup(name)
                    if current is None:
                        raise
                    done = self._written_already(name, current, labels)
                    if done is not None:
                        return done  # our tags, our certificate, our fingerprint: the write is done
                    self._check_owner(name, current, cert)
                else:
                    if isinstance(created, RemoteSecret):
                        return created  # value and labels written in one call
                    current = created
            else:
                self._check_owner(name, current, cert)
            written = self._write(name, current, payload, content_type, labels)
            return self._relabel(name, current, written, content_type, labels)

    def delete(self, name: str, *, cert: str, purge: bool = False) -> None:
        """Delete certificate `cert`'s secret. Idempotent: absent is not an error. `purge`: leave
        nothing recoverable behind."""
        with self._naming():
            self.check_name(name)
            current = self._lookup(name)
            if current is not None:
                self._check_owner(name, current, cert)
                self._remove(name, current, purge=purge)
            self._after_delete(name, cert=cert, purge=purge)

    def check_name(self, name: str) -> None:
        self.name_rule.check(name, self.kind)

    # --- hooks: what differs per cloud -----------------------------------------------------

    def _list(self) -> Iterator[RemoteSecret]:
        """Every secret the listing returns (no values); the template drops unmanaged ones."""
        raise NotImplementedError

    def _list_all(self) -> Iterator[RemoteSecret]:
        """Every secret the service lists, without a filter (no values)."""
        raise NotImplementedError

    def _lookup(self, name: str) -> H | None:
        """The current secret, or None when a put would have to create it."""
        raise NotImplementedError

    def _read(self, name: str, current: H) -> RemoteSecret | None:
        """The secret with its value (value None when it has no readable value); None when
        `current` is not visible to readers (AWS: pending deletion)."""
        raise NotImplementedError

    def _view(self, name: str, current: H) -> RemoteSecret:
        """`current` as a RemoteSecret (labels at least), for the ownership check."""
        if isinstance(current, RemoteSecret):
            return current
        raise NotImplementedError

    def _prepare(self, name: str, payload: str | bytes) -> str | bytes:
        """The payload as the service stores it (before the size check); refuse what it cannot hold."""
        return payload

    def _check_labels(self, name: str, labels: Mapping[str, str]) -> None:
        """The service's label rules, before any call."""

    def _check_owner(self, name: str, current: H, cert: str) -> None:
        """Refuse (NotOwned) unless `current` was written by certsync for `cert`, or adopt is on."""
        refuse_foreign(self._view(name, current), name, self.adopt, cert)

    def _create(
        self, name: str, payload: str | bytes, content_type: str, labels: Mapping[str, str]
    ) -> RemoteSecret | H | None:
        """Create an absent secret. Return the finished RemoteSecret when the create wrote value
        and labels; else the new handle (or None) for _write and _relabel to carry on with."""
        return None

    def _already_exists(self, exc: CertsyncError) -> bool:
        """Whether `_create` failed because the secret exists (AWS ResourceExistsException, Google
        ALREADY_EXISTS, Azure 409 on a create): then the template looks again."""
        return False

    def _written_already(self, name: str, current: H, labels: Mapping[str, str]) -> RemoteSecret | None:
        """`current` as the finished write when it carries everything the put writes (managed-by,
        certsync-cert and certsync-fp as in `labels`, which the value is labelled with only once it
        is in place); else None, and the put carries on as an update (ownership checked)."""
        view = self._view(name, current)
        if view.managed and all(view.labels.get(k) == labels.get(k) for k in (CERT_LABEL, FP_LABEL)):
            return view
        return None

    def _write(
        self, name: str, current: H | None, payload: str | bytes, content_type: str, labels: Mapping[str, str]
    ) -> Any:
        """Write the value as the secret's new current version; returns what _relabel needs."""
        raise NotImplementedError

    def _relabel(
        self, name: str, current: H | None, written: Any, content_type: str, labels: Mapping[str, str]
    ) -> RemoteSecret:
        """Bring the labels up to date (after the value) and describe what was written."""
        raise NotImplementedError

    def _remove(self, name: str, current: H, *, purge: bool) -> None:
        """Delete an existing (owned) secret; already gone meanwhile is not an error."""
        raise NotImplementedError

    def _after_delete(self, name: str, *, cert: str, purge: bool) -> None:
        """After delete, present or not (Key Vault: purge the soft-deleted copy)."""

    # --- errors ----------------------------------------------------------------------------

    @contextmanager
    def _naming(self) -> Iterator[None]:
        """Every certsync error leaving the adapter names its destination."""
        try:
            yield
        except CertsyncError as exc:
            if self.destination is not None:
                name_destination(exc, self.destination)
            raise


def name_destination(exc: CertsyncError, destination: str) -> CertsyncError:
    """Prefix `exc`'s message with the destination (once) and record it on the error."""
    prefix = f"destination {destination!r}: "
    if not exc.message.startswith(prefix):
        exc.message = prefix + exc.message
        exc.args = (exc.message,)
    exc.destination = destination  # type: ignore[attr-defined]  # ProviderError declares it; others get it
    return exc


# --- destinations: config model and descriptor ---------------------------------------------------

Format = Literal["json", "pem", "pkcs12"]


class DestinationBase(BaseModel):
    """Keys every [destination.NAME] has; each provider module subclasses it with `provider` and
    its own keys. `name` is the NAME, set when the config is loaded (None for a model built by hand)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format = Field(
        "json",
        description=(
            "Payload written to the secret: json (fields certificate, private_key, certificate_chain, ca_certificate, "
            "serial, not_after, fingerprint_sha256), pem (leaf, intermediates, PKCS#8 key) or pkcs12 (base64 PFX)."
        ),
    )
    adopt: bool = Field(
        False, description=("Take over (overwrite, delete) secrets that exist without the managed-by=certsync tag.")
    )
    pkcs12_password_env: str | None = Field(
        None,
        description=(
            "For pkcs12: name of the environment variable holding the PFX password; unset makes a password-less PFX "
            "(what Azure services expect)."
        ),
    )
    pkcs12_encryption: Literal["aes256", "legacy"] = Field(
        "aes256", description=("For pkcs12: aes256 (AES-256/PBES2) or legacy (3DES/SHA-1, for old readers).")
    )
    max_calls_per_second: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Pace writes to this cloud at this rate; unset: 95% of the cloud's documented quota. Reads (look-ups, "
            "listing pages) are paced at the cloud's read quota scaled by the same factor."
        ),
    )
    concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description=("Calls in flight at once per quota domain (account and region, project, or vault)."),
    )
    verify_after_write: Literal["response", "read", "off"] = Field(
        "response",
        description=(
            'Check each write: from the write\'s response ("response"), by reading the secret back ("read"), or not '
            'at all ("off").'
        ),
    )

    allow_insecure_transport: bool = Field(
        False,
        description=(
            "DANGEROUS. Allow this destination's insecure transport setting (gcp insecure = true, an http:// aws "
            "endpoint_url, azure verify_challenge_resource = false) for a host that is not this machine (localhost, "
            "127.0.0.0/8, ::1): secrets and credentials may then travel in plaintext or to the wrong server. Unset, "
            "such a setting is refused for any other host; it is warned about on every run either way."
        ),
    )

    # deploy hooks (sync/reconcile/hooks.py): run after each successful push here, with facts, never the key
    deploy_hook: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            "Command run after each successful push (and its verify) to this destination, as an argv list (no shell), "
            'e.g. ["/usr/local/bin/reload", "--fast"]. It gets the certificate\'s facts in CERTSYNC_* environment '
            "variables (docs/hooks.md), never the key or the payload. A failure is reported and retried on later runs; "
            "it never undoes the push."
        ),
    )
    deploy_webhook: str | None = Field(
        None,
        description=(
            "http(s) URL POSTed a JSON document of the same facts after each successful push to this destination."
        ),
    )
    deploy_webhook_auth_env: str | None = Field(
        None,
        description=(
            "Name of the environment variable whose value is sent as the webhook's Authorization header (e.g. "
            '"Bearer ..."); the value itself never goes into the config.'
        ),
    )
    deploy_hook_timeout: Duration = Field(
        timedelta(seconds=60),
        description=("How long a deploy hook command (killed with its process group) or webhook call may take."),
    )

    _name: str | None = PrivateAttr(None)

    @field_validator("deploy_hook", mode="before")
    @classmethod
    def _not_a_shell_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                'must be an argv list like ["/usr/local/bin/reload", "--fast"], not a shell '
                'string (no shell runs it; for shell syntax use ["/bin/sh", "-c", "..."])'
            )
        return value

    @field_validator("deploy_hook")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value[0].strip():
            raise ValueError(
                "the command (first item) must not be empty; write an argv list like "
                '["/usr/local/bin/reload", "--fast"]'
            )
        if value is not None and any("\0" in arg for arg in value):
            raise ValueError("an argument holds a NUL character")
        return value

    @field_validator("deploy_webhook")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")  # never echo it: it may hold a token
        return value

    @field_validator("deploy_webhook_auth_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not its value")
        return value

    @model_validator(mode="after")
    def _webhook_auth(self) -> DestinationBase:
        if self.deploy_webhook_auth_env and not self.deploy_webhook:
            raise ValueError("deploy_webhook_auth_env needs deploy_webhook")
        if (
            self.deploy_webhook_auth_env
            and self.deploy_webhook
            and self.deploy_webhook.lower().startswith("http://")
            and not is_loopback(url_host(self.deploy_webhook))
            and not self.allow_insecure_transport
        ):
            raise ValueError(
                "deploy_webhook is http:// and deploy_webhook_auth_env is set: the Authorization "
                f"header would travel in plaintext; use https:// (http:// only for {LOOPBACK})"
            )
        return self

    @property
    def has_hooks(self) -> bool:
        return bool(self.deploy_hook or self.deploy_webhook)

    @property
    def name(self) -> str | None:
        return self._name

    def insecure_transport(self) -> str | None:
        """What is insecure about this destination's transport (one warning per run), or None."""
        return None

    def named(self, name: str) -> DestinationBase:
        """This destination, knowing its NAME (the config loader calls it)."""
        self._name = name
        return self


LOOPBACK = "localhost, 127.0.0.0/8 or ::1"


def is_loopback(host: str | None) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (a name that merely starts so, like 127.0.0.1.example.com, is not)."""
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_host(url: str | None) -> str | None:
    """The host of a URL, or of a bare host:port."""
    if not url:
        return None
    try:
        return urlsplit(url if "://" in url else f"//{url}").hostname
    except ValueError:
        return None


def refuse_off_loopback(what: str, host: str | None, info: ValidationInfo) -> None:
    """An insecure transport setting is for an emulator on this machine: raise (a config error on
    the setting's key) for any other host, unless the destination sets allow_insecure_transport."""
    if is_loopback(host) or info.data.get("allow_insecure_transport"):
        return
    raise ValueError(
        f"{what} is allowed only for a host on this machine ({LOOPBACK}), not {host or 'none'!r}; "
        "set allow_insecure_transport = true on this destination to allow it anyway"
    )


def insecure_note(what: str, host: str | None) -> str:
    """A warning line's text: what is insecure, and whether only the override lets it be."""
    if is_loopback(host):
        return f"{what} (host {host}: for an emulator on this machine only)"
    return f"{what} to {host or 'an unknown host'}, allowed by allow_insecure_transport = true"


@dataclass(frozen=True)
class QuotaRule:
    """Calls per second the service allows per quota domain, and what one push and one delete cost."""

    calls_per_second: float
    calls_per_push: float
    calls_per_delete: float = 1.0
    calls_per_purge: float = 0.0  # added to a delete when the destination purges (purge_on_delete)
    # reads (discovery): what the service allows per domain for the calls a `get` makes, and how
    # many of them one `get` makes (a listing page counts one too)
    reads_per_second: float = 10.0
    calls_per_read: float = 1.0
    # what else a run's calls cost (sync/reconcile/pacing.py counts every call): the reads a push
    # and a delete make before writing (their look-up), the secrets one listing page holds, and
    # whether the service counts reads and writes in one budget (Key Vault: all transactions)
    reads_per_push: float = 0.0
    reads_per_delete: float = 0.0
    page_size: int = 100
    one_budget: bool = False


@dataclass(frozen=True)
class ProviderDescriptor:
    """One cloud, as the rest of certsync sees it."""

    config: type[DestinationBase]  # the [destination.NAME] model (`provider` = kind)
    adapter: type[BaseProvider[Any]]  # kind, service, name rule, payload limit
    factory: Callable[[Any], Provider]  # adapter from a destination; imports the SDK
    quota: QuotaRule
    quota_domain: Callable[[Any], str]  # what shares one quota (region, project, vault)
    # certificate key types the service takes (config keys: "rsa-2048", "ec-p256", ...); None: any.
    # Config load refuses a certificate routed here with another key type.
    key_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        tag = get_args(self.config.model_fields["provider"].annotation)
        if tag != (self.adapter.kind,):
            raise TypeError(f"{self.config.__name__}.provider must be Literal[{self.adapter.kind!r}], not {tag}")

    @property
    def kind(self) -> str:
        return self.adapter.kind

    @property
    def name_rule(self) -> NameRule:
        return self.adapter.name_rule

    @property
    def max_payload(self) -> int:
        return self.adapter.max_payload

    @property
    def service(self) -> str:
        return self.adapter.service


# --- compatibility: the registry lives in providers/registry.py ---------------------------------


def validate_name(provider: str, name: str) -> None:
    from providers.registry import descriptor

    descriptor(provider).name_rule.check(name, provider)


def load_provider_factory(kind: str) -> Callable[..., Provider]:
    from providers.registry import descriptor

    return descriptor(kind).factory


def __getattr__(attr: str) -> Any:
    if attr == "NAME_RULES":  # {kind: NameRule}, as before the registry
        from providers.registry import descriptors

        return {kind: d.name_rule for kind, d in descriptors().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
