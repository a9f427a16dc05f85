"""Screenshots of the viewer on the bundled sample for the README: `python docs/take_screenshots.py`."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import launch_chromium, open_sample, running_viewer, wait_until_idle  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with running_viewer() as (url, _process), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        open_sample(page)
        wait_until_idle(page)
        page.mouse.move(800, 995)
        page.screenshot(path=OUT / "viewer_sample.png")
        page.get_by_role("button", name="Grad-CAM++ heatmap").click()
        wait_until_idle(page)
        page.get_by_role("button", name="Gradient saliency").click()
        wait_until_idle(page)
        page.mouse.move(800, 995)
        page.screenshot(path=OUT / "viewer_outline_saliency.png")
        browser.close()
    print(f"wrote {OUT / 'viewer_sample.png'} and {OUT / 'viewer_outline_saliency.png'}")


if __name__ == "__main__":
    main()
