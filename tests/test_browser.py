"""End to end in a real browser: the viewer on loopback, driven in Debian's Chromium with Playwright.

The tests share one page and run in file order, as one reader's session would.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from functools import partial

import numpy as np
import pytest
from browser_support import (
    BROWSER_TEST,
    COUNT_MESSAGES_TO_SERVER,
    FINDING_ROWS,
    OVERLAY_IMAGE,
    OVERLAY_PANE,
    PANE_IMAGES,
    launch_chromium,
    messages_to_server,
    open_sample,
    overlay_source,
    running_viewer,
    toggle_layer,
    wait_for_server,
    wait_until_idle,
)

from xai_core.labels import display_name
from xai_core.model import default_card

pytestmark = BROWSER_TEST
playwright_api = pytest.importorskip("playwright.sync_api")

@pytest.fixture(scope="module")
def page():
    with running_viewer() as (url, _process), playwright_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.add_init_script(COUNT_MESSAGES_TO_SERVER)
        page.goto(url)
        yield page
        browser.close()


def _problems(page) -> list[str]:
    return page.locator("[data-testid='stAlertContentError']").all_inner_texts()


def _shown(page) -> str:
    """The pathology on the image pane's map picker (its one control for it)."""
    return page.locator("select[data-map='label'] option:checked").text_content()


def _summary(page) -> str:
    """The line under the table that says which pathology is shown and what its flag means."""
    return page.get_by_text("Pathology shown:").inner_text()


def _summary_follows(page, name: str) -> None:
    """Wait for the server's rerun to bring the summary (and the panels beside it) to `name`."""
    wait_for_server(page)
    playwright_api.expect(page.get_by_text("Pathology shown:")).to_have_text(
        re.compile(rf"^Pathology shown: {re.escape(name)} ·"), timeout=60_000)
    wait_until_idle(page)


def _settings_recorded(page, **expected) -> dict:
    """The JSON record's settings once they hold `expected` (the last of several switches may still be on its way)."""
    for _ in range(30):
        settings = json.loads(_download(page, "Result (JSON)"))["settings"]
        if all(settings[key] == value for key, value in expected.items()):
            break
        page.wait_for_timeout(1000)
    return settings


OVERLAY_TITLE = ".cxr-pair [data-pane='overlay'] figcaption"


def _overlay_title(page) -> str:
    return page.locator(OVERLAY_TITLE).text_content()


def _download(page, button: str):
    with page.expect_download() as download:
        page.get_by_role("button", name=button).click()
    return download.value.path().read_bytes()


def test_sample_shows_14_probabilities_and_the_overlay(page):
    open_sample(page)
    wait_until_idle(page)
    assert page.locator(FINDING_ROWS).count() == 14
    assert page.get_by_text("Research and education use only").is_visible()
    version = json.loads(default_card().read_text())["model_version"]
    assert page.get_by_text(f"Model {version}").is_visible()
    assert page.locator(PANE_IMAGES).count() == 2  # original and overlay
    assert _overlay_title(page) == f"{_shown(page)} · Grad-CAM++"
    assert _summary(page).startswith(f"Pathology shown: {_shown(page)} ·")
    assert _marked(page) == [_shown(page)]
    assert page.locator("[data-testid='stSlider']").count() == 0  # opacity and threshold: the pane's only
    assert page.locator("[data-testid='stSelectbox']").filter(has_text="Pathology").count() == 0
    assert page.locator("[data-testid='stButtonGroup']").count() == 0  # no layer pills beside the pane's boxes
    assert _problems(page) == []


def _row_names(page) -> list[str]:
    return page.locator(f"{FINDING_ROWS} .cxr-name").all_inner_texts()


def _marked(page) -> list[str]:
    """The pathologies whose rows the table marks as shown."""
    return page.locator(f"{FINDING_ROWS}[aria-selected='true'] .cxr-name").all_inner_texts()


