"""End to end in a real browser: the viewer on loopback, driven in Debian's Chromium with Playwright."""

from __future__ import annotations

import hashlib
import json

import pytest

from browser_support import CHROMIUM, launch_chromium, open_sample, running_viewer, wait_until_idle

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright


@pytest.fixture(scope="module")
def page():
    with running_viewer() as (url, _process), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.goto(url)
        yield page
        browser.close()


def _problems(page) -> list[str]:
    alerts = page.locator("[data-testid='stAlertContentError']").all_inner_texts()
    return [text for text in alerts if "not for diagnosis" not in text.lower()]


def test_sample_shows_14_probabilities_and_the_overlay(page):
    open_sample(page)
    rows = page.locator("[data-testid='stDataFrame'] [role='row']")
    assert rows.count() == 15  # header + 14 pathologies
    assert page.get_by_text("Research and education use only").is_visible()
    assert page.get_by_text("Where the model looked", exact=True).is_visible()
    assert _problems(page) == []


def test_toggle_a_pathology_and_switch_overlay_modes(page):
    picker = page.get_by_label("Pathology shown")
    before = picker.input_value() if picker.evaluate("e => e.tagName") == "INPUT" else ""
    page.locator("[data-testid='stSelectbox']").filter(has_text="Pathology shown").click()
    page.get_by_role("option", name="Hernia").click()
    page.get_by_text("Hernia: probability").wait_for(timeout=30_000)
    wait_until_idle(page)
    for layer in ("Gradient saliency", "Grad-CAM++ heatmap", "Attention outline"):
        page.get_by_role("button", name=layer).click()
        wait_until_idle(page)
    legend = page.locator("[data-testid='stMarkdownContainer']").filter(has_text="■ gradient saliency")
    assert legend.count() == 1 and "attention outline" not in legend.inner_text()  # only the saliency layer is left
    assert _problems(page) == []
    assert before != "Hernia"


def test_download_the_json(page, chest_dicom):
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Result (JSON)").click()
    record = json.loads(download_info.value.path().read_text())
    assert record["image"]["sha256"] == hashlib.sha256(chest_dicom.read_bytes()).hexdigest()
    assert [f["label"] for f in record["findings"]][0] == "Atelectasis" and len(record["findings"]) == 14
    assert record["settings"]["pathology_shown"] == "Hernia"
    assert "not for diagnosis" in record["disclaimer"].lower()


def test_a_corrupt_upload_shows_its_message_and_the_app_keeps_working(page, tmp_path):
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"DICM" + bytes(range(256)) * 4)
    page.locator("input[type='file']").set_input_files(str(broken))
    page.get_by_text("could not be opened").wait_for(timeout=60_000)
    assert _problems(page)
    open_sample(page)
    assert _problems(page) == []
