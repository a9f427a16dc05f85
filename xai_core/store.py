"""Reader feedback and the audit trail, kept in a real database through SQLAlchemy 2 and Alembic.

`XAI_DATABASE_URL` chooses the database (PostgreSQL through psycopg 3 for a deployment:
``postgresql+psycopg://user:password@host/db``); without it a SQLite file in the per-user
data folder (see `data_folder`) is created on first use and run in WAL mode.

What is kept is what a reader saw and said, never who the patient is: the hash of the
image's pixels, the model version and weights hash, the probabilities and thresholds
shown, the overlay settings, the reader and the time. The image itself is kept only when
the reader consents, as a greyscale PNG with no header, its longest side at most 1024 px.

The audit trail is append-only: the engine offers no update or delete, each row carries
the hash of the previous one (`verify_audit` recomputes the chain), and on PostgreSQL a
trigger refuses UPDATE, DELETE and TRUNCATE on its rows. All writes go through one
transaction that first takes the store's write lock, so the chain never forks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Literal, get_args

import numpy as np
from alembic import command
from alembic.config import Config
from PIL import Image
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    URL,
    String,
    Text,
    create_engine,
    event,
    make_url,
    select,
    text,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from .alignment import Box
from .errors import XRayError
from .imaging import XRay
from .labels import PATHOLOGIES, require_label

DATABASE_URL_ENV = "XAI_DATABASE_URL"
DATA_FOLDER_ENV = "XAI_DATA_DIR"
APP_FOLDER = "cxr-xai-viewer"
SQLITE_FILE = "feedback.sqlite3"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

MAX_COMMENT_CHARS = 1000
MAX_IMAGE_SIDE = 1024
MAX_OVERLAY_JSON_CHARS = 2000
GENESIS_HASH = "0" * 64
WRITE_LOCK = 0x5841_4901  # PostgreSQL advisory lock held by every write transaction
_READER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+:\-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Verdict = Literal["agree", "disagree", "unsure"]
AuditAction = Literal["explanation_viewed", "feedback_saved", "export"]
VERDICTS: tuple[str, ...] = get_args(Verdict)


class FeedbackNotSaved(XRayError):
    """The database could not be reached or stayed busy: nothing was written, the caller may retry."""


# --- tables -------------------------------------------------------------------------


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
    shown: Mapped[dict] = mapped_column(JSON)  # {label: {"probability": p, "threshold": t}}
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


# --- what the caller hands in -------------------------------------------------------


@dataclass(frozen=True)
class ShownFinding:
    """A probability and its threshold as the viewer displayed them."""

    probability: float
    threshold: float


@dataclass(frozen=True)
class ReaderFeedback:
    """What a reader said about one pathology of the image in front of them.

    `boxes` (in the image's pixels) say where the finding is; `no_finding` says there is
    none to draw; `keep_image` is the reader's consent to keep a de-identified copy.
    """

    reader: str
    pathology: str
    verdict: Verdict
    model_version: str
    weights_sha256: str | None
    shown: Mapping[str, ShownFinding]
    overlay: Mapping[str, object] = field(default_factory=dict)
    boxes: Sequence[Box] = ()
    no_finding: bool = False
    comment: str = ""
    keep_image: bool = False


@dataclass(frozen=True)
class SavedFeedback:
    """The confirmation the page shows: what was stored, under which audit row."""

    feedback_id: int
    audit_seq: int
    pathology: str
    verdict: str
    boxes: int
    no_finding: bool
    image_kept: bool


@dataclass(frozen=True)
class Store:
    """An open database with its schema at the newest revision."""

    engine: Engine
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


# --- opening ------------------------------------------------------------------------


def data_folder() -> Path:
    """$XAI_DATA_DIR, else the platform's per-user data folder plus `cxr-xai-viewer`.

    Linux: $XDG_DATA_HOME or ~/.local/share; macOS: ~/Library/Application Support;
    Windows: %LOCALAPPDATA%.
    """
    if os.environ.get(DATA_FOLDER_ENV):
        return Path(os.environ[DATA_FOLDER_ENV])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / APP_FOLDER


def database_url(url: str | None = None) -> str:
    """The argument, else $XAI_DATABASE_URL, else the default SQLite file (its folder created)."""
    chosen = url or os.environ.get(DATABASE_URL_ENV)
    if chosen:
        return chosen
    folder = data_folder()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / SQLITE_FILE}"


def create_store_engine(url: str | None = None) -> Engine:
    """An engine for the URL; `postgresql://` means psycopg 3, SQLite gets WAL and immediate transactions."""
    try:
        parsed = make_url(database_url(url))
    except Exception as error:  # noqa: BLE001 - SQLAlchemy raises several types for a malformed URL
        raise XRayError(f"${DATABASE_URL_ENV} is not a database URL the viewer understands.") from error
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock first: no deadlock on upgrade

    return engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (Alembic); safe to run at every start."""
    _migrate(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Take the schema back to `revision`; "base" drops every table of the store."""
    _migrate(engine, lambda config: command.downgrade(config, revision))


def _migrate(engine: Engine, step: Callable[[Config], None]) -> None:
    config = alembic_config()
    with _database_errors(), engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config)


def current_revision(engine: Engine) -> str | None:
    with _database_errors(), engine.connect() as connection:
        if not engine.dialect.has_table(connection, "alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def open_store(url: str | None = None) -> Store:
    """Open the database and run its migrations: what the viewer and the CLI call first."""
    engine = create_store_engine(url)
    upgrade(engine)
    return Store(engine)


def describe(engine: Engine) -> str:
    """The URL with its password hidden, for messages."""
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except OperationalError as error:
        raise FeedbackNotSaved(
            "The feedback database cannot be reached or is busy right now; nothing was written. "
            "Keep the page open and try again."
        ) from error


@contextmanager
def _write(store: Store) -> Iterator[Session]:
    """One transaction holding the store's write lock; committed on success, rolled back on error."""
    with _database_errors(), Session(store.engine) as session, session.begin():
        if store.engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
        yield session


# --- validation ---------------------------------------------------------------------


def require_reader(reader: str) -> str:
    """A reader name as the reverse proxy or the session gives it: letters, digits and . _ @ + : -"""
    if not isinstance(reader, str) or not _READER.fullmatch(reader):
        raise XRayError(
            "The reader's name may only hold letters, digits and . _ @ + : - (at most 128 characters); "
            "ask the administrator to check the login header."
        )
    return reader


def _require_comment(comment: str) -> str:
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise XRayError(f"The comment is {len(comment)} characters long; at most {MAX_COMMENT_CHARS} can be saved.")
    if _CONTROL.search(comment):
        raise XRayError("The comment contains control characters; please retype it as plain text.")
    return comment


def _require_boxes(boxes: Sequence[Box], no_finding: bool, rows: int, columns: int) -> list[Box]:
    if no_finding and boxes:
        raise XRayError("Either draw boxes or mark 'no finding', not both.")
    for number, box in enumerate(boxes, start=1):
        if box.x < 0 or box.y < 0 or box.x + box.w > columns or box.y + box.h > rows:
            raise XRayError(
                f"Box {number} reaches outside the image ({columns} x {rows} pixels); draw it inside the radiograph."
            )
    return list(boxes)


def _require_shown(shown: Mapping[str, ShownFinding], pathology: str) -> dict[str, dict[str, float]]:
    checked = {}
    for label, finding in shown.items():
        values = (finding.probability, finding.threshold)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1 for v in values):
            raise XRayError(f"The probability and threshold shown for {label} must lie between 0 and 1.")
        checked[require_label(label)] = {"probability": float(finding.probability),
                                         "threshold": float(finding.threshold)}
    if pathology not in checked:
        raise XRayError(f"The feedback is about {pathology}, but its probability was not among those shown.")
    return checked


def _require_overlay(overlay: Mapping[str, object]) -> dict[str, object]:
    try:
        encoded = json.dumps(dict(overlay), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise XRayError("The overlay settings must be plain numbers, words and lists.") from error
    if len(encoded) > MAX_OVERLAY_JSON_CHARS:
        raise XRayError("The overlay settings are too long to store.")
    return json.loads(encoded)


def _require_short(value: str | None, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64 or _CONTROL.search(value):
        raise XRayError(f"The {what} must be a short text of at most 64 characters.")
    return value


# --- images -------------------------------------------------------------------------


def pixel_sha256(xray: XRay) -> str:
    """A hash of the image's pixels that does not change with the display window or the file's header.

    Greyscale DICOMs hash their modality values, other images their decoded pixels.
    """
    values = xray.modality_values if xray.modality_values is not None else xray.pixels
    values = np.ascontiguousarray(values)
    digest = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def deidentified_png(pixels: np.ndarray) -> bytes:
    """8-bit greyscale PNG of the pixels, longest side at most MAX_IMAGE_SIDE, no metadata chunks."""
    grey = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float32)), 0.0, 1.0)
    image = Image.fromarray(np.round(grey * 255).astype(np.uint8))
    image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- audit --------------------------------------------------------------------------


