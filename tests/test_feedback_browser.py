"""Reader feedback end to end in a real browser: a box dragged with the mouse on the sample film reaches the
database in the image's own pixels, and the page says what was saved.

The viewer runs as `streamlit run app/main.py` with its own SQLite file ($XAI_DATABASE_URL); Debian's Chromium
drives it through Playwright.
"""

from __future__ import annotations

import pytest
from browser_support import (
    BROWSER_TEST,
    COUNT_MESSAGES_TO_SERVER,
    launch_chromium,
    messages_to_server,
    open_sample,
    running_viewer,
    wait_until_idle,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from xai_core import store
from xai_core.imaging import read_xray
from xai_core.samples import sample_images

pytestmark = BROWSER_TEST
playwright_api = pytest.importorskip("playwright.sync_api")

DRAWING = ".cxr-draw"
FILM = ".cxr-draw-film"


def _settled_box(page, locator, *, checks: int = 60) -> dict:
    """The element's box once it is in the viewport and has stayed put there for half a second (the page may
    still be laying out, and may push it out of view after it was scrolled to)."""
    last = None
    for _ in range(checks):
        locator.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        now = locator.bounding_box()
        viewport = page.viewport_size
        inside = now["y"] >= 0 and now["y"] + now["height"] <= viewport["height"]
        if now == last and inside:
            return now
        last = now
    raise AssertionError(f"the film kept moving or stayed out of view: {last}")


def test_feedback_box_drawn_with_the_mouse_is_saved_confirmed_and_found_in_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    sample = read_xray(next(iter(sample_images().values())))
    rows, columns = sample.pixels.shape[:2]
    with running_viewer(env={store.DATABASE_URL_ENV: url}) as (address, _process), \
            playwright_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        page.add_init_script(COUNT_MESSAGES_TO_SERVER)
        page.goto(address)
        open_sample(page)
        wait_until_idle(page)
        expander = page.get_by_text("Your feedback on ")
        shown = expander.inner_text().removeprefix("Your feedback on ").strip()
        expander.click()
        page.wait_for_function(f"() => document.querySelector('{FILM}')?.naturalWidth > 0")
        film = page.locator(FILM)
        frame = _settled_box(page, film)  # panels drawn late above the film must not move it mid-drag

        # A drag from 20% to 60% of the film's width and 30% to 55% of its height draws one box.
        start = (frame["x"] + 0.2 * frame["width"], frame["y"] + 0.3 * frame["height"])
        end = (frame["x"] + 0.6 * frame["width"], frame["y"] + 0.55 * frame["height"])
        before = messages_to_server(page)
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=8)
        page.mouse.up()
        page.locator(f"{DRAWING}[data-boxes='1']").wait_for()
        assert page.get_by_text("1 box drawn").is_visible()
        page.wait_for_timeout(500)
        assert messages_to_server(page) == before  # inside the form: drawing sends nothing, reruns nothing

        page.get_by_text("I disagree").click()
        comment = page.get_by_label("Comment (optional, no patient details)")
        comment.fill("lower than the map says")
        # Folding the panel and opening it again loses nothing the reader drew or typed.
        for _ in range(2):
            expander.click()
            wait_until_idle(page)
        assert comment.input_value() == "lower than the map says"
        assert page.locator(f"{DRAWING}[data-boxes='1']").count() == 1
        page.get_by_role("button", name="Save feedback").click()
        confirmation = page.locator("[data-testid='stAlertContentSuccess']").filter(has_text="Saved:")
        confirmation.wait_for(timeout=60_000)
        wait_until_idle(page)
        said = confirmation.inner_text()
        assert f"'disagree' on {shown}" in said
        assert "1 box drawn, a comment of 23 characters; the image itself was not kept" in said
        assert page.locator("[data-testid='stAlertContentError']").all_inner_texts() == []
        # After the save the form is empty again, ready for the next pathology.
        page.locator(f"{DRAWING}[data-boxes='0']").wait_for()
        page.locator(f"{DRAWING}[data-boxes='1']").wait_for(state="detached")
        browser.close()

    opened = store.open_store(url)
    with Session(opened.engine) as session:
        record = session.scalars(select(store.FeedbackRecord)).one()
        actions = session.scalars(select(store.AuditEvent.action).order_by(store.AuditEvent.seq)).all()
    assert (record.verdict, record.comment, record.pixel_sha256) == (
        "disagree", "lower than the map says", store.pixel_sha256(sample))
    assert (record.image_rows, record.image_columns) == (rows, columns)
    [box] = record.boxes
    # In the image's own pixels, within one display pixel of where the mouse went.
    tolerance = columns / frame["width"] + 1
    assert box.x == pytest.approx(0.2 * columns, abs=tolerance)
    assert box.y == pytest.approx(0.3 * rows, abs=tolerance)
    assert box.w == pytest.approx(0.4 * columns, abs=2 * tolerance)
    assert box.h == pytest.approx(0.25 * rows, abs=2 * tolerance)
    assert actions[-1] == "feedback_saved" and store.verify_audit(opened).intact
    opened.engine.dispose()
