"""The store's tables, as SQLAlchemy models; `xai_core/migrations/` creates and changes them (Alembic)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

MAX_COMMENT_CHARS = 1000


class Base(DeclarativeBase):
    pass


class AuditEvent(Base):
    """One thing that happened: an explanation shown, a feedback saved, an export made."""

    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON, hashed as stored
    previous_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64), unique=True)


class ConsentedImage(Base):
    """A de-identified greyscale PNG kept because a reader consented to it."""

    __tablename__ = "consented_image"

    pixel_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeedbackRecord(Base):
    """A reader's verdict on one pathology of one image, with what the viewer showed them."""

    __tablename__ = "feedback"
    __table_args__ = (CheckConstraint("verdict IN ('agree', 'disagree', 'unsure')", name="ck_feedback_verdict"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reader: Mapped[str] = mapped_column(String(128))
    pixel_sha256: Mapped[str] = mapped_column(String(64), index=True)
    image_rows: Mapped[int] = mapped_column(Integer)
    image_columns: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    pathology: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    no_finding: Mapped[bool] = mapped_column(Boolean)
    comment: Mapped[str] = mapped_column(String(MAX_COMMENT_CHARS))
    # The operating point the flags were shown against (operating_points.POINT_NAMES); None in rows saved
    # before revision 0002, whose thresholds were the card's Youden thresholds.
    operating_point: Mapped[str | None] = mapped_column(String(32))
    shown: Mapped[dict] = mapped_column(JSON)  # {label: {"probability": p, "threshold": t or None}}
    overlay: Mapped[dict] = mapped_column(JSON)
    boxes: Mapped[list[FeedbackBox]] = relationship(order_by="FeedbackBox.id", lazy="selectin")


class FeedbackBox(Base):
    """Where the reader says the finding is, in the original image's pixels."""

    __tablename__ = "feedback_box"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"), index=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    w: Mapped[float] = mapped_column(Float)
    h: Mapped[float] = mapped_column(Float)