def _as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone: they were stored in UTC."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _canonical(details: Mapping[str, object]) -> str:
    return json.dumps(dict(details), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _utc_text(moment: datetime) -> str:
    """The moment in UTC to the microsecond, as hashed."""
    return _as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_hash(seq: int, at: datetime, actor: str, action: str, details: str, previous_hash: str) -> str:
    fields = [seq, _utc_text(at), actor, action, details, previous_hash]
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


def _append_audit(session: Session, at: datetime, actor: str, action: AuditAction,
                  details: Mapping[str, object]) -> AuditEvent:
    """Append one chained row; the caller's transaction holds the write lock."""
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
    with _database_errors(), Session(store.engine) as session:
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


# --- writing ------------------------------------------------------------------------


def record_view(store: Store, reader: str, xray: XRay, *, model_version: str, pathologies: Sequence[str],
                overlay: Mapping[str, object]) -> int:
    """Audit an explanation shown to a reader; returns the audit row's sequence number."""
    details = {
        "pixel_sha256": pixel_sha256(xray),
        "model_version": _require_short(model_version, "model version"),
        "pathologies": [require_label(label) for label in pathologies],
        "overlay": _require_overlay(overlay),
    }
    reader = require_reader(reader)
    with _write(store) as session:
        return _append_audit(session, store.clock(), reader, "explanation_viewed", details).seq


def save_feedback(store: Store, feedback: ReaderFeedback, xray: XRay) -> SavedFeedback:
    """Validate and store one reader's feedback in one transaction, with its audit row.

    Raises XRayError (nothing stored) for bad input, FeedbackNotSaved when the database
    cannot take it right now.
    """
    rows, columns = xray.pixels.shape[:2]
    pathology = require_label(feedback.pathology)
    if feedback.verdict not in VERDICTS:
        raise XRayError(f"The verdict must be one of {', '.join(VERDICTS)}.")
    record = FeedbackRecord(
        reader=require_reader(feedback.reader),
        pixel_sha256=pixel_sha256(xray),
        image_rows=rows,
        image_columns=columns,
        model_version=_require_short(feedback.model_version, "model version"),
        weights_sha256=_require_short(feedback.weights_sha256, "weights hash", optional=True),
        pathology=pathology,
        verdict=feedback.verdict,
        no_finding=bool(feedback.no_finding),
        comment=_require_comment(feedback.comment),
        shown=_require_shown(feedback.shown, pathology),
        overlay=_require_overlay(feedback.overlay),
        boxes=[FeedbackBox(x=b.x, y=b.y, w=b.w, h=b.h)
               for b in _require_boxes(feedback.boxes, feedback.no_finding, rows, columns)],
    )
    png = deidentified_png(xray.pixels) if feedback.keep_image else None
    with _write(store) as session:
        record.saved_at = store.clock()
        session.add(record)
        if png is not None and session.get(ConsentedImage, record.pixel_sha256) is None:
            with Image.open(io.BytesIO(png)) as image:
                width, height = image.size
            session.add(ConsentedImage(pixel_sha256=record.pixel_sha256, png=png, width=width, height=height,
                                       saved_at=record.saved_at))
        session.flush()
        audit = _append_audit(session, record.saved_at, record.reader, "feedback_saved", {
            "feedback_id": record.id, "pixel_sha256": record.pixel_sha256, "pathology": pathology,
            "verdict": record.verdict, "model_version": record.model_version, "image_kept": png is not None,
        })
        return SavedFeedback(record.id, audit.seq, pathology, record.verdict, len(record.boxes), record.no_finding,
                             png is not None)


# --- export -------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    images: int
    boxes: int
    feedback: int
    audit_seq: int


def reader_label(record: FeedbackRecord) -> float | None:
    """What the reader's feedback says about the pathology: 1 present, 0 absent, None unknown.

    Boxes mean present and "no finding" absent; otherwise the verdict on the model's flag
    (probability >= threshold as shown) decides, and "unsure" says nothing.
    """
    if record.boxes:
        return 1.0
    if record.no_finding:
        return 0.0
    if record.verdict == "unsure":
        return None
    shown = record.shown[record.pathology]
    flagged = shown["probability"] >= shown["threshold"]
    return float(flagged == (record.verdict == "agree"))


def _consensus(values: list[float | None]) -> str:
    """The readers' common label, or empty (unknown) when they disagree or none knows."""
    known = {value for value in values if value is not None}
    return f"{known.pop():.0f}" if len(known) == 1 else ""


def export_feedback(store: Store, out: Path, actor: str) -> ExportSummary:
    """Write images/, labels.csv and boxes.csv for the films whose image a reader consented to keep.

    The CSVs are what `evaluate --labels/--boxes` and `train --csv` read; boxes are in the
    exported PNG's pixels. Pathologies without feedback are left empty (unknown).
    """
    actor = require_reader(actor)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with _database_errors(), Session(store.engine) as session:
        images = {image.pixel_sha256: image for image in session.execute(select(ConsentedImage)).scalars()}
        records = list(session.execute(select(FeedbackRecord).where(FeedbackRecord.pixel_sha256.in_(list(images)))
                                       .order_by(FeedbackRecord.id)).scalars())
    labels: dict[str, dict[str, list[float | None]]] = {}
    box_rows = []
    for record in records:
        image = images[record.pixel_sha256]
        name = f"{record.pixel_sha256[:16]}.png"
        labels.setdefault(name, {}).setdefault(record.pathology, []).append(reader_label(record))
        sx, sy = image.width / record.image_columns, image.height / record.image_rows
        box_rows += [[name, record.pathology, f"{b.x * sx:.2f}", f"{b.y * sy:.2f}", f"{b.w * sx:.2f}",
                      f"{b.h * sy:.2f}"] for b in record.boxes]
    for sha256, image in images.items():
        (out / "images" / f"{sha256[:16]}.png").write_bytes(image.png)
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", *PATHOLOGIES])
        for name in sorted(f"{sha256[:16]}.png" for sha256 in images):
            found = labels.get(name, {})
            writer.writerow([name, *(_consensus(found.get(label, [])) for label in PATHOLOGIES)])
    with open(out / "boxes.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "finding", "x", "y", "w", "h"])
        writer.writerows(box_rows)
    summary = {"images": len(images), "boxes": len(box_rows), "feedback": len(records)}
    with _write(store) as session:
        seq = _append_audit(session, store.clock(), actor, "export", summary).seq
    return ExportSummary(**summary, audit_seq=seq)


# --- statistics ---------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How readers judged the model's flag on one pathology."""

    pathology: str
    agree: int
    disagree: int
    unsure: int
    model_versions: tuple[str, ...]

    @property
    def total(self) -> int:
        return self.agree + self.disagree + self.unsure


@dataclass(frozen=True)
class ReadingTime:
    """Seconds from a reader's first view of a film to their saved verdict, for one group."""

    group: str
    count: int
    median_seconds: float


@dataclass(frozen=True)
class FeedbackStats:
    agreement: list[Agreement]
    by_reader: list[ReadingTime]
    by_overlay: list[ReadingTime]


def overlay_key(overlay: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={overlay[key]}" for key in sorted(overlay)) or "default"


def feedback_stats(store: Store) -> FeedbackStats:
    """Agreement per pathology and reading times per reader and per overlay shown."""
    with _database_errors(), Session(store.engine) as session:
        records = list(session.execute(select(FeedbackRecord).order_by(FeedbackRecord.id)).scalars())
        views = session.execute(select(AuditEvent.actor, AuditEvent.at, AuditEvent.details)
                                .where(AuditEvent.action == "explanation_viewed")).all()
    first_view: dict[tuple[str, str], datetime] = {}
    for actor, at, details in views:
        key = (actor, json.loads(details)["pixel_sha256"])
        first_view[key] = min(first_view.get(key, at), at)
    return FeedbackStats(_agreement(records), *_reading_times(records, first_view))


def _agreement(records: list[FeedbackRecord]) -> list[Agreement]:
    result = []
    for pathology in PATHOLOGIES:
        mine = [r for r in records if r.pathology == pathology]
        if mine:
            counts = {verdict: sum(r.verdict == verdict for r in mine) for verdict in VERDICTS}
            result.append(Agreement(pathology, counts["agree"], counts["disagree"], counts["unsure"],
                                    tuple(sorted({r.model_version for r in mine}))))
    return result


def _reading_times(records: list[FeedbackRecord], first_view: dict[tuple[str, str], datetime]
                   ) -> tuple[list[ReadingTime], list[ReadingTime]]:
    by_reader: dict[str, list[float]] = {}
    by_overlay: dict[str, list[float]] = {}
    for record in records:
        viewed = first_view.get((record.reader, record.pixel_sha256))
        if viewed is None:
            continue
        seconds = (_as_utc(record.saved_at) - _as_utc(viewed)).total_seconds()
        if seconds >= 0:
            by_reader.setdefault(record.reader, []).append(seconds)
            by_overlay.setdefault(overlay_key(record.overlay), []).append(seconds)

    def summarise(groups: dict[str, list[float]]) -> list[ReadingTime]:
        return [ReadingTime(group, len(values), float(median(values))) for group, values in sorted(groups.items())]

    return summarise(by_reader), summarise(by_overlay)


def format_stats(stats: FeedbackStats) -> str:
    lines = ["pathology             agree  disagree  unsure  total  agree%  model versions"]
    for row in stats.agreement:
        lines.append(f"{row.pathology:<20} {row.agree:>6} {row.disagree:>9} {row.unsure:>7} {row.total:>6} "
                     f"{100 * row.agree / row.total:>6.1f}  {', '.join(row.model_versions)}")
    for title, groups in (("reader", stats.by_reader), ("overlay", stats.by_overlay)):
        lines += ["", f"reading time by {title} (first view to saved verdict)", "  n  median s  " + title]
        lines += [f"{row.count:>3} {row.median_seconds:>9.1f}  {row.group}" for row in groups]
    return "\n".join(lines)
