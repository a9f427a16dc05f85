"""Start the viewer on loopback and open Debian's Chromium with Playwright (tests, screenshots, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from loopback import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# A browser test module's marks (`pytestmark = BROWSER_TEST`): selected by `-m browser`, skipped without Chromium.
BROWSER_TEST = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]


SERVER = ROOT / "app" / "server.py"  # the page, with the model loaded as the server starts and /api/ready
LOG_TAIL = 4000  # characters of the server's log shown when it did not start
READY = "/api/ready"  # 200 once the model is loaded (app/server.py); Streamlit's /_stcore/health is up before it


@contextmanager
def running_viewer(env: dict[str, str] | None = None, timeout_s: float = 120, script: Path = SERVER,
                   ready_path: str | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """(url, process) of `streamlit run app/server.py` (or another script) on a free loopback port, once
    ready_path answers 200 (by default /api/ready for app/server.py: the model is loaded; /_stcore/health for
    another script); stopped on exit. The server's output and errors go to a log file, never to a pipe nobody
    reads (a chatty server would block once the pipe is full): process.stdout reads that log from its start,
    also after exit; its tail is in the error when the viewer does not start."""
    ready_path = ready_path or (READY if script == SERVER else "/_stcore/health")
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true"]
    with tempfile.NamedTemporaryFile("w", prefix="viewer_", suffix=".log", delete=False) as log:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                                   stderr=subprocess.STDOUT)
    process.stdout = open(log.name, encoding="utf-8", errors="replace")  # noqa: SIM115 - the caller reads it, also after exit
    os.unlink(log.name)  # the server and the reader keep it open: nothing is left on disk
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}{ready_path}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:  # not listening yet, or 503 while the model loads
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    raise RuntimeError(f"the viewer did not start; the end of its log:\n{process.stdout.read()[-LOG_TAIL:]}")
                time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (MB), from /proc."""
    total = 0
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().split()[3]) == pid:
                    pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def open_sample(page, timeout_ms: int = 180_000) -> None:
    """Press Open sample and wait until the overlay, the pathology picker and the table's 14 rows are drawn."""
    page.get_by_role("button", name="Open sample").click(timeout=timeout_ms)  # the first page loads the model
    page.get_by_text("Pathology shown").wait_for(timeout=timeout_ms)
    page.locator(f"{OVERLAY_PANE}[data-drawn]").wait_for(timeout=timeout_ms)
    page.locator(FINDING_ROWS).nth(13).wait_for(timeout=timeout_ms)


def page_with_sample(browser, url: str, **page_options):
    """A new page on the viewer at `url` (1440 x 1000 unless page_options say otherwise) with the sample open and
    every rerun finished."""
    page = browser.new_page(**{"viewport": {"width": 1440, "height": 1000}, **page_options})
    page.goto(url)
    open_sample(page)
    wait_until_idle(page)
    return page


# "Compare explanation methods side by side" (app/method_picker.py): closed, it computes and draws nothing.
METHOD_PANEL = "[data-testid='stExpander']:has-text('Compare explanation methods side by side')"


def open_method_comparison(page):
    """Open the method comparison as a reader does (a click on its title) and return it once both methods' pickers
    are drawn and the run is over."""
    panel = page.locator(METHOD_PANEL)
    panel.get_by_text("Compare explanation methods side by side").click()
    panel.locator("[data-testid='stSelectbox']").nth(1).wait_for(timeout=180_000)
    wait_until_idle(page)
    return panel


def wait_until_idle(page, timeout_ms: int = 180_000) -> None:
    """Wait for Streamlit's 'running' indicator to go away (a rerun has finished drawing)."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stStatusWidget'] button\")"
        " && !document.querySelector(\"[data-stale='true']\")",
        timeout=timeout_ms,
    )


# The findings table's rows (app/pathology_table.js), most probable first; the one shown is aria-selected.
FINDING_ROWS = ".cxr-findings tbody tr"
# The image panes (app/image_pair/): the radiograph, then the overlay, each a stack of canvases drawn in the
# browser; the overlay pane's data-drawn names what it shows (image, pathology, layers, settings) once drawn.
PANE_IMAGES = ".cxr-pair .cxr-stack"
OVERLAY_IMAGE = ".cxr-pair [data-pane='overlay'] .cxr-stack"
OVERLAY_PANE = ".cxr-pair [data-pane='overlay']"
_OVERLAY_SOURCE = f"""() => {{
    const pane = document.querySelector("{OVERLAY_PANE}");
    return pane && pane.dataset.drawn ? pane.dataset.drawn : null;
}}"""


def overlay_source(page) -> str | None:
    """What the overlay pane shows now, or None before it is drawn."""
    return page.evaluate(_OVERLAY_SOURCE)


# In the page: does the overlay pane show something other than `before`, with nothing on the page stale any more?
NEW_OVERLAY_SETTLED = f"""(before) => {{
    const now = ({_OVERLAY_SOURCE})();
    return now !== null && now !== before && !document.querySelector("[data-stale='true']");
}}"""


# An init script: counts the messages the page sends to the server (a rerun is one); messages_to_server reads it.
COUNT_MESSAGES_TO_SERVER = """(() => {
    const send = WebSocket.prototype.send;
    window.__messagesToServer = 0;
    WebSocket.prototype.send = function (...message) {
        window.__messagesToServer += 1;
        return send.apply(this, message);
    };
})();"""


def messages_to_server(page) -> int:
    """How many messages the page has sent to the Streamlit server (page.add_init_script(COUNT_MESSAGES_TO_SERVER))."""
    return page.evaluate("() => window.__messagesToServer")


def wait_for_new_overlay(page, before: str | None, timeout_ms: int = 180_000) -> None:
    """Wait until the overlay pane shows something other than `before` and nothing on the page is stale."""
    page.wait_for_function(NEW_OVERLAY_SETTLED, arg=before, timeout=timeout_ms, polling="raf")


def toggle_layer(page, layer: str) -> None:
    """Switch one overlay layer (heatmap, saliency, outline: the image pane's checkbox) on or off; the pane draws
    it at once and tells the server, whose rerun is waited for."""
    page.locator(f"input[data-map='{layer}']").click()
    wait_for_server(page)


def wait_for_server(page, timeout_ms: int = 180_000) -> None:
    """After a switch in the image pane: wait until the server has sent back what the pane told it (the pane's
    data-served equals its data-told), then for the rest of that rerun."""
    page.wait_for_function("""() => {
        const pair = document.querySelector('.cxr-pair');
        return pair && (!pair.dataset.told || pair.dataset.told === pair.dataset.served);
    }""", timeout=timeout_ms)
    wait_until_idle(page)


def settle(page) -> None:
    """Wait for the redraw, then park the mouse where it opens no tooltip (for screenshots)."""
    wait_until_idle(page)
    page.mouse.move(900, 12)
    page.wait_for_timeout(800)
