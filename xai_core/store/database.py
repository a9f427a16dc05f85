"""Which database, opening it, its migrations, and the one transaction every write goes through.

`XAI_DATABASE_URL` chooses the database (PostgreSQL through psycopg 3 for a deployment:
``postgresql+psycopg://user:password@host/db``); without it a SQLite file in the per-user
data folder (see `data_folder`) is created on first use and run in WAL mode.

A save never waits long on a database that is locked or cannot be reached: it gives up with
FeedbackNotSaved after 30 s of waiting for a lock (SQLite's busy timeout, PostgreSQL's
lock_timeout) or 10 s of trying to connect to PostgreSQL. The URL may set other limits:
``sqlite:///file?timeout=5`` (seconds), ``postgresql://...?connect_timeout=5&options=-c%20lock_timeout%3D5s``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ..errors import XRayError

DATABASE_URL_ENV = "XAI_DATABASE_URL"
DATA_FOLDER_ENV = "XAI_DATA_DIR"
APP_FOLDER = "cxr-xai-viewer"
SQLITE_FILE = "feedback.sqlite3"
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
WRITE_LOCK = 0x5841_4901  # PostgreSQL advisory lock held by every write transaction
LOCK_WAIT_S = 30  # how long a write waits for a locked database before it gives up (the page offers to retry)
CONNECT_WAIT_S = 10  # how long a connection to PostgreSQL is tried


class FeedbackNotSaved(XRayError):
    """The database could not be reached or stayed busy: nothing was written, the caller may retry."""


@dataclass(frozen=True)
class Store:
    """An open database with its schema at the newest revision."""

    engine: Engine
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


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
    except Exception as error:  # SQLAlchemy raises several types for a malformed URL
        raise XRayError(f"${DATABASE_URL_ENV} is not a database URL the viewer understands.") from error
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() == "postgresql":
        limits = {"connect_timeout": CONNECT_WAIT_S, "options": f"-c lock_timeout={LOCK_WAIT_S * 1000}"}
        return create_engine(parsed, pool_pre_ping=True,
                             connect_args={key: value for key, value in limits.items() if key not in parsed.query})
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_engine(url: URL) -> Engine:
    try:
        wait = float(url.query.get("timeout", LOCK_WAIT_S))
    except ValueError as error:
        raise XRayError(f"The timeout in ${DATABASE_URL_ENV} must be a number of seconds.") from error
    engine = create_engine(url, connect_args={"timeout": wait, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={round(wait * 1000)}")
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
    with database_errors(), engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config)


def current_revision(engine: Engine) -> str | None:
    with database_errors(), engine.connect() as connection:
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
def database_errors() -> Iterator[None]:
    """Turn "cannot reach the database" and "busy" into FeedbackNotSaved, which the page offers to retry."""
    try:
        yield
    except OperationalError as error:
        raise FeedbackNotSaved(
            "The feedback database cannot be reached or is busy right now; nothing was written. "
            "Keep the page open and try again."
        ) from error


@contextmanager
def write_transaction(store: Store) -> Iterator[Session]:
    """One transaction holding the store's write lock; committed on success, rolled back on error."""
    with database_errors(), Session(store.engine) as session, session.begin():
        if store.engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
        yield session
