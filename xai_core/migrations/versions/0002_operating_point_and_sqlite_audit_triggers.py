"""The operating point the flags were shown against, and SQLite's audit rows protected by triggers too.

Revision 0001 stored the card's Youden thresholds as "shown"; from 0002 on the page stores the thresholds
of the operating point the reader chose (feedback.operating_point names it; older rows keep NULL).
PostgreSQL's audit triggers came with 0001; SQLite gets the same refusal here, so an UPDATE or DELETE of
an audit row fails on both databases whoever runs it through the database (an editor of the file itself
is found by `feedback verify-audit`).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = {
    "audit_event_no_update": "UPDATE",
    "audit_event_no_delete": "DELETE",
}


def upgrade() -> None:
    op.add_column("feedback", sa.Column("operating_point", sa.String(32), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        for name, operation in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} BEFORE {operation} ON audit_event BEGIN "
                       f"SELECT RAISE(ABORT, 'audit_event is append-only: {operation} refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_column("feedback", "operating_point")
