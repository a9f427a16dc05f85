"""Screenshots of the viewer on the bundled sample for the README: `python docs/take_screenshots.py`.

Uses the checkpoint the viewer loads by default ($XAI_MODEL_CARD or weights/) and
Debian's Chromium; writes docs/screenshots/viewer_sample.png (Grad-CAM++ heatmap
on the most probable finding) and viewer_outline.png (outline + gradient saliency).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import launch_chromium, open_sample, running_viewer, settle, toggle_layer  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with running_viewer() as (url, _process), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        open_sample(page)
        settle(page)
        page.screenshot(path=OUT / "viewer_sample.png", full_page=True)
        for layer in ("heatmap", "outline", "saliency"):
            toggle_layer(page, layer)
        settle(page)
        page.screenshot(path=OUT / "viewer_outline.png", full_page=True)
        browser.close()
    print(f"wrote {OUT / 'viewer_sample.png'} and {OUT / 'viewer_outline.png'}")


if __name__ == "__main__":
    main()
