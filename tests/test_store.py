"""Feedback store and audit trail on a real SQLite file and a real PostgreSQL (Debian's `postgresql`).

The PostgreSQL server is started by these tests with initdb + pg_ctl in a temporary folder on a
free localhost port (as the `postgres` user when the tests run as root) and stopped afterwards.
Nothing is mocked: every test below runs on both databases.
"""

from __future__ import annotations

import getpass
import io
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from loopback import free_port
from PIL import Image
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import DBAPIError

from xai_core import store
from xai_core.__main__ import main as cli
from xai_core.alignment import Box
from xai_core.data import read_boxes, read_label_csv
from xai_core.errors import XRayError
from xai_core.explanation import explain
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES

APP_ROLE = "xai_app"

# --- a real PostgreSQL --------------------------------------------------------------


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if found is None:
        pytest.fail(f"{name} not found: install Debian's `postgresql` package (.ci/run does)")
    return str(found)


def _as_server_user(command: list[str]) -> list[str]:
    """initdb and pg_ctl refuse root: run them as `postgres` then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass(frozen=True)
class PostgresServer:
    port: int
    superuser: str

    def url(self, database: str, user: str = APP_ROLE) -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for this test session, with the application's (non-superuser) role."""
    folder = Path(tempfile.mkdtemp(prefix="xai-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    server = PostgresServer(free_port(), "postgres" if os.geteuid() == 0 else getpass.getuser())
    cluster, pg_ctl = folder / "cluster", _postgres_bin("pg_ctl")
    subprocess.run(_as_server_user([_postgres_bin("initdb"), "-D", str(cluster), "-U", server.superuser,
                                    "-A", "trust", "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    options = f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
    subprocess.run(_as_server_user([pg_ctl, "-D", str(cluster), "-o", options, "-l", str(folder / "log"), "-w",
                                    "start"]), check=True, capture_output=True)
    try:
        admin = create_engine(server.url("postgres", server.superuser), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE ROLE {APP_ROLE} LOGIN"))
        admin.dispose()
        yield server
    finally:
        subprocess.run(_as_server_user([pg_ctl, "-D", str(cluster), "-m", "immediate", "stop"]), check=False,
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


_database_numbers = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database: a SQLite file, or a PostgreSQL database owned by the application's role."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    server = request.getfixturevalue("postgres_server")
    name = f"feedback_{next(_database_numbers)}"
    admin = create_engine(server.url("postgres", server.superuser), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name} OWNER {APP_ROLE}"))
    admin.dispose()
    return server.url(name)


def _as_superuser(database_url: str) -> str:
    """The same PostgreSQL database, reached as the cluster's superuser (an administrator)."""
    return database_url.replace(f"{APP_ROLE}@", f"{'postgres' if os.geteuid() == 0 else getpass.getuser()}@")


@pytest.fixture
def feedback_store(database_url) -> Iterator[store.Store]:
    opened = store.open_store(database_url)
    yield opened
    opened.engine.dispose()


# --- inputs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def film() -> bytes:
    """A 600 x 400 greyscale PNG (no patient data can be in it)."""
    pixels = np.tile(np.linspace(0, 255, 600, dtype=np.uint8), (400, 1))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _feedback(reader: str = "dr.ada", pathology: str = "Nodule", **changes) -> store.ReaderFeedback:
    shown = {label: store.ShownFinding(probability=0.7 if label == "Nodule" else 0.2,
                                       threshold=None if label == "Hernia" else 0.5)
             for label in PATHOLOGIES}
    base = store.ReaderFeedback(reader=reader, pathology=pathology, verdict="agree", model_version="0.4.0",
                                weights_sha256="ab" * 32, shown=shown, operating_point="high_specificity",
                                overlay={"method": "Grad-CAM++", "colormap": "inferno", "opacity": 0.5})
    return replace(base, **changes)


class Clock:
    """A store clock that advances by a fixed step on each reading."""

    def __init__(self, step: timedelta) -> None:
        self.moment, self.step = datetime(2025, 3, 1, 9, 0, tzinfo=UTC), step

    def __call__(self) -> datetime:
        self.moment += self.step
        return self.moment


# --- tests --------------------------------------------------------------------------


def test_store_migrations_upgrade_from_empty_and_round_trip(database_url):
    engine = store.create_store_engine(database_url)
    assert store.current_revision(engine) is None
    store.upgrade(engine)
    tables = {"audit_event", "feedback", "feedback_box", "consented_image"}
    assert tables <= set(inspect(engine).get_table_names())
    store.downgrade(engine)
    assert not tables & set(inspect(engine).get_table_names())
    store.upgrade(engine)
    assert store.current_revision(engine) == "0002"
    saved = store.save_feedback(store.Store(engine), _feedback(), read_xray(_png(96, 64)))
    assert saved.feedback_id == 1 and saved.audit_seq == 1
    engine.dispose()


def test_store_models_match_the_migration(feedback_store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with feedback_store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), store.Base.metadata)
    assert differences == []


def test_feedback_saved_with_boxes_and_consented_image(feedback_store, film):
    xray = read_xray(film)
    saved = store.save_feedback(feedback_store, _feedback(boxes=[Box(10, 20, 100, 50)], comment=" small nodule ",
                                                          keep_image=True), xray)
    assert (saved.pathology, saved.verdict, saved.boxes, saved.image_kept) == ("Nodule", "agree", 1, True)
    with feedback_store.engine.connect() as connection:
        row = connection.execute(text("SELECT reader, pixel_sha256, comment, image_rows, image_columns, "
                                      "model_version FROM feedback")).one()
        png = connection.execute(text("SELECT png FROM consented_image")).scalar_one()
    assert row == ("dr.ada", store.pixel_sha256(xray), "small nodule", 400, 600, "0.4.0")
    with Image.open(io.BytesIO(bytes(png))) as image:
        assert image.mode == "L" and image.size == (600, 400) and not image.info


def test_feedback_image_kept_only_with_consent_and_at_most_1024_px(feedback_store):
    store.save_feedback(feedback_store, _feedback(), read_xray(_png(2000, 1500)))
    with feedback_store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM consented_image")).scalar_one() == 0
    store.save_feedback(feedback_store, _feedback(keep_image=True), read_xray(_png(2000, 1500)))
    with feedback_store.engine.connect() as connection:
        width, height = connection.execute(text("SELECT width, height FROM consented_image")).one()
    assert (width, height) == (1024, 768)


@pytest.mark.parametrize(("change", "message"), [
    ({"comment": "x" * (store.MAX_COMMENT_CHARS + 1)}, "at most 1000"),
    ({"boxes": [Box(550, 10, 100, 20)]}, "outside the image"),
    ({"boxes": [Box(10, 10, 10, 10)], "no_finding": True}, "not both"),
    ({"reader": "dr.ada\r\nX-Admin: yes"}, "letters, digits"),
    ({"verdict": "maybe"}, "verdict"),
    ({"pathology": "Broken arm"}, "Broken arm"),
    ({"comment": "nul\x00byte"}, "control characters"),
    ({"operating_point": "youden"}, "operating point"),
])
def test_feedback_bad_input_is_refused_and_nothing_stored(feedback_store, film, change, message):
    with pytest.raises(XRayError, match=message):
        store.save_feedback(feedback_store, _feedback(**change), read_xray(film))
    with feedback_store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM feedback")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM audit_event")).scalar_one() == 0


def test_feedback_eight_concurrent_writers_keep_every_row_and_the_audit_chain(feedback_store, film):
    """8 writers each save 200 feedback rows (and audit a view before every tenth) at the same time."""
    xray, writers, per_writer, views = read_xray(film), 8, 200, 20
    errors: list[BaseException] = []

    def write(number: int) -> None:
        try:
            for row in range(per_writer):
                if row % (per_writer // views) == 0:
                    store.record_view(feedback_store, f"reader{number}", xray, model_version="0.4.0",
                                      pathologies=["Nodule"], overlay={})
                store.save_feedback(feedback_store, _feedback(reader=f"reader{number}"), xray)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with feedback_store.engine.connect() as connection:
        counts = dict(connection.execute(text("SELECT reader, count(*) FROM feedback GROUP BY reader")).all())
    assert counts == {f"reader{n}": per_writer for n in range(writers)}
    check = store.verify_audit(feedback_store)
    assert check.intact and check.rows == writers * (per_writer + views)


def test_audit_tampering_is_found_by_verify_audit(feedback_store, film, database_url, capsys, monkeypatch):
    xray = read_xray(film)
    for reader in ("dr.ada", "dr.bob", "dr.cy"):
        store.save_feedback(feedback_store, _feedback(reader=reader), xray)
    monkeypatch.setenv(store.DATABASE_URL_ENV, database_url)
    cli(["feedback", "verify-audit"])
    assert "intact: 3 rows" in capsys.readouterr().out
    _behind_the_engine(database_url, "UPDATE audit_event SET actor = 'dr.mallory' WHERE seq = 2")
    assert store.verify_audit(feedback_store).broken_at == 2
    with pytest.raises(SystemExit, match="broken at row 2"):
        cli(["feedback", "verify-audit"])


def test_audit_removed_row_is_found(feedback_store, film, database_url):
    xray = read_xray(film)
    for reader in ("dr.ada", "dr.bob", "dr.cy"):
        store.save_feedback(feedback_store, _feedback(reader=reader), xray)
    _behind_the_engine(database_url, "DELETE FROM audit_event WHERE seq = 2")
    check = store.verify_audit(feedback_store)
    assert (check.broken_at, check.rows) == (3, 1)


def test_audit_update_and_delete_fail_even_for_the_role_that_owns_the_table(feedback_store, film):
    """A trigger, not privileges: on PostgreSQL the application's role owns audit_event (it ran the
    migrations) and holds every privilege on it, and still cannot change a row; SQLite has no roles
    and refuses the same statements through its own triggers."""
    store.save_feedback(feedback_store, _feedback(), read_xray(film))
    statements = ["UPDATE audit_event SET actor = 'dr.mallory'", "DELETE FROM audit_event"]
    if feedback_store.engine.dialect.name == "postgresql":
        with feedback_store.engine.connect() as connection:
            owner = connection.execute(text("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_event'"))
            assert (owner.scalar_one(), connection.execute(text("SELECT current_user")).scalar_one()) == (
                APP_ROLE, APP_ROLE)
        statements.append("TRUNCATE audit_event")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), feedback_store.engine.begin() as connection:
            connection.execute(text(statement))
    check = store.verify_audit(feedback_store)
    assert check.intact and check.rows == 1


def test_feedback_export_is_read_back_by_the_dataset_readers(feedback_store, film, tmp_path, database_url,
                                                            monkeypatch, capsys):
    kept, other = read_xray(film), read_xray(_png(300, 200))
    store.save_feedback(feedback_store, _feedback(boxes=[Box(60, 40, 120, 80), Box(300, 100, 30, 30)],
                                                  keep_image=True), kept)
    store.save_feedback(feedback_store, _feedback(reader="dr.bob", pathology="Effusion", verdict="disagree"), kept)
    store.save_feedback(feedback_store, _feedback(pathology="Mass", verdict="unsure"), kept)
    store.save_feedback(feedback_store, _feedback(pathology="Hernia"), kept)  # no point, no flag
    store.save_feedback(feedback_store, _feedback(boxes=[Box(1, 1, 5, 5)]), other)  # no consent: not exported
    monkeypatch.setenv(store.DATABASE_URL_ENV, database_url)
    cli(["feedback", "export", "--out", str(tmp_path / "export")])
    assert "1 images, 2 boxes from 4 feedback rows" in capsys.readouterr().out

    folder = tmp_path / "export"
    cases = read_label_csv(folder / "labels.csv", folder / "images")
    assert len(cases) == 1 and cases[0].image.is_file()
    labels = dict(zip(PATHOLOGIES, cases[0].labels, strict=True))
    assert labels["Nodule"] == 1 and labels["Effusion"] == 1  # the model did not flag Effusion; dr.bob disagreed
    assert np.isnan(labels["Mass"]) and np.isnan(labels["Hernia"])
    boxes = read_boxes(folder / "boxes.csv")
    assert list(boxes) == [cases[0].image.name]
    assert [(f.label, f.box) for f in boxes[cases[0].image.name]] == [
        ("Nodule", Box(60, 40, 120, 80)), ("Nodule", Box(300, 100, 30, 30))]
    assert store.verify_audit(feedback_store).rows == 6  # five feedback rows and the export

    # The exported folder is what `evaluate --boxes` reads: it runs, and scores the two boxes the reader saved.
    cli(["evaluate", "--images", str(folder / "images"), "--labels", str(folder / "labels.csv"),
         "--boxes", str(folder / "boxes.csv"), "--out", str(tmp_path / "report.json")])
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert (report["data"]["n"], report["data"]["unreadable"]) == (1, [])
    assert list(report["alignment"]["per_finding"]) == ["Nodule"]
    assert report["alignment"]["all"]["model"]["n"] == 2
    assert "Nodule" in capsys.readouterr().out


def test_feedback_stats_agreement_and_reading_times(feedback_store, film):
    feedback_store = replace(feedback_store, clock=Clock(timedelta(seconds=30)))
    xray = read_xray(film)
    for reader, verdict in (("dr.ada", "agree"), ("dr.bob", "disagree")):
        store.record_view(feedback_store, reader, xray, model_version="0.4.0", pathologies=["Nodule"],
                          overlay={"method": "Grad-CAM++"})
    store.save_feedback(feedback_store, _feedback(reader="dr.ada"), xray)  # 60 s after its view
    store.save_feedback(feedback_store, _feedback(reader="dr.bob", verdict="disagree"), xray)  # 60 s
    store.save_feedback(feedback_store, _feedback(reader="dr.cy", verdict="unsure"), xray)  # never viewed
    stats = store.feedback_stats(feedback_store)
    assert stats.agreement == [store.Agreement("Nodule", 1, 1, 1, ("0.4.0",), ("high_specificity",))]
    assert [(r.group, r.count, r.median_seconds) for r in stats.by_reader] == [("dr.ada", 1, 60.0),
                                                                               ("dr.bob", 1, 60.0)]
    assert [(r.count, r.median_seconds) for r in stats.by_overlay] == [(2, 60.0)]
    assert "Nodule" in store.format_stats(stats)


def test_feedback_privacy_no_patient_identifier_in_a_dump_of_the_database(feedback_store, identified_dicom,
                                                                         patient_identifiers, database_url, model):
    """A DICOM carrying the patient's name, ID, birth date and accession number is explained by the model, the view
    audited and feedback saved with consent to keep the image: a dump of the whole database holds none of them."""
    xray = read_xray(identified_dicom)
    explanation = explain(model, xray)
    thresholds = model.thresholds()
    shown = {label: store.ShownFinding(explanation.probability(label), thresholds[label]) for label in PATHOLOGIES}
    store.record_view(feedback_store, "dr.ada", xray, model_version=model.version, pathologies=list(PATHOLOGIES),
                      overlay={"method": "Grad-CAM++"})
    store.save_feedback(feedback_store, _feedback(boxes=[Box(100, 100, 200, 200)], keep_image=True, shown=shown,
                                                  model_version=model.version,
                                                  weights_sha256=model.card.weights_sha256), xray)
    feedback_store.engine.dispose()
    dump = _dump(database_url)
    assert b"consented_image" in dump and store.pixel_sha256(xray).encode() in dump
    for value in patient_identifiers.values():
        assert value.encode() not in dump
        assert value.replace("^", " ").encode() not in dump
    assert xray.sha256.encode() not in dump  # the file's hash would tie the row to the identified file


def test_store_unreachable_database_says_so_and_nothing_half_written():
    engine = store.create_store_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")
    with pytest.raises(store.FeedbackNotSaved, match="cannot be reached"):
        store.save_feedback(store.Store(engine), _feedback(), read_xray(_png(64, 64)))


def _with_lock_wait_of_one_second(database_url: str) -> str:
    """The URL with the limit a deployer may set on how long a save waits for a lock (default 30 s)."""
    return database_url + ("?timeout=1" if database_url.startswith("sqlite") else "?options=-c%20lock_timeout%3D1000")


@contextmanager
def _locked(database_url: str) -> Iterator[None]:
    """Someone else holds the database's write lock (SQLite) or an exclusive lock on the feedback table
    (PostgreSQL: an administrator's maintenance) until the block ends."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_engine(_as_superuser(database_url))
    try:
        with engine.connect() as connection:
            connection.execute(text("LOCK TABLE feedback IN ACCESS EXCLUSIVE MODE"))
            yield
            connection.rollback()
    finally:
        engine.dispose()


def test_store_locked_database_says_so_writes_nothing_and_a_retry_saves(database_url, film):
    default = store.create_store_engine(database_url)  # by default a save waits 30 s for a lock, then gives up
    sqlite = default.dialect.name == "sqlite"
    with default.connect() as connection:
        waits = connection.exec_driver_sql("PRAGMA busy_timeout" if sqlite else "SHOW lock_timeout").scalar()
    assert waits == (30000 if sqlite else "30s")
    default.dispose()
    opened = store.open_store(_with_lock_wait_of_one_second(database_url))
    xray = read_xray(film)
    with _locked(database_url), pytest.raises(store.FeedbackNotSaved, match="busy right now; nothing was written"):
        store.save_feedback(opened, _feedback(comment="first try"), xray)
    with opened.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM feedback")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM audit_event")).scalar_one() == 0
    saved = store.save_feedback(opened, _feedback(comment="first try"), xray)
    assert (saved.feedback_id, saved.audit_seq) == (1, 1) and store.verify_audit(opened).intact
    opened.engine.dispose()


def test_store_default_database_is_a_wal_sqlite_file_in_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(store.DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv(store.DATA_FOLDER_ENV, str(tmp_path / "data"))
    cli(["db", "upgrade"])
    opened = store.open_store()
    with opened.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert opened.engine.url.database == str(tmp_path / "data" / store.SQLITE_FILE)
    opened.engine.dispose()


# --- helpers ------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    rng = np.random.default_rng(width * height)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _behind_the_engine(database_url: str, statement: str) -> None:
    """Edit the audit table as an administrator would, around the engine and its triggers."""
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url)
        with engine.begin() as connection:
            for trigger in ("audit_event_no_update", "audit_event_no_delete"):
                connection.execute(text(f"DROP TRIGGER {trigger}"))
            connection.execute(text(statement))
    else:
        engine = create_engine(_as_superuser(database_url))
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            connection.execute(text(statement))
            connection.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
    engine.dispose()


def _dump(database_url: str) -> bytes:
    """Everything the database holds: the SQLite file (and its WAL), or pg_dump's plain output."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    url = _as_superuser(database_url).replace("postgresql+psycopg", "postgresql")
    return subprocess.run([_postgres_bin("pg_dump"), "--dbname", url, "--inserts"], check=True,
                          capture_output=True).stdout


def test_feedback_panel_stores_the_operating_point_and_thresholds_the_page_showed(tmp_path, monkeypatch):
    """The page flags findings at the operating point the reader picks: the saved row carries that point's
    thresholds from the model card (not the card's Youden thresholds), and the confirmation says what was saved."""
    from sqlalchemy.orm import Session
    from streamlit.testing.v1 import AppTest

    from app.feedback_panel import OPENED as FEEDBACK_OPENED
    from xai_core.model import load_model

    url = f"sqlite:///{tmp_path / 'page.sqlite3'}"
    monkeypatch.setenv(store.DATABASE_URL_ENV, url)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=180)
    at.run()
    next(button for button in at.button if button.label.startswith("Open the sample")).click().run()
    next(radio for radio in at.radio if radio.label == "Flag findings at").set_value("high_sensitivity").run()
    assert [radio for radio in at.radio if radio.label == "Verdict"] == []  # the form is drawn once opened
    at.session_state[FEEDBACK_OPENED] = True  # as the reader's click on the panel's title tells the page
    at.run()
    next(radio for radio in at.radio if radio.label == "Verdict").set_value("disagree")
    next(area for area in at.text_area if area.label.startswith("Comment")).set_value("edge of the heart")
    next(button for button in at.button if button.label == "Save feedback").click().run()
    assert not at.exception and [error.value for error in at.error] == []
    assert any(success.value.startswith("Saved: 'disagree'") and "high sensitivity point" in success.value
               and "0 boxes drawn, a comment of 17 characters; the image itself was not kept" in success.value
               for success in at.success), [success.value for success in at.success]
    opened = store.open_store(url)
    with Session(opened.engine) as session:
        record = session.scalars(select(store.FeedbackRecord)).one()
        actions = session.scalars(select(store.AuditEvent.action).order_by(store.AuditEvent.seq)).all()
    assert (record.verdict, record.comment, record.operating_point) == ("disagree", "edge of the heart",
                                                                       "high_sensitivity")
    card, youden = load_model().card, load_model().thresholds()
    expected = {name: (card.operating_point(name, "high_sensitivity") or None) for name in PATHOLOGIES}
    assert {name: shown["threshold"] for name, shown in record.shown.items()} == {
        name: None if point is None else point.threshold for name, point in expected.items()}
    assert any(point is not None and point.threshold != youden[name] for name, point in expected.items())
    assert actions[-1] == "feedback_saved" and set(actions) == {"explanation_viewed", "feedback_saved"}
    assert store.verify_audit(opened).intact
    opened.engine.dispose()


def test_feedback_panel_keeps_unsaved_feedback_while_the_database_is_locked_and_saves_on_retry(tmp_path, monkeypatch):
    """The page with its database locked: the viewer keeps working, says feedback cannot be saved right now, keeps
    what the reader entered in the form (through a change of overlay too) and saves it when they press Save again."""
    from sqlalchemy.orm import Session
    from streamlit.testing.v1 import AppTest

    from app.feedback_panel import OPENED as FEEDBACK_OPENED
    from xai_core.overlay import COLORMAPS

    database = f"sqlite:///{tmp_path / 'page.sqlite3'}"
    monkeypatch.setenv(store.DATABASE_URL_ENV, _with_lock_wait_of_one_second(database))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=180)
    at.run()
    next(button for button in at.button if button.label.startswith("Open the sample")).click().run()
    at.session_state[FEEDBACK_OPENED] = True
    at.run()

    def comment():
        return next(area for area in at.text_area if area.label.startswith("Comment"))

    next(radio for radio in at.radio if radio.label == "Verdict").set_value("unsure")
    comment().set_value("check the lateral view")
    with _locked(database):
        next(button for button in at.button if button.label == "Save feedback").click().run()
        assert not at.exception and [success.value for success in at.success] == []
        assert any("press Save again" in warning.value for warning in at.warning), [w.value for w in at.warning]
        chosen = next(name for name in COLORMAPS if name != at.selectbox(key="colormap").value)
        at.selectbox(key="colormap").set_value(chosen).run()  # a new view to audit, while the database is locked
        assert not at.exception
        assert any(w.value.startswith("Feedback cannot be saved right now") for w in at.warning)
        assert comment().value == "check the lateral view"
        assert next(radio for radio in at.radio if radio.label == "Verdict").value == "unsure"
        with closing(sqlite3.connect(database.removeprefix("sqlite:///"))) as reader:  # WAL: reading is not blocked
            assert reader.execute("SELECT count(*) FROM feedback").fetchone() == (0,)
    next(button for button in at.button if button.label == "Save feedback").click().run()
    assert not at.exception and not [w.value for w in at.warning if "saved" in w.value or "Save" in w.value]
    assert any(success.value.startswith("Saved: 'unsure'") for success in at.success)
    opened = store.open_store(database)
    with Session(opened.engine) as session:
        record = session.scalars(select(store.FeedbackRecord)).one()
        actions = session.scalars(select(store.AuditEvent.action).order_by(store.AuditEvent.seq)).all()
    assert (record.verdict, record.comment, record.overlay["colormap"]) == (
        "unsure", "check the lateral view", chosen)
    assert actions.count("feedback_saved") == 1 and actions.count("explanation_viewed") == 2  # both overlays
    assert store.verify_audit(opened).intact
    opened.engine.dispose()
