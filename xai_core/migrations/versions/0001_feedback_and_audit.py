"""Reader feedback, its boxes, consented images and the hash-chained audit trail.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_REFUSE_CHANGES = """
CREATE FUNCTION xai_refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "consented_image",
        sa.Column("pixel_sha256", sa.String(64), primary_key=True),
        sa.Column("png", sa.LargeBinary, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reader", sa.String(128), nullable=False),
        sa.Column("pixel_sha256", sa.String(64), nullable=False, index=True),
        sa.Column("image_rows", sa.Integer, nullable=False),
        sa.Column("image_columns", sa.Integer, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=True),
        sa.Column("pathology", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("no_finding", sa.Boolean, nullable=False),
        sa.Column("comment", sa.String(1000), nullable=False),
        sa.Column("shown", sa.JSON, nullable=False),
        sa.Column("overlay", sa.JSON, nullable=False),
        sa.CheckConstraint("verdict IN ('agree', 'disagree', 'unsure')", name="ck_feedback_verdict"),
    )
    op.create_table(
        "feedback_box",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("feedback_id", sa.Integer, sa.ForeignKey("feedback.id"), nullable=False, index=True),
        sa.Column("x", sa.Float, nullable=False),
        sa.Column("y", sa.Float, nullable=False),
        sa.Column("w", sa.Float, nullable=False),
        sa.Column("h", sa.Float, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_REFUSE_CHANGES)
        op.execute("CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
                   "FOR EACH ROW EXECUTE FUNCTION xai_refuse_audit_change()")
        op.execute("CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
                   "FOR EACH STATEMENT EXECUTE FUNCTION xai_refuse_audit_change()")


def downgrade() -> None:
    op.drop_table("feedback_box")
    op.drop_table("feedback")
    op.drop_table("consented_image")
    op.drop_table("audit_event")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION xai_refuse_audit_change()")
