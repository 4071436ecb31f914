"""Pure planning: desired state + store facts + remote listings -> actions. No I/O here.

A target whose remote secret carries the fingerprint we expect, at the version we last wrote,
needs nothing: that is decided from listings alone, without reading any secret value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from collections.abc import Iterable, Mapping

from providers.base import CERT_LABEL, RemoteSecret
from sync.config import DEFAULT_RENEW_FRACTION


@dataclass(frozen=True)
class Desired:
    """A certificate as the config wants it."""

    name: str
    ca: str
    sans: tuple[str, ...]
    key_type: str
    renew_window: timedelta | None  # None: computed from the current lifetime
    renew_fraction: float | None
    targets: tuple[tuple[str, str], ...]  # (destination, remote name)


@dataclass(frozen=True)
class Current:
    """The version in force in the store."""

    name: str
    version: int
    ca: str
    sans: tuple[str, ...]
    key_type: str
    not_before: datetime
    not_after: datetime
    fingerprints: Mapping[str, str]  # destination -> fingerprint of this version's payload there
    ca_not_after: datetime | None = None  # the issuing CA's end: leaves are cut to it


@dataclass(frozen=True)
class Deployed:
    cert_name: str
    destination: str
    remote_name: str
    fingerprint: str
    remote_version: str | None
    present: bool
    one_off: bool = False  # pushed by hand to a destination the certificate does not list


class Kind(StrEnum):
    """What an action does. A StrEnum: documents and logs show the plain word."""

    ISSUE = "issue"  # a first version (or a new one after revocation or a config change)
    RENEW = "renew"  # a successor of the version in force
    PUSH = "push"
    ADOPT = "adopt"  # a copy with our tags and fingerprint but no record: recorded, not written
    DELETE = "delete"
    UNCHANGED = "unchanged"
    SKIP = "skip"  # nothing will be done, and the reason says why
    ERROR = "error"  # cannot be planned (e.g. a listing failed)


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    cert: str
    destination: str | None = None
    remote_name: str | None = None
    reason: str = ""
    reuse_key: bool | None = None  # issue/renew: None = as the profile's key_rotation says
    exists: bool | None = None  # push: whether the listing showed the secret (None: not looked)
    one_off: bool = False  # push: to a destination the certificate does not list
    fingerprint: str | None = None  # adopt: the fingerprint the copy carries
    remote_version: str | None = None  # adopt: its version in the destination

    @property
    def changes(self) -> bool:
        return self.kind not in (Kind.UNCHANGED, Kind.SKIP, Kind.ERROR)

    def target(self) -> tuple[str, str]:
        """(destination, remote name) of an action on a copy (push, delete, adopt), which has both."""
        if self.destination is None or self.remote_name is None:
            raise ValueError(f"{self.kind} action for {self.cert!r} has no destination")
        return self.destination, self.remote_name


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.changes]

    def of_kind(self, *kinds: Kind) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]


Listing = Mapping[str, RemoteSecret]


def make_plan(
    desired: Iterable[Desired],
    current: Mapping[str, Current],
    deployed: Iterable[Deployed],
    listings: Mapping[str, Listing | str],
    now: datetime,
    *,
    retired: Iterable[str] = (),
    latest_states: Mapping[str, str] | None = None,
    configured: Iterable[str] | None = None,
) -> Plan:
    """`listings` maps a destination to its managed secrets by name (every secret where adopt = true),
    or to an error message.
    `retired` are stored certificates gone from the config; `latest_states` the state of each
    certificate's newest version (to tell a revoked or retired one from one never issued);
    `configured` the destinations searched by tag for unrecorded copies of retired ones (default: all listed)."""
    plan = Plan()
    deployed_by_target = {(d.destination, d.remote_name): d for d in deployed}
    wanted: set[tuple[str, str]] = set()
    latest_states = latest_states or {}
    gone = set(retired)  # once, not per deployment
    for want in desired:
        lifecycle = _lifecycle(want, current.get(want.name), latest_states.get(want.name), now)
        if lifecycle:
            plan.actions.append(lifecycle)
            if lifecycle.kind == Kind.SKIP:
                if want.name not in current:
                    continue  # retired: nothing to push
                lifecycle = None  # kept as it is: its copies are still compared and repaired
        for destination, remote_name in want.targets:
            wanted.add((destination, remote_name))
            plan.actions.append(
                _target_action(
                    want,
                    current.get(want.name),
                    lifecycle,
                    destination,
                    remote_name,
                    deployed_by_target.get((destination, remote_name)),
                    listings.get(destination, {}),
                )
            )
    for (destination, remote_name), record in sorted(deployed_by_target.items()):
        if (destination, remote_name) in wanted or not record.present:
            continue
        if record.one_off and record.cert_name not in gone:
            continue  # a copy pushed by hand elsewhere stays until the certificate is retired
        reason = (
            "certificate removed from config"
            if record.cert_name in gone
            else "no longer a destination of this certificate"
        )
        listing = listings.get(destination)
        if isinstance(listing, str):
            plan.actions.append(Action(Kind.ERROR, record.cert_name, destination, remote_name, listing))
        else:
            plan.actions.append(Action(Kind.DELETE, record.cert_name, destination, remote_name, reason))
    if gone:
        scanned = listings if configured is None else {d: listings[d] for d in configured if d in listings}
        plan.actions.extend(_unrecorded_copies(gone, deployed_by_target, wanted, scanned))
    return plan


def _unrecorded_copies(
    gone: set[str],
    deployed_by_target: Mapping[tuple[str, str], Deployed],
    wanted: set[tuple[str, str]],
    listings: Mapping[str, Listing | str],
) -> list[Action]:
    """Copies of certificates removed from the config that the store has no record of (a run that
    died between the write and its record), found by their certsync-cert tag: deleted too. A
    destination whose listing failed may hold one: an error, so the certificate is not retired."""
    actions: list[Action] = []
    for destination, listing in sorted(listings.items()):
        if isinstance(listing, str):
            actions.extend(Action(Kind.ERROR, cert, destination, None, listing) for cert in sorted(gone))
            continue
        for name, secret in sorted(listing.items()):
            cert = secret.labels.get(CERT_LABEL) if secret.managed else None
            record = deployed_by_target.get((destination, name))
            if cert in gone and (destination, name) not in wanted and (record is None or not record.present):
                actions.append(
                    Action(
                        Kind.DELETE,
                        cert,
                        destination,
                        name,
                        "certificate removed from config (found by its tags; no record)",
                    )
                )
    return actions


def renew_window(want: Desired, lifetime: timedelta) -> timedelta:
    """How long before its end a certificate of `lifetime` is renewed (the dashboard draws it too)."""
    return window_of(want.renew_window, want.renew_fraction, lifetime)


def window_of(window: timedelta | None, fraction: float | None, lifetime: timedelta) -> timedelta:
    return window if window is not None else lifetime * (fraction or DEFAULT_RENEW_FRACTION)


def _lifecycle(want: Desired, cur: Current | None, latest_state: str | None, now: datetime) -> Action | None:
    if cur is None:
        if latest_state == "retired":
            return Action(
                Kind.SKIP,
                want.name,
                reason="retired by `certsync retire`; remove it from the config, "
                "or `certsync push` it to enroll it again",
            )
        if latest_state == "revoked":
            return Action(Kind.ISSUE, want.name, reason="previous version revoked")
        return Action(Kind.ISSUE, want.name, reason="not issued yet")
    if cur.sans != want.sans or cur.key_type != want.key_type:
        return Action(Kind.ISSUE, want.name, reason="names or key type changed in config")
    if cur.ca != want.ca:
        return Action(Kind.ISSUE, want.name, reason=f"profile now issues from CA {want.ca!r}")
    if now >= cur.not_after - renew_window(want, cur.not_after - cur.not_before):
        days = (cur.not_after - now).total_seconds() / 86400
        if cur.ca_not_after is not None and cur.not_after >= cur.ca_not_after - timedelta(minutes=5):
            # a successor would be cut to the same end: renewing would only churn, every run
            return Action(
                Kind.SKIP,
                want.name,
                reason=f"expires in {days:.1f} days with its CA {cur.ca!r}: "
                "add a new issuing CA and move the profile to it",
            )
        return Action(Kind.RENEW, want.name, reason=f"expires in {days:.1f} days")
    return None


def _target_action(
    want: Desired,
    cur: Current | None,
    lifecycle: Action | None,
    destination: str,
    remote_name: str,
    record: Deployed | None,
    listing: Listing | str,
) -> Action:
    if isinstance(listing, str):
        return Action(Kind.ERROR, want.name, destination, remote_name, listing)
    remote = listing.get(remote_name)

    def act(kind: Kind, reason: str) -> Action:
        return Action(kind, want.name, destination, remote_name, reason, exists=remote is not None)

    if remote is not None and not remote.managed:  # listed only where adopt = true
        return act(
            Kind.PUSH,
            "update adopting a secret certsync does not manage (adopt = true): replaced by "
            + ("a new certificate version" if lifecycle is not None or cur is None else "this one"),
        )
    if lifecycle is not None or cur is None:
        return act(Kind.PUSH, "new certificate version")
    expected = cur.fingerprints[destination]
    if remote is None:
        return act(
            Kind.PUSH, "drift: deleted outside certsync" if record and record.present else "not in the destination"
        )
    if remote.fingerprint != expected:
        if record is not None and record.fingerprint == expected:
            return act(Kind.PUSH, "drift: changed outside certsync")
        return act(Kind.PUSH, "out of date")
    if (record is None or not record.present) and remote.labels.get(CERT_LABEL) == want.name:
        # written by a run that died before recording it: record it now, write nothing
        return Action(
            Kind.ADOPT,
            want.name,
            destination,
            remote_name,
            "found with our tags and fingerprint, not recorded: adopting it into the records",
            exists=True,
            fingerprint=remote.fingerprint,
            remote_version=remote.version,
        )
    if record is not None and record.remote_version and remote.version and record.remote_version != remote.version:
        return act(Kind.PUSH, "drift: value replaced outside certsync")
    return act(Kind.UNCHANGED, "")