def test_pressing_a_table_row_shows_that_pathology(page):
    name = _row_names(page)[4]  # the fifth most probable
    assert _shown(page) != name
    page.locator(FINDING_ROWS).nth(4).click()
    wait_until_idle(page)
    assert _shown(page) == name and _marked(page) == [name]
    assert _overlay_title(page).startswith(name)
    assert page.get_by_text(f"Raw attention strength for {name}").is_visible()
    page.locator(FINDING_ROWS).nth(4).click()  # pressing the row shown again keeps it shown
    wait_until_idle(page)
    assert _shown(page) == name and _marked(page) == [name]


def test_the_table_is_used_from_the_keyboard(page):
    names = _row_names(page)
    shown = _shown(page)
    page.locator(f"{FINDING_ROWS}[aria-selected='true']").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    wait_until_idle(page)
    following = names[names.index(shown) + 1]
    assert _shown(page) == following and _marked(page) == [following]
    assert _overlay_title(page).startswith(following)


# In the page, in one task (no server reply can arrive meanwhile): pick a pathology on the pane's map picker and say
# what the overlay pane and the table show right after, and how many messages went to the server.
PICK_IN_PANE = """(label) => {
    const picker = document.querySelector("select[data-map='label']");
    const sent = window.__messagesToServer;
    picker.value = label;
    picker.dispatchEvent(new Event('change'));
    const marked = [...document.querySelectorAll(".cxr-findings tr[aria-selected='true']")]
        .map((row) => row.dataset.label);
    return [document.querySelector("[data-pane='overlay']").dataset.drawn, marked, window.__messagesToServer - sent];
}"""


def test_a_pathology_picked_in_the_pane_is_marked_in_the_table_at_once_and_the_panels_follow(page):
    shown, label = _shown(page), page.locator("select[data-map='label']").input_value()
    assert _marked(page) == [shown]
    other = "Edema" if label != "Edema" else "Hernia"
    before = messages_to_server(page)
    drawn, marked, sent = page.evaluate(PICK_IN_PANE, other)
    assert json.loads(drawn)[1] == other and marked == [other] and sent == 0  # drawn and marked before telling
    _summary_follows(page, display_name(other))  # the server was told: its rerun brings the panels
    assert messages_to_server(page) > before
    assert page.get_by_text(f"Raw attention strength for {display_name(other)}").is_visible()
    record = json.loads(_download(page, "Result (JSON)"))
    assert record["settings"]["pathology_shown"] == other  # what the downloads and the panels act on
    page.locator(f"{FINDING_ROWS}[data-label='{label}']").click()  # and back, from the table
    _summary_follows(page, shown)
    assert _shown(page) == shown and _marked(page) == [shown]


def test_hovering_the_overlay_gives_the_attention_there(page):
    view = page.locator(".cxr-view").nth(1).bounding_box()
    page.mouse.move(view["x"] + view["width"] * 0.5, view["y"] + view["height"] * 0.5)
    tip = page.locator(".cxr-tip")
    tip.get_by_text("of this map's maximum").wait_for(timeout=10_000)
    assert "raw" in tip.text_content()
    page.mouse.move(5, 5)
    assert tip.is_hidden()


def _zoom(page) -> tuple[str, str]:
    """The zoom factor and the overlay picture's placement."""
    return (page.locator(".cxr-pair").get_attribute("data-zoom"),
            page.locator(OVERLAY_IMAGE).evaluate("stack => stack.style.transform"))


