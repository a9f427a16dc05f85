"""The side-by-side methods in Chromium: an expensive method shows its progress and stops when the reader asks.

The page's progress bar is refreshed by a timed fragment that AppTest does not run, and the Stop
click must reach a thread that outlives the script run that started it: only the real server and a
real browser show both.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser_support import (
    BROWSER_TEST,
    METHOD_PANEL,
    ROOT,
    launch_chromium,
    open_method_comparison,
    page_with_sample,
    running_viewer,
    wait_until_idle,
)
from PIL import Image

from xai_core.figures import RESEARCH_ONLY

pytestmark = BROWSER_TEST
playwright_api = pytest.importorskip("playwright.sync_api")

STOPPED = re.compile(r"Kernel SHAP \(superpixels\) for .+ was stopped after (\d+) of 200 images through the network")


@pytest.fixture(scope="module")
def viewer():
    """(url, browser): one viewer and one Chromium for this file's tests, each test in a page (a session) of its own."""
    with running_viewer(script=ROOT / "app" / "main.py") as (url, _process), \
            playwright_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield url, browser
        browser.close()


def test_method_run_in_the_browser_shows_progress_and_stops_on_request(viewer):
    url, browser = viewer
    page = page_with_sample(browser, url)
    panel = open_method_comparison(page)
    panel.locator("[data-testid='stSelectbox']").nth(1).click()
    page.keyboard.type("Kernel SHAP")  # the list is virtualised: filter it to the method
    page.get_by_role("option", name="Kernel SHAP (superpixels)").click()
    wait_until_idle(page)

    page.get_by_role("button", name=re.compile("^Run Kernel SHAP")).click()
    progress = panel.locator("[data-testid='stProgress']")
    progress.wait_for(timeout=120_000)
    # the bar moves without a click: the timed refresh reads the background run's count
    panel.get_by_text(re.compile(r"Kernel SHAP \(superpixels\) for .+: [1-9]\d* of 200 images")).wait_for(
        timeout=300_000)
    page.get_by_role("button", name="Stop").click()
    panel.get_by_text(STOPPED).wait_for(timeout=300_000)
    stopped = int(STOPPED.search(panel.inner_text()).group(1))
    assert 0 < stopped < 200
    assert progress.count() == 0
    assert page.get_by_role("button", name=re.compile("^Run Kernel SHAP")).is_visible()  # it can run again
    assert page.locator("[data-testid='stAlertContentError']").all_inner_texts() == []


def test_method_figures_download_from_the_page_as_png_and_gif(viewer, tmp_path):
    """The reader's two buttons give the radiograph beside both maps (PNG) and the film, then each map (GIF),
    both captioned with the methods, the pathology shown and the research-only line."""
    url, browser = viewer
    page = page_with_sample(browser, url, accept_downloads=True)
    # Closed, the panel holds nothing: no picker, no map, no cost of one (Streamlit would run and send a plain
    # expander's body, Grad-CAM included, on every run, its panel closed or not).
    closed = page.locator(METHOD_PANEL)
    assert closed.count() == 1
    assert closed.locator("[data-testid='stSelectbox'], [data-testid='stImage']").count() == 0
    assert "through the network" not in closed.text_content()
    panel = open_method_comparison(page)
    assert "1 image through the network" in panel.text_content()  # Grad-CAM's map, computed on opening
    panel.get_by_text(re.compile(r"NIH test box")).first.wait_for()  # each map's track record, from the card
    files = {}
    for name, button in (("png", "Figure of these maps (PNG)"), ("gif", "Animation: film, then each map (GIF)")):
        with page.expect_download(timeout=120_000) as download:
            panel.get_by_role("button", name=button).click()
        files[name] = tmp_path / download.value.suggested_filename
        download.value.save_as(files[name])
    assert page.locator("[data-testid='stAlertContentError']").all_inner_texts() == []
    figure = Image.open(files["png"])
    caption = figure.text["Description"]
    assert caption.startswith("Grad-CAM++ vs Grad-CAM · ") and caption.endswith(RESEARCH_ONLY)
    animation = Image.open(files["gif"])
    assert animation.n_frames == 3 and animation.info["comment"].decode("utf-8") == caption
    frames = []
    for number in range(3):
        animation.seek(number)
        frames.append(np.asarray(animation.convert("RGB")).astype(int))
    assert frames[0].shape[1] < figure.width / 2  # one panel per frame; the PNG has three side by side
    assert all(np.abs(frame - frames[0]).mean() > 1 for frame in frames[1:])  # each map differs from the film
    assert files["png"].name.endswith(".png") and files["gif"].name.endswith(".gif")
