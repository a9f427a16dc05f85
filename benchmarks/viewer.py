"""Viewer speed and memory in a real browser: `python benchmarks/viewer.py`.

Starts the app on loopback, drives Debian's Chromium with Playwright and prints:
time from opening the page to the first heatmap drawn on the bundled sample (model
already loaded by a first visit), time for a pathology toggle and for an overlay
switch, and the server's resident memory with 1 and with 8 concurrent sessions,
each on a different image (NIH images from ../shared/data when present).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import launch_chromium, open_sample, rss_mb, running_viewer, wait_until_idle  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

NIH_IMAGES = ROOT.parent / "shared" / "data" / "nih" / "images"


def timed(action, page) -> float:
    started = time.perf_counter()
    action()
    wait_until_idle(page)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=8)
    args = parser.parse_args()

    with running_viewer() as (url, process), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        warm = browser.new_page()
        warm.goto(url)
        open_sample(warm)  # loads the model once, as the first visitor of a server does
        warm.close()

        first_heatmap, toggles, switches = [], [], []
        labels = ["Cardiomegaly", "Effusion", "Pneumothorax", "Nodule", "Mass", "Edema"]
        for repeat in range(args.repeats):
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            page = context.new_page()
            started = time.perf_counter()
            page.goto(url)
            open_sample(page)
            wait_until_idle(page)
            first_heatmap.append(time.perf_counter() - started)

            def toggle(label=labels[repeat % len(labels)]):
                page.locator("[data-testid='stSelectbox']").filter(has_text="Pathology shown").click()
                page.get_by_role("option", name=label).click()

            toggles.append(timed(toggle, page))
            switches.append(timed(lambda: page.get_by_role("button", name="Attention outline").click(), page))
            context.close()
        one_session = rss_mb(process.pid)

        images = sorted(NIH_IMAGES.glob("*.png"))[: args.sessions] if NIH_IMAGES.is_dir() else []
        pages = []
        for index in range(args.sessions):
            page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
            page.goto(url)
            if index < len(images):
                page.locator("input[type='file']").set_input_files(str(images[index]))
                page.get_by_text("Pathology shown").wait_for(timeout=300_000)
            else:
                open_sample(page)
            pages.append(page)
        for page in pages:
            wait_until_idle(page)
        many_sessions = rss_mb(process.pid)
        browser.close()

    def line(name: str, values: list[float], target: str) -> str:
        return (f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}–{max(values):.2f} | {target} |")

    print(f"\nViewer in Chromium, {args.repeats} repeats, model loaded before timing\n")
    print("| step | median s | range s | target |")
    print("|---|---|---|---|")
    print(line("open page → first heatmap (sample)", first_heatmap, "≤ 2 s"))
    print(line("pathology toggle", toggles, "≤ 0.3 s"))
    print(line("overlay switch", switches, "≤ 0.3 s"))
    extra = (many_sessions - one_session) / max(args.sessions - 1, 1)
    print(f"\nserver RSS: {one_session:.0f} MB after the timed sessions, {many_sessions:.0f} MB with "
          f"{args.sessions} more concurrent sessions on different images: {extra:.0f} MB per extra session "
          f"(target ≤ 50 MB)")


if __name__ == "__main__":
    main()
