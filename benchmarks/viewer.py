"""Viewer speed and memory in a real browser: `python benchmarks/viewer.py`.

Starts the app as deployed (`streamlit run app/server.py`) on loopback, drives Debian's Chromium with Playwright
and prints: the time from the health check saying OK (/api/ready) to the first visit's page ready and to its first
heatmap; time from opening the page to the first heatmap drawn on the bundled sample (in a fresh browser profile
and with the page's scripts cached); time from a pathology toggle (pressing a row of the findings table) and from
an overlay switch (the pane's outline box) to the new overlay in the page; a pathology switched in the image pane's
picker to the next painted frame, beside the same page's idle frame; the method comparison opened to both methods'
maps shown; and the server's resident memory after the timed sessions, with N more sessions on the same film (what
a session costs) and N more on films of their own (NIH images from ../shared/data when present: each film's
pictures and maps are cached once). As a reference in the same run, the time a bare Streamlit page
(benchmarks/bare_streamlit_page.py: the welcome page's heading and button, nothing else) takes to become ready:
Streamlit's own floor on this machine.

Times are taken in the page, on its own clock: from the navigation's start or the
mouse press to the overlay drawn (the pane's data-drawn set once its canvases hold the new map),
so Playwright's own latency is not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser_support import (  # noqa: E402
    COUNT_MESSAGES_TO_SERVER,
    FINDING_ROWS,
    METHOD_PANEL,
    NEW_OVERLAY_SETTLED,
    ROOT,
    launch_chromium,
    open_sample,
    overlay_source,
    rss_mb,
    running_viewer,
    wait_for_new_overlay,
    wait_until_idle,
)
from playwright.sync_api import sync_playwright  # noqa: E402

NIH_IMAGES = ROOT.parent / "shared" / "data" / "nih" / "images"


# Page-side timestamps (performance.now(), ms since the navigation started): mouse presses and each overlay drawn
# (app/image_pair/ sets the overlay pane's data-drawn once its canvases hold the new map).
PAGE_CLOCK = """
window.__viewerTimes = {presses: [], overlays: []};
document.addEventListener('pointerdown', () => window.__viewerTimes.presses.push(performance.now()), true);
new MutationObserver((changes) => {
    if (changes.some((change) => change.target.dataset.drawn)) window.__viewerTimes.overlays.push(performance.now());
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-drawn']});
"""

# A pathology switched in the image pane's own picker, timed to the next frame painted after it, beside the same
# page's idle frame (two frames with nothing to do); and the messages sent to the server meanwhile (a rerun sends one).
PANE_SWITCH = """async (label) => {
    const frame = () => new Promise(requestAnimationFrame);
    await frame();
    const idleStart = performance.now();
    await frame();
    const idle = performance.now() - idleStart;
    const sent = window.__messagesToServer;
    const picker = document.querySelector("select[data-map='label']");
    const start = performance.now();
    picker.value = label;
    picker.dispatchEvent(new Event('change'));
    await frame();
    return [(performance.now() - start) / 1000, idle / 1000, window.__messagesToServer - sent];
}"""


# The method comparison opened (a press on its title): both methods' maps loaded, Grad-CAM's computed on opening.
# The first time it holds is stamped on the page's clock.
COMPARISON_DRAWN = """() => {
    const panel = [...document.querySelectorAll("[data-testid='stExpander']")]
        .find((expander) => expander.textContent.includes('Compare explanation methods side by side'));
    const maps = panel ? [...panel.querySelectorAll("[data-testid='stImage'] img")] : [];
    const drawn = maps.length >= 2 && maps.every((map) => map.complete && map.naturalWidth > 0);
    if (drawn) window.__viewerTimes.comparison = performance.now();
    return drawn;
}"""


def comparison_seconds(page) -> float:
    """From the press on the method comparison's title to both methods' maps shown."""
    page.locator(METHOD_PANEL).get_by_text("Compare explanation methods side by side").click()
    page.wait_for_function(COMPARISON_DRAWN, polling="raf", timeout=180_000)
    seconds = page.evaluate("window.__viewerTimes.comparison - window.__viewerTimes.presses.at(-1)") / 1000
    wait_until_idle(page)
    return seconds


def press_to_overlay_seconds(page) -> float:
    """From the last mouse press to the first overlay picture loaded after it."""
    times = page.evaluate("window.__viewerTimes")
    pressed = times["presses"][-1]
    return (min(t for t in times["overlays"] if t > pressed) - pressed) / 1000


# The whole redraw is done (browser_support's test, polled at every animation frame); the first time it
# holds is stamped on the page's clock.
SETTLED = f"""(before) => {{
    const settled = ({NEW_OVERLAY_SETTLED})(before);
    if (settled) window.__viewerTimes.settled = performance.now();
    return settled;
}}"""


def timed_redraw(action, page) -> tuple[float, float]:
    """Seconds from the user's press to the new overlay, and to the whole page redrawn (no fixed waits inside)."""
    before = overlay_source(page)
    action()
    page.wait_for_function(SETTLED, arg=before, polling="raf", timeout=180_000)
    page.wait_for_function("() => window.__viewerTimes.overlays.some(t => t > window.__viewerTimes.presses.at(-1))")
    settled = (page.evaluate("window.__viewerTimes.settled - window.__viewerTimes.presses.at(-1)")) / 1000
    wait_until_idle(page)  # nothing left running before the next action
    return press_to_overlay_seconds(page), settled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=8)
    args = parser.parse_args()
    print(f"load average at the start (1, 5, 15 min; {os.cpu_count()} cores): {_load()}")

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        first = browser.new_page(viewport={"width": 1600, "height": 1000})  # the first reader's browser, open
        with running_viewer() as (url, process):
            # running_viewer returns as soon as the health check (/api/ready) says OK: the first reader comes now.
            ready_after_health, usable_after_health = first_heatmap_after(time.monotonic(), first, url)
            with running_viewer(script=ROOT / "benchmarks" / "bare_streamlit_page.py") as (reference_url, _reference):
                measure(args, url, process, reference_url, browser, ready_after_health, usable_after_health)
        browser.close()
    print(f"load average at the end: {_load()}")


def _load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def first_heatmap_after(healthy: float, first, url: str) -> tuple[float, float]:
    """Seconds from `healthy` to the first visitor's page ready (Open sample can be pressed), and to the first
    heatmap once it is pressed; `first` is a blank tab, opened before the server started (opening a tab is the
    browser's time, not the viewer's)."""
    first.goto(url)
    first.get_by_role("button", name="Open sample").wait_for(timeout=180_000)
    ready = time.monotonic() - healthy
    open_sample(first)
    heatmap = time.monotonic() - healthy
    first.close()
    return ready, heatmap


def measure(args, url, process, reference_url, browser, ready_after_health: float,
            usable_after_health: float) -> None:

    def first_heatmap_seconds(page) -> tuple[float, float]:
        """From the navigation's start to the first overlay, pressing Open sample as soon as it appears;
        and to that press (the page loaded and ready: Streamlit's scripts, the first run of the app)."""
        page.goto(url)
        page.get_by_role("button", name="Open sample").click()
        wait_for_new_overlay(page, None)
        page.wait_for_function("() => window.__viewerTimes.overlays.length > 0")
        wait_until_idle(page)
        return tuple(ms / 1000 for ms in page.evaluate(
            "[window.__viewerTimes.overlays[0], window.__viewerTimes.presses[0]]"))

    def click_to_first_heatmap_seconds(page, reading_s: float = 4.0) -> float:
        """From pressing Open sample to the heatmap, on a page open for reading_s (a user choosing a file)."""
        page.goto(url)
        button = page.get_by_role("button", name="Open sample")
        button.wait_for()
        page.wait_for_timeout(reading_s * 1000)
        button.click()
        wait_for_new_overlay(page, None)
        page.wait_for_function("() => window.__viewerTimes.overlays.length > 0")
        wait_until_idle(page)
        return press_to_overlay_seconds(page)

    def ready_seconds(page) -> float:
        """From the navigation's start to pressing the button, as soon as it can be pressed."""
        page.goto(reference_url)
        page.get_by_role("button", name="Open the sample").click()
        return page.evaluate("window.__viewerTimes.presses[0]") / 1000

    def fresh_profile():
        """A new browser profile (nothing cached) with the page clock in every tab."""
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.add_init_script(PAGE_CLOCK)
        context.add_init_script(COUNT_MESSAGES_TO_SERVER)
        return context

    first_heatmap, first_heatmap_cached, click_to_heatmap, toggles, switches, settled = [], [], [], [], [], []
    pane_switches, idle_frames, rerun_messages, comparisons = [], [], 0, []
    ready, ready_cached, reference_ready, reference_ready_cached = [], [], [], []
    labels = ["Cardiomegaly", "Effusion", "Pneumothorax", "Nodule", "Mass", "Edema"]
    for repeat in range(args.repeats):
        # A fresh browser profile (nothing cached), then more tabs of the same one, one at a time (the
        # page's scripts in the browser's cache, as for a clinician who has opened the viewer before).
        context = fresh_profile()
        single = context.new_page()  # one tab at a time: a tab in the background is throttled
        heatmap_s, ready_s = first_heatmap_seconds(single)
        first_heatmap.append(heatmap_s)
        ready.append(ready_s)
        single.close()
        single = context.new_page()
        click_to_heatmap.append(click_to_first_heatmap_seconds(single))
        single.close()
        page = context.new_page()
        heatmap_s, ready_s = first_heatmap_seconds(page)
        first_heatmap_cached.append(heatmap_s)
        ready_cached.append(ready_s)

        row = page.locator(f"{FINDING_ROWS}[data-label='{labels[repeat % len(labels)]}']")
        toggle, toggle_settled = timed_redraw(row.click, page)
        switch, switch_settled = timed_redraw(page.locator("input[data-map='outline']").click, page)
        toggles.append(toggle)
        switches.append(switch)
        settled.extend([toggle_settled, switch_settled])
        for label in labels:
            switch_s, idle_s, sent = page.evaluate(PANE_SWITCH, label)
            pane_switches.append(switch_s)
            idle_frames.append(idle_s)
            rerun_messages += sent
        comparisons.append(comparison_seconds(page))
        context.close()

        context = fresh_profile()
        for times in (reference_ready, reference_ready_cached):  # a fresh profile, then scripts cached
            single = context.new_page()
            times.append(ready_seconds(single))
            single.close()
        context.close()
    one_session = rss_mb(process.pid)

    # Memory: more sessions on the same film (what a session itself costs), then as many on films of their own
    # (each film's pixels, display pictures and maps are cached once per film, shared by the sessions showing it).
    images = sorted(NIH_IMAGES.glob("*.png"))[: args.sessions] if NIH_IMAGES.is_dir() else []
    pages = []
    for _ in range(args.sessions):
        page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        page.goto(url)
        open_sample(page)
        pages.append(page)
    for page in pages:
        wait_until_idle(page)
    same_film = rss_mb(process.pid)
    for image in images:
        page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        page.goto(url)
        page.locator("input[type='file']").set_input_files(str(image))
        page.get_by_text("Pathology shown:").wait_for(timeout=300_000)
        pages.append(page)
    for page in pages:
        wait_until_idle(page)
    own_films = rss_mb(process.pid)

    rows = [  # (step, its times, target)
        ("open page → first heatmap (sample), new browser profile", first_heatmap, "≤ 2 s"),
        ("… of which open page → Open sample pressed (page ready)", ready, "–"),
        ("open page → first heatmap (sample), page scripts cached", first_heatmap_cached, "≤ 2 s"),
        ("… of which open page → Open sample pressed (page ready)", ready_cached, "–"),
        ("Open sample → first heatmap, page open 4 s before, scripts cached", click_to_heatmap, "≤ 1 s"),
        ("pathology toggle (a table row pressed)", toggles, "≤ 0.3 s"),
        ("overlay switch", switches, "≤ 0.3 s"),
        ("toggle or switch → whole page redrawn (table, picker, downloads)", settled, "–"),
        ("pathology switched in the image pane's picker → next frame painted", pane_switches, "≤ 0.1 s"),
        ("… the same page's idle frame", idle_frames, "–"),
        ("method comparison opened → both methods' maps shown (Grad-CAM computed)", comparisons, "–"),
        ("reference: bare Streamlit page → button pressed (ready), new browser profile", reference_ready, "–"),
        ("reference: bare Streamlit page → button pressed (ready), page scripts cached", reference_ready_cached,
         "–"),
    ]
    print(f"\nViewer in Chromium, {args.repeats} repeats, model loaded before timing; each time runs, on the "
          "page's clock, from the navigation's start or the mouse press to the new overlay picture loaded\n")
    print("| step | median s | range s | target |")
    print("|---|---|---|---|")
    for name, values, target in rows:
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}–{max(values):.2f} | {target} |")
    print(f"\nmessages sent to the server within the {len(pane_switches)} pane switches' frames (the pane tells the "
          "server once the reader pauses, 0.3 s): "
          f"{rerun_messages}")
    print(f"\npage ready, viewer / bare Streamlit page (medians): "
          f"{statistics.median(ready) / statistics.median(reference_ready):.2f} × new profile, "
          f"{statistics.median(ready_cached) / statistics.median(reference_ready_cached):.2f} × scripts cached")
    print(f"\nhealth check OK (/api/ready) → the first visit's page ready (Open sample can be pressed): "
          f"{ready_after_health:.2f} s (target: usable ≤ 3 s); → its first heatmap: {usable_after_health:.2f} s")
    print(f"\nserver RSS: {one_session:.0f} MB after the timed sessions; {args.sessions} more sessions on the same "
          f"film: {(same_film - one_session) / args.sessions:.0f} MB per session (target ≤ 50 MB); {len(images)} "
          f"more on films of their own: {(own_films - same_film) / max(len(images), 1):.0f} MB per session and film")

if __name__ == "__main__":
    main()