def test_zoom_and_pan_are_linked_and_survive_a_new_map(page):
    view = page.locator(".cxr-view").nth(1).bounding_box()
    page.mouse.move(view["x"] + view["width"] * 0.6, view["y"] + view["height"] * 0.4)
    for _ in range(3):
        page.mouse.wheel(0, -100)
    page.mouse.down()
    page.mouse.move(view["x"] + view["width"] * 0.5, view["y"] + view["height"] * 0.5, steps=4)
    page.mouse.up()
    zoom, placement = _zoom(page)
    assert float(zoom) > 1.5
    original = page.locator(PANE_IMAGES).first.evaluate("stack => stack.style.transform")
    assert original == placement  # both panes show the same part of the image
    before = overlay_source(page)
    toggle_layer(page, "outline")
    assert overlay_source(page) != before
    assert _zoom(page) == (zoom, placement)  # the reader stays where they were
    page.get_by_role("button", name="Reset view").click()
    assert _zoom(page)[0] == "1.000"
    toggle_layer(page, "outline")


def test_switching_overlay_modes(page):
    legend = page.locator("[data-testid='stMarkdownContainer']").filter(has_text="high (")
    assert legend.count() == 1  # the heatmap's high / medium / low attention legend
    toggle_layer(page, "outline")
    toggle_layer(page, "saliency")
    # The saliency picture arrives after the rerun that turned its layer on: wait for the pane to draw it.
    playwright_api.expect(page.locator(OVERLAY_TITLE)).to_have_text(re.compile(r"Grad-CAM\+\+ \+ saliency \+ outline$"), timeout=60_000)
    toggle_layer(page, "heatmap")
    playwright_api.expect(page.locator(OVERLAY_TITLE)).to_have_text(re.compile(r"· saliency \+ outline$"), timeout=60_000)
    assert page.locator("[data-testid='stMarkdownContainer']").filter(has_text="high (").count() == 0
    assert page.get_by_text("gradient saliency", exact=False).first.is_visible()
    assert _problems(page) == []


def test_the_json_download_records_the_result(page, chest_dicom):
    record = json.loads(_download(page, "Result (JSON)"))
    assert len(record["findings"]) == 14
    assert record["model"]["version"] == json.loads(default_card().read_text())["model_version"]
    assert record["image"]["sha256"] == hashlib.sha256(chest_dicom.read_bytes()).hexdigest()
    assert display_name(record["settings"]["pathology_shown"]) == _shown(page)
    assert set(record["settings"]["layers"]) == {"Gradient saliency", "Attention outline"}
    assert "not for diagnosis" in record["disclaimer"].lower()
    # The table's ▲ column and the record's flags at the point flagged at are the same findings (xai_core/findings.py).
    assert record["flagged_at"] == "high_specificity"
    marks = dict(zip(_row_names(page), page.locator(f"{FINDING_ROWS} .cxr-above").all_inner_texts(), strict=True))
    flags = {entry["name"]: entry["at_flagged_point"]["flagged"] for entry in record["findings"]}
    assert marks == {name: "–" if flag is None else "▲" if flag else "" for name, flag in flags.items()}


def test_the_overlay_download_is_at_full_resolution(page):
    from PIL import Image

    overlay = Image.open(io.BytesIO(_download(page, "Overlay (PNG)")))
    assert overlay.format == "PNG" and overlay.size == (1841, 1955)
    assert "not for diagnosis" in overlay.text["Disclaimer"].lower()


def test_a_corrupt_upload_shows_its_message_and_the_app_keeps_working(page, tmp_path):
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    page.locator("input[type='file']").set_input_files(str(broken))
    page.get_by_text("could not be opened").wait_for(timeout=60_000)
    assert len(_problems(page)) == 1
    assert not page.get_by_text("broken.dcm").is_visible()  # file names can carry the patient's name
    assert page.locator(PANE_IMAGES).count() == 0
    before = messages_to_server(page)
    open_sample(page)  # the film shown before the broken one: its pane is drawn anew
    wait_until_idle(page)
    assert _problems(page) == []
    assert page.locator(FINDING_ROWS).count() == 14
    # Only the press reached the server: the new pane got the pictures with its first data. A pane that asks for
    # them while the page is still being drawn starts a second run that Streamlit's page cannot follow (blank page).
    assert messages_to_server(page) == before + 1


