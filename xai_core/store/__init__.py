"""Reader feedback and the audit trail, kept in a real database through SQLAlchemy 2 and Alembic.

  database.py      which database ($XAI_DATABASE_URL, else a WAL SQLite file in the per-user data folder),
                   opening it, its migrations (xai_core/migrations/), the one write transaction
  schema.py        the tables
  feedback.py      what a reader hands in, checked and saved with its audit row; the view audited
  audit.py         the hash-chained, append-only audit trail and its verification
  export.py        consented films and their labels and boxes as CSVs for `evaluate` and `train`
  reader_study.py  agreement with the model's flags and reading times (`feedback stats`)

Everything a caller needs is importable from here: ``from xai_core import store; store.open_store()``.
"""

from .audit import GENESIS_HASH, AuditCheck, audit_hash, verify_audit
from .database import (
    DATA_FOLDER_ENV,
    DATABASE_URL_ENV,
    SQLITE_FILE,
    FeedbackNotSaved,
    Store,
    create_store_engine,
    current_revision,
    data_folder,
    database_url,
    describe,
    downgrade,
    open_store,
    upgrade,
)
from .export import ExportSummary, export_feedback, reader_label
from .feedback import (
    MAX_IMAGE_SIDE,
    VERDICTS,
    ReaderFeedback,
    SavedFeedback,
    ShownFinding,
    Verdict,
    deidentified_png,
    pixel_sha256,
    record_view,
    require_reader,
    save_feedback,
)
from .reader_study import Agreement, FeedbackStats, ReadingTime, feedback_stats, format_stats
from .schema import MAX_COMMENT_CHARS, AuditEvent, Base, ConsentedImage, FeedbackBox, FeedbackRecord

__all__ = [
    "DATABASE_URL_ENV", "DATA_FOLDER_ENV", "GENESIS_HASH", "MAX_COMMENT_CHARS", "MAX_IMAGE_SIDE", "SQLITE_FILE",
    "VERDICTS", "Agreement", "AuditCheck", "AuditEvent", "Base", "ConsentedImage", "ExportSummary", "FeedbackBox",
    "FeedbackNotSaved", "FeedbackRecord", "FeedbackStats", "ReaderFeedback", "ReadingTime", "SavedFeedback",
    "ShownFinding", "Store", "Verdict", "audit_hash", "create_store_engine", "current_revision", "data_folder",
    "database_url", "deidentified_png", "describe", "downgrade", "export_feedback", "feedback_stats",
    "format_stats", "open_store", "pixel_sha256", "reader_label", "record_view", "require_reader", "save_feedback",
    "upgrade", "verify_audit",
]
