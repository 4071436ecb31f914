"""The audit trail: every issuance, renewal, revocation and token use through the server (and
the CLI commands that change certificates), newest first when read. Details never hold a secret."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.store.models import AuditEvent


class Audit:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(
        self,
        *,
        at: datetime,
        actor: str,
        action: str,
        protocol: str,
        outcome: str = "ok",
        certificate: str | None = None,
        serial: str | None = None,
        remote_addr: str | None = None,
        detail: dict | None = None,
    ) -> AuditEvent:
        row = AuditEvent(
            at=at,
            actor=actor,
            action=action,
            protocol=protocol,
            outcome=outcome,
            certificate=certificate,
            serial=serial,
            remote_addr=remote_addr,
            detail=detail,
        )
        self.session.add(row)
        return row

    def recent(
        self,
        *,
        limit: int = 100,
        since: datetime | None = None,
        certificate: str | None = None,
        action: str | None = None,
    ) -> list[AuditEvent]:
        query = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        if certificate is not None:
            query = query.where(AuditEvent.certificate == certificate)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list(self.session.scalars(query))
