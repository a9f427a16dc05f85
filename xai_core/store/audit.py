"""The append-only audit trail: every explanation shown, feedback saved and export made is one chained row.

The engine offers no update or delete of audit rows. Each row carries the hash of the previous one, so
`verify_audit` (``python -m xai_core feedback verify-audit``) finds a row edited, removed or inserted
behind the engine's back; on both databases a trigger refuses UPDATE and DELETE (on PostgreSQL also
TRUNCATE) of audit rows, whoever owns the table (migrations 0001 and 0002).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from .database import Store, database_errors
from .schema import AuditEvent

GENESIS_HASH = "0" * 64

AuditAction = Literal["explanation_viewed", "feedback_saved", "export"]


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone: they were stored in UTC."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _canonical(details: Mapping[str, object]) -> str:
    return json.dumps(dict(details), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _utc_text(moment: datetime) -> str:
    """The moment in UTC to the microsecond, as hashed."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_hash(seq: int, at: datetime, actor: str, action: str, details: str, previous_hash: str) -> str:
    fields = [seq, _utc_text(at), actor, action, details, previous_hash]
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


def append_audit(session: Session, at: datetime, actor: str, action: AuditAction,
                 details: Mapping[str, object]) -> AuditEvent:
    """Append one chained row; the caller's transaction holds the write lock (database.write_transaction)."""
    last = session.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).scalar_one_or_none()
    seq = 1 if last is None else last.seq + 1
    previous = GENESIS_HASH if last is None else last.row_hash
    body = _canonical(details)
    row = AuditEvent(seq=seq, at=at, actor=actor, action=action, details=body, previous_hash=previous,
                     row_hash=audit_hash(seq, at, actor, action, body, previous))
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class AuditCheck:
    """The outcome of recomputing the chain: intact, or the first row where it breaks and why."""

    rows: int
    head_hash: str
    broken_at: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_audit(store: Store) -> AuditCheck:
    """Recompute every row's hash and link; a row edited, removed or inserted behind the engine shows up.

    Removing the newest rows leaves a shorter, intact chain: compare `head_hash` with one
    written down earlier to catch that.
    """
    previous, count = GENESIS_HASH, 0
    with database_errors(), Session(store.engine) as session:
        for row in session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars():
            count += 1
            expected = audit_hash(row.seq, row.at, row.actor, row.action, row.details, row.previous_hash)
            if row.seq != count:
                return AuditCheck(count - 1, previous, row.seq, f"row {count} is missing (next is {row.seq})")
            if row.previous_hash != previous:
                return AuditCheck(count - 1, previous, row.seq, "it does not link to the row before it")
            if row.row_hash != expected:
                return AuditCheck(count - 1, previous, row.seq, "its content does not match its hash")
            previous = row.row_hash
    return AuditCheck(count, previous)
