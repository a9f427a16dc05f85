"""Alembic environment: migrations run on the connection that `xai_core.store.upgrade` hands over.

There is no alembic.ini: `python -m xai_core db upgrade` (or the first use of the store) runs them.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

MIGRATION_LOCK = 0x5841_4944  # PostgreSQL advisory lock: one process migrates at a time

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.run_migrations()