# --- the display window: drawn in the browser, never the model's input --------------------------------------------

RADIOGRAPH = ".cxr-pair canvas.cxr-base"  # in the original pane, then under the overlay
OVERLAY_LAYERS = ".cxr-pair [data-pane='overlay'] canvas.cxr-layer:not([hidden])"
WINDOW_PRESET = "select[data-window='preset']"


def _canvas(page, selector: str, index: int = 0):
    import base64

    from PIL import Image

    url = page.locator(selector).nth(index).evaluate("canvas => canvas.toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA")).astype(int)


def _result_shown(page):
    """Everything the model's result puts on the screen: the table's rows, the overlay pane's layers and name."""
    layers = [hashlib.sha256(_canvas(page, OVERLAY_LAYERS, index).tobytes()).hexdigest()
              for index in range(page.locator(OVERLAY_LAYERS).count())]
    return page.locator(FINDING_ROWS).all_inner_texts(), layers, overlay_source(page)


def _open_upload(page, path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    page.locator("input[type='file']").set_input_files(str(path))
    page.wait_for_function(f"() => (document.querySelector(\"{OVERLAY_PANE}\")?.dataset.drawn || '').includes('{digest}')",
                           timeout=180_000)
    wait_until_idle(page)


def _change_window(page, action) -> None:
    """Change the display window (action) and wait until the pane has drawn it."""
    before = page.locator(".cxr-pair").get_attribute("data-window")
    action()
    page.wait_for_function("(before) => document.querySelector('.cxr-pair').dataset.window !== before", arg=before)


@pytest.mark.parametrize("film", ["DICOM", "8-bit PNG", "16-bit PNG"])
def test_the_display_window_changes_the_picture_and_nothing_of_the_result(page, film, chest_dicom, nih_test_images,
                                                                          chest_png16):
    from xai_core.display_window import display_values
    from xai_core.imaging import read_xray
    from xai_core.overlay import display_shape

    path = {"DICOM": chest_dicom, "8-bit PNG": nih_test_images[0], "16-bit PNG": chest_png16}[film]
    if film == "DICOM":
        open_sample(page)
        wait_until_idle(page)
    else:
        _open_upload(page, path)
    xray = read_xray(path)
    values = display_values(xray, display_shape(xray.pixels.shape))
    assert page.locator(WINDOW_PRESET).input_value() == "File's window"
    assert page.locator(".cxr-pair").get_attribute("data-codes") is None  # not sent with the film
    result, files_picture, sent = _result_shown(page), _canvas(page, RADIOGRAPH), messages_to_server(page)
    for preset in ("Lung", "Bone"):  # the first is drawn once the pane has asked for the film's codes and got them
        _change_window(page, partial(page.select_option, WINDOW_PRESET, preset))
        expected = np.round(values.render(values.presets[preset]) * 255)
        assert np.abs(_canvas(page, RADIOGRAPH)[..., 0] - expected).max() <= 1, preset  # as the engine windows
        assert np.array_equal(_canvas(page, RADIOGRAPH, 1), _canvas(page, RADIOGRAPH))  # both panes
    _change_window(page, page.locator("[data-window='invert']").check)
    expected = np.round(values.render(values.presets["Bone"], invert=True) * 255)
    assert np.abs(_canvas(page, RADIOGRAPH)[..., 0] - expected).max() <= 1
    page.get_by_role("button", name="File's window").click()
    assert page.locator(".cxr-pair").get_attribute("data-window") == "file"
    assert np.array_equal(_canvas(page, RADIOGRAPH), files_picture)
    wait_until_idle(page)
    assert messages_to_server(page) == sent + 1  # the pane asked for the codes once; no window reached the server
    assert _result_shown(page) == result  # the same probabilities, flags and maps


def test_the_window_and_its_reset_survive_a_rerun(page):
    page.select_option(WINDOW_PRESET, "Lung")
    lung = page.locator(".cxr-pair").get_attribute("data-window")
    sent = messages_to_server(page)
    toggle_layer(page, "outline")
    assert messages_to_server(page) > sent  # that was a rerun
    assert page.locator(WINDOW_PRESET).input_value() == "Lung"
    assert page.locator(".cxr-pair").get_attribute("data-window") == lung
    page.get_by_role("button", name="File's window").click()
    toggle_layer(page, "outline")
    assert page.locator(WINDOW_PRESET).input_value() == "File's window"
    assert page.locator(".cxr-pair").get_attribute("data-window") == "file"


def test_the_image_pane_draws_each_switch_at_once_and_the_server_acts_on_it_without_redrawing_it(page):
    open_sample(page)
    wait_until_idle(page)
    for layer, on in (("heatmap", True), ("saliency", False), ("outline", False)):
        page.locator(f"[data-map='{layer}']").set_checked(on)
        wait_for_server(page)
    before = _result_shown(page)
    label_picker = page.locator("select[data-map='label']")
    other = label_picker.locator("option").nth(3)
    label, name = other.get_attribute("value"), other.text_content()
    label_picker.select_option(label)
    assert _overlay_title(page).startswith(f"{name} · Grad-CAM++")  # drawn in the browser, no reply awaited
    switched = _result_shown(page)
    assert json.loads(switched[2])[1] == label and switched[1] != before[1]  # another map drawn
    drawn_at = page.locator(OVERLAY_PANE).get_attribute("data-drawn-at")
    _summary_follows(page, name)
    assert page.locator(OVERLAY_PANE).get_attribute("data-drawn-at") == drawn_at  # the server's answer: no repaint
    page.locator("[data-map='outline']").check()
    page.locator("input[data-map='threshold']").fill("0.3")
    page.locator("input[data-map='opacity']").fill("0.8")
    drawn = json.loads(overlay_source(page))
    assert drawn[1] == label and drawn[3:5] == [0.8, 0.3] and {"heatmap", "outline"} <= set(drawn[2])
    assert _overlay_title(page).startswith(f"{name} · Grad-CAM++") and "outline" in _overlay_title(page)
    settings = _settings_recorded(page, opacity=0.8, outline_threshold=0.3)  # what the server now acts on
    assert settings["pathology_shown"] == label and settings["opacity"] == 0.8 and settings["outline_threshold"] == 0.3
    assert settings["layers"] == ["Grad-CAM++ heatmap", "Attention outline"]
    assert _summary(page).startswith(f"Pathology shown: {name} ·") and _marked(page) == [name]
    assert _result_shown(page)[0] == before[0]  # the findings are the model's, unchanged


def test_the_panes_outline_is_drawn_where_the_engine_draws_it(page, model, chest_dicom):
    """The pane finds the outline's contours itself, on the heatmap's coarser grid, and strokes them: the same lines
    as the engine's outline at the pane's size (what the downloads draw), to within two pixels either way."""
    from scipy import ndimage

    from xai_core.display import OUTLINE_RGB
    from xai_core.explanation import explain, normalized_cam
    from xai_core.imaging import read_xray
    from xai_core.overlay import render_overlay

    open_sample(page)
    wait_until_idle(page)
    explanation = explain(model, read_xray(chest_dicom))
    page.locator("[data-map='outline']").check()
    for label, threshold in (("Cardiomegaly", "0.5"), ("Effusion", "0.3"), ("Pneumothorax", "0.8")):
        page.locator("select[data-map='label']").select_option(label)
        page.locator("input[data-map='threshold']").fill(threshold)
        assert json.loads(overlay_source(page))[1] == label
        pane = _canvas(page, f"{OVERLAY_PANE} canvas[data-layer='outline']")[..., 3] >= 128
        map01 = normalized_cam(explanation.raw_cams[explanation.labels.index(label)], pane.shape)
        engine = (render_overlay(np.zeros(pane.shape), outline_map=map01, threshold=float(threshold))
                  == OUTLINE_RGB).all(axis=-1)
        assert engine.sum() > 1000 and 0.7 < pane.sum() / engine.sum() < 1.4, (label, pane.sum(), engine.sum())
        for drawn, other in ((pane, engine), (engine, pane)):
            assert np.mean(ndimage.distance_transform_edt(~other)[drawn] <= 2) > 0.99, label
    page.locator("input[data-map='threshold']").fill("0.5")
    toggle_layer(page, "outline")


# In the page: the pathology of every overlay the pane draws from now on, in order.
RECORD_DRAWN_LABELS = f"""() => {{
    window.__drawnLabels = [];
    new MutationObserver(() => {{
        const drawn = document.querySelector("{OVERLAY_PANE}").dataset.drawn;
        if (drawn) window.__drawnLabels.push(JSON.parse(drawn)[1]);
    }}).observe(document.querySelector("{OVERLAY_PANE}"), {{attributes: true, attributeFilter: ['data-drawn']}});
}}"""


# In the page: pick the first pathology in the pane's picker, and the second in the frame the pane tells the server.
SWITCH_AS_THE_SERVER_IS_TOLD = """async ([first, second]) => {
    const picker = document.querySelector("select[data-map='label']");
    const pick = (label) => { picker.value = label; picker.dispatchEvent(new Event('change')); };
    const sent = window.__messagesToServer;
    pick(first);
    while (window.__messagesToServer === sent) await new Promise(requestAnimationFrame);
    pick(second);
}"""


def test_the_servers_reply_to_an_earlier_switch_leaves_the_readers_latest_on_screen(page):
    """The reader switches again while the server still runs for the switch before: its reply to the earlier one
    does not bring that map back (it did, for a moment, before the pane kept the choices it had told)."""
    picker = page.locator("select[data-map='label']")
    first, second = [option.get_attribute("value") for option in picker.locator("option").all()[5:7]]
    page.evaluate(RECORD_DRAWN_LABELS)
    page.evaluate(SWITCH_AS_THE_SERVER_IS_TOLD, [first, second])
    wait_for_server(page)
    drawn = page.evaluate("window.__drawnLabels")
    assert drawn[:2] == [first, second] and set(drawn[2:]) <= {second}, drawn
    assert _shown(page) == display_name(second) and json.loads(overlay_source(page))[1] == second


def test_maps_revealed_on_a_non_chest_image_show_the_film_in_a_pane_drawn_anew(page, dicom_file):
    """The pane moves out of the greyed-out container: a new pane, which gets the pictures with its first data."""
    path = dicom_file("RG3_UNCI.dcm")  # a radiograph of a tibia: the strong warning
    _open_upload(page, path)
    assert page.locator(".st-key-maps_withheld .cxr-pair").count() == 1
    page.evaluate("() => { document.querySelector('.cxr-pair').dataset.before = 'reveal'; }")
    before = messages_to_server(page)
    page.get_by_text("Show the predictions and maps anyway").click()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    page.wait_for_function(f"""() => !document.querySelector('.st-key-maps_withheld')
        && (document.querySelector("{OVERLAY_PANE}")?.dataset.drawn || '').includes('{digest}')
        && !document.querySelector('.cxr-pair.cxr-loading')""", timeout=180_000)
    wait_until_idle(page)
    film = _canvas(page, RADIOGRAPH)
    assert film[..., 3].min() == 255 and film[..., 0].std() > 10  # the film itself, not an empty canvas
    assert page.locator(".cxr-pair[data-before]").count() == 0  # a pane drawn anew
    assert messages_to_server(page) == before + 1  # the toggle only: the new pane did not have to ask
    assert [problem for problem in _problems(page) if "does not look like a frontal chest" not in problem] == []
