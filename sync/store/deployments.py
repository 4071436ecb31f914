"""Copies in the clouds: per (destination, remote name), what certsync last wrote there."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from sync.clock import utcnow
from sync.store.queries import chunks
from sync.store.models import Certificate, Deployment


class Deployments:
    def __init__(self, session: Session) -> None:
        self.session = session

    def present(self) -> list[Deployment]:
        """Every copy that should exist now."""
        return list(self.session.scalars(select(Deployment).where(Deployment.state == "present")))

    def present_of(self, cert_name: str) -> list[Deployment]:
        return list(
            self.session.scalars(
                select(Deployment).where(Deployment.cert_name == cert_name, Deployment.state == "present")
            )
        )

    def facts(self, *, chunk: int = 1000):
        """Every deployment as a plain row (cert_name, destination, remote_name, fingerprint,
        remote_version, state, one_off), streamed in chunks."""
        stmt = select(
            Deployment.cert_name,
            Deployment.destination,
            Deployment.remote_name,
            Deployment.fingerprint,
            Deployment.remote_version,
            Deployment.state,
            Deployment.one_off,
        )
        return self.session.execute(stmt.execution_options(yield_per=chunk))

    def stale_facts(self):
        """Copies that do not carry their certificate's newest active version, as plain rows
        (cert_name, destination, remote_name, certificate_id, version, current_id, current_version,
        pushed_at): one query, no certificate or key loaded."""
        active = (
            select(Certificate.name, func.max(Certificate.version).label("version"))
            .where(Certificate.state == "active")
            .group_by(Certificate.name)
            .subquery()
        )
        current, carried = aliased(Certificate), aliased(Certificate)
        stmt = (
            select(
                Deployment.cert_name,
                Deployment.destination,
                Deployment.remote_name,
                Deployment.certificate_id,
                carried.version.label("version"),
                current.id.label("current_id"),
                current.version.label("current_version"),
                Deployment.pushed_at,
            )
            .outerjoin(carried, carried.id == Deployment.certificate_id)
            .outerjoin(active, active.c.name == Deployment.cert_name)
            .outerjoin(current, (current.name == active.c.name) & (current.version == active.c.version))
            .where(
                Deployment.state == "present",
                (current.id.is_(None))
                | (Deployment.certificate_id.is_(None))
                | (Deployment.certificate_id != current.id),
            )
            .order_by(Deployment.cert_name, Deployment.destination, Deployment.remote_name)
        )
        return self.session.execute(stmt).all()

    def record_pushes(self, pushes: list[dict]) -> None:
        """Record what was pushed (dicts: cert_name, destination, remote_name, certificate_id,
        fingerprint, remote_version, one_off): one query per 500 remote names, new rows inserted
        together at the flush."""
        with self.session.no_autoflush:
            existing: dict[tuple[str, str], Deployment] = {}
            for chunk in chunks(p["remote_name"] for p in pushes):
                for found in self.session.scalars(select(Deployment).where(Deployment.remote_name.in_(chunk))):
                    existing[(found.destination, found.remote_name)] = found
            now = utcnow()
            for push in pushes:
                key = (push["destination"], push["remote_name"])
                row = existing.get(key)
                if row is None:
                    row = existing[key] = Deployment(destination=key[0], remote_name=key[1])
                    self.session.add(row)
                row.cert_name, row.certificate_id, row.fingerprint = (
                    push["cert_name"],
                    push["certificate_id"],
                    push["fingerprint"],
                )
                row.remote_version, row.pushed_at, row.state = push["remote_version"], now, "present"
                row.one_off = push.get("one_off", False)

    def record_deletes(self, deleted: Iterable[tuple[str, str]]) -> None:
        """(destination, remote name) pairs deleted in the clouds: one UPDATE per destination chunk."""
        by_destination: dict[str, list[str]] = {}
        for destination, remote_name in deleted:
            by_destination.setdefault(destination, []).append(remote_name)
        now = utcnow()
        for destination, names in by_destination.items():
            for chunk in chunks(names):
                self.session.execute(
                    update(Deployment)
                    .where(Deployment.destination == destination, Deployment.remote_name.in_(chunk))
                    .values(state="deleted", pushed_at=now)
                    .execution_options(synchronize_session=False)
                )
