"""Page flows of the viewer with Streamlit's AppTest, on the checkpoint the viewer loads by default and real images.

AppTest cannot press a row of the findings table or use the image pane's controls (browser components): those are
covered in test_browser.py. Here the pathology and the overlay are set in the session state, where the table's and
the pane's callbacks put them (_show).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from app.image_pane import CODES_ASKED
from app.method_picker import JOB, MAPS, OPENED
from xai_core import explanation as explanation_module
from xai_core import serving
from xai_core.card import read_card
from xai_core.labels import PATHOLOGIES, display_name
from xai_core.model import DEFAULT_CARD, default_card

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


@pytest.fixture
def forward_passes(monkeypatch) -> list[str]:
    """The sha256 of every image the page asks the model about (the page imports serving.explained() on each run;
    the sample's explanation is made at start, so its forward pass is not the page's: tests/test_serving.py)."""
    serving.shared_model()  # loaded and warmed up on the sample before counting (xai_core.serving)
    st.cache_data.clear()
    calls: list[str] = []
    original = serving.explained

    def counting(xray):
        calls.append(xray.sha256)
        return original(xray)

    monkeypatch.setattr(serving, "explained", counting)
    return calls


@pytest.fixture
def saliency_calls(monkeypatch) -> list[str]:
    """The label of every gradient saliency map the page computes."""
    calls: list[str] = []
    original = explanation_module.saliency

    def counting(model, xray, label, **options):
        calls.append(label)
        return original(model, xray, label, **options)

    monkeypatch.setattr(explanation_module, "saliency", counting)
    return calls


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception
    return at


def _press(at: AppTest, label: str) -> AppTest:
    next(button for button in at.button if button.label == label).click().run()
    return at


def _opened_sample() -> AppTest:
    at = _press(_page(), "Open sample")
    _assert_fine(at)
    return at


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader[0].upload(name, data, "application/octet-stream").run()
    assert not at.exception
    return at


def _show(at: AppTest, label: str | None = None, **view) -> AppTest:
    """As the table or the image pane tell the page: show `label`, with the overlay's layers, opacity, threshold."""
    if label is not None:
        at.session_state["pathology"] = label
    if view:
        at.session_state["view"] = {"layers": ["heatmap"], "opacity": 0.5, "threshold": 0.5, **view}
    at.run()
    _assert_fine(at)
    return at


def _assert_fine(at: AppTest) -> None:
    assert not at.exception
    assert [error.value for error in at.error] == []


def _component(at: AppTest, name: str) -> dict | None:
    """What the page gives one of its browser components (app/NAME.js), or None when it is not drawn."""
    drawn = [element for element in at.get("bidi_component")
             if element.proto.component_name == f"chest_xray_viewer.{name}"]
    return json.loads(drawn[0].proto.json) if drawn else None


def _image_pair(at: AppTest) -> dict | None:
    return _component(at, "image_pair")


def _findings(at: AppTest) -> list[dict]:
    """The findings table's rows, as the page gives them (app/pathology_table.js)."""
    return _component(at, "pathology_table")["rows"]


def _overlay(at: AppTest) -> tuple[str, str]:
    """(overlay title, overlay image as a data URI)."""
    panes = _image_pair(at)
    return panes["captions"][1], panes["overlay"]


def _page_text(at: AppTest) -> str:
    kinds = ("markdown", "caption", "error", "warning", "info", "table")
    return "\n".join(str(element.value) for kind in kinds for element in getattr(at, kind))


def test_first_page_offers_the_sample_and_says_not_for_diagnosis():
    at = _page()
    assert any("not for diagnosis" in warning.value.lower() for warning in at.warning)
    assert {"Open the sample radiograph", "Open sample"} <= {button.label for button in at.button}
    assert at.file_uploader[0].allowed_type == []  # any file name: DICOM exports often have no suffix
    assert any(caption.value.startswith("Model ") for caption in at.caption)  # the model version
    assert _image_pair(at) is None  # no image yet


def test_the_first_screen_button_opens_the_sample(forward_passes, chest_dicom):
    at = _press(_page(), "Open the sample radiograph")
    _assert_fine(at)
    assert len(_findings(at)) == 14
    assert forward_passes == [hashlib.sha256(chest_dicom.read_bytes()).hexdigest()]


def test_sample_shows_14_sorted_probabilities_flagged_at_the_default_point_with_their_evidence(forward_passes):
    at = _opened_sample()
    rows, card = _findings(at), read_card(default_card())  # the card the page loads
    assert sorted(row["label"] for row in rows) == sorted(PATHOLOGIES)
    assert all(row["name"] == display_name(row["label"]) for row in rows)
    probabilities = [row["probability"] for row in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    assert at.radio(key="operating_point").value == "high_specificity"  # the default point
    for row in rows:
        point = card.operating_point(row["label"], "high_specificity")
        assert row["flagged"] == (None if point is None else row["probability"] >= point.threshold), row
        verdict = card.verdict(row["label"])
        assert row["evidence"] == (verdict.kind if verdict else "none") and row["trusted"] == (verdict.kind == "works")
    top = rows[0]["label"]
    assert at.session_state["pathology"] == top  # a new image opens on its most probable finding
    assert _component(at, "pathology_table")["shown"] == top
    title, _ = _overlay(at)
    assert title == f"{display_name(top)} · Grad-CAM++"
    panes = _image_pair(at)
    original = Image.open(io.BytesIO(base64.b64decode(panes["original"].split(",", 1)[1])))
    assert list(original.size) == panes["size"] and max(original.size) == 1024  # the display size
    assert panes["size"][1] / panes["size"][0] == pytest.approx(1955 / 1841, rel=0.01)  # the sample's shape
    # All 14 raw maps travel with the first result, so the pane switches pathology without asking the server.
    maps = panes["maps"]
    assert set(maps) == set(PATHOLOGIES)
    side = read_card(default_card()).input.size // 32  # layer4's grid at the model's input size
    grids = {name: np.frombuffer(base64.b64decode(entry["raw"]), "<f4").reshape(entry["rows"], entry["cols"])
             for name, entry in maps.items()}
    assert all(grid.shape == (side, side) and (grid >= 0).all() for grid in grids.values())
    assert grids[top].max() > 0 and not np.array_equal(grids[top], grids[rows[-1]["label"]])
    assert any("Map scaling: per-image min–max" in caption.value and "Raw attention strength" in caption.value
               for caption in at.caption)
    assert any("Evidence on NIH test films:" in element.value for element in at.markdown)
    assert len(forward_passes) == 1


def test_each_map_says_how_often_the_labels_maps_hit_radiologists_boxes_and_how_much_they_vary(forward_passes):
    at = _opened_sample()
    card = read_card(DEFAULT_CARD).report("nih_test")
    pneumonia = card["alignment"]["per_finding"]["Pneumonia"]
    _show(at, "Pneumonia")
    line = next(caption.value for caption in at.caption if caption.value.startswith("NIH test films"))
    auroc, boxes = card["labels"]["Pneumonia"]["auroc"], pneumonia["model"]["n"]
    hits = round(pneumonia["model"]["pointing_hit"] * boxes)
    for figure in (f"AUROC {auroc:.2f}", f"inside the radiologists' box: {hits} of {boxes}",
                   f"random map {pneumonia['random']['pointing_hit']:.0%}",
                   f"average Pneumonia map, the same on every film, {pneumonia['average_map']['pointing_hit']:.0%}"):
        assert figure in line, figure
    resemblance = card["map_resemblance"]["per_label"]
    assert f"average Pneumonia map {resemblance['Pneumonia']:.2f} (1 = the same map on every film)" in line
    unboxed = next(label for label in PATHOLOGIES if label not in card["alignment"]["per_finding"])
    _show(at, unboxed)
    line = next(caption.value for caption in at.caption if caption.value.startswith("NIH test films"))
    assert "No radiologist boxes for this finding" in line
    assert f"average {display_name(unboxed)} map {resemblance[unboxed]:.2f}" in line
    assert len(forward_passes) == 1


def test_toggling_pathology_and_overlays_never_repeats_the_forward_pass(forward_passes):
    at = _opened_sample()
    _, overlay = _overlay(at)
    other = _findings(at)[5]["label"]
    assert _image_pair(at)["original"] and _image_pair(at)["codes"] is None  # the radiograph, with the result
    _show(at, other)
    title, changed = _overlay(at)
    assert title.startswith(display_name(other)) and changed != overlay
    assert _image_pair(at)["original"] is None and _image_pair(at)["codes"] is None  # the pane has it already
    at.session_state[CODES_ASKED] = _image_pair(at)["image"]  # as the pane asks once the reader picks a window
    _show(at)
    assert _image_pair(at)["original"] is None and _image_pair(at)["codes"].startswith("data:image/png;base64,")
    _show(at)
    assert _image_pair(at)["codes"] is None  # sent once
    assert _component(at, "pathology_table")["shown"] == other  # the table marks the row of the map shown
    summary = next(element.value for element in at.markdown if element.value.startswith("Pathology shown: "))
    assert summary.startswith(f"Pathology shown: **{display_name(other)}**")
    for layers in (["outline"], ["saliency", "outline"], []):
        _show(at, layers=layers)
        assert _overlay(at)[1] != changed
        changed = _overlay(at)[1]
    assert _overlay(at)[0].endswith("no overlay")
    _show(at, layers=["heatmap"], opacity=0.8, threshold=0.3)
    at.selectbox(key="colormap").set_value("viridis").run()
    _assert_fine(at)
    assert _overlay(at)[1] | {"colormap": "viridis", "opacity": 0.8, "threshold": 0.3} == _overlay(at)[1]
    assert at.session_state["pathology"] == other  # the choice survives every control
    assert len(forward_passes) == 1


def test_saliency_is_computed_on_demand_and_cached(forward_passes, saliency_calls):
    at = _opened_sample()
    assert saliency_calls == []
    _show(at, layers=["saliency"])
    assert saliency_calls == [at.session_state["pathology"]]
    _show(at, layers=["saliency"], opacity=0.3)
    _show(at, layers=["saliency", "outline"])
    assert len(saliency_calls) == 1 and len(forward_passes) == 1


def test_the_method_comparison_computes_no_map_until_the_reader_opens_it(forward_passes):
    """Streamlit runs a plain expander's body on every run, closed or not: the comparison panel runs only open, and
    its maps are kept per (image, pathology, method) once it was."""
    at = _opened_sample()
    label = _findings(at)[3]["label"]
    _show(at, label)  # another pathology, another run: still nothing
    assert MAPS not in at.session_state and JOB not in at.session_state
    assert [box for box in at.selectbox if box.label == "Method"] == []
    at.session_state[OPENED] = True  # as the reader's click on the panel's title tells the page
    at.run()
    _assert_fine(at)
    assert [box.value for box in at.selectbox if box.label == "Method"] == ["grad_cam_plus_plus", "grad_cam"]
    assert list(at.session_state[MAPS]) == [(at.session_state["image"][2], label, "grad_cam")]
    agreement = [element.value for element in at.markdown if element.value.startswith("**Grad-CAM++ and Grad-CAM, ")]
    assert agreement and display_name(label) in agreement[0]
    at.selectbox(key="method_right").set_value("cam").run()
    at.session_state[OPENED] = False
    at.run()
    _assert_fine(at)
    assert [box for box in at.selectbox if box.label == "Method"] == [] and len(at.session_state[MAPS]) == 2
    at.session_state[OPENED] = True
    at.run()
    assert [box.value for box in at.selectbox if box.label == "Method"] == ["grad_cam_plus_plus", "cam"]
    assert len(forward_passes) == 1  # the page's own explanation is never repeated for the panel


def test_a_corrupt_upload_shows_its_message_and_the_next_image_works(forward_passes, chest_dicom):
    at = _page()
    good = chest_dicom.read_bytes()
    _upload(at, "broken.dcm", good[: len(good) // 3])
    messages = [error.value for error in at.error]
    assert len(messages) == 1 and "could not be opened" in messages[0] and "DICOM" in messages[0]
    assert _image_pair(at) is None and forward_passes == []
    _press(at, "Open sample")
    _assert_fine(at)
    assert len(_findings(at)) == 14


def test_an_unexpected_failure_shows_a_generic_message_only(monkeypatch):
    st.cache_data.clear()

    def failing(xray):
        raise RuntimeError("PatientName=Doe^Jane at /secret/path")

    monkeypatch.setattr(serving, "explained", failing)
    at = _press(_page(), "Open sample")
    assert not at.exception
    (message,) = [error.value for error in at.error]
    assert message.startswith("Something went wrong") and "Doe" not in _page_text(at) and "secret" not in _page_text(at)
    monkeypatch.undo()
    _press(at, "Open sample")
    _assert_fine(at)


def test_an_nih_png_upload_is_explained_and_its_file_name_never_shown(forward_passes, nih_test_images):
    at = _upload(_page(), "Doe_Jane_MRN7731.png", nih_test_images[0].read_bytes())
    _assert_fine(at)
    assert len(_findings(at)) == 14 and len(forward_passes) == 1
    assert "Doe" not in _page_text(at) and "MRN" not in _page_text(at)
    assert any(caption.value.startswith("Showing: Uploaded image · PNG") for caption in at.caption)
    assert not [slider for slider in at.slider if slider.label.startswith("Window")]  # no window for PNG


def test_the_model_reads_the_dicom_through_the_files_window_and_the_page_has_no_window_to_rerun(forward_passes):
    """The display window lives in the image pane (app/image_pair/; test_browser.py changes it): no widget of the
    page can rerun the model on windowed pixels."""
    at = _opened_sample()
    assert any("The model reads the file through level 15000, width 30000 (window tags)" in caption.value
               for caption in at.caption)
    assert not [slider for slider in at.slider if "window" in slider.label.lower()]
    assert not [button for button in at.button if "window" in button.label.lower()]
    assert len(forward_passes) == 1
    assert at.expander and "MONOCHROME1" in _page_text(at) and "CHEST" in _page_text(at)


def _only_the_strong_warning(at: AppTest) -> None:
    """Not a chest film: the page runs on, with the strong out-of-distribution warning as its only error."""
    assert not at.exception
    assert [error.value.startswith("**This does not look like a frontal chest radiograph.**") for error in at.error] == [True]


def test_dicom_notices_are_shown(dicom_file):
    at = _upload(_page(), "series", dicom_file("emri_small.dcm").read_bytes())  # no suffix, as PACS exports
    _only_the_strong_warning(at)  # an MR series
    assert any("Multi-frame DICOM: showing frame 1 of 10." in info.value for info in at.info)


def test_a_colour_dicom_has_no_window_controls(dicom_file):
    at = _upload(_page(), "colour.dcm", dicom_file("SC_rgb.dcm").read_bytes())
    _only_the_strong_warning(at)  # colour bars, not a radiograph
    assert any("converted to greyscale" in info.value for info in at.info)
    assert not [slider for slider in at.slider if slider.label.startswith("Window")]


def test_overlay_and_result_can_be_downloaded():
    at = _opened_sample()
    assert {"Overlay (PNG)", "Result (JSON)"} <= {button.label for button in at.download_button}  # and the panels' own


def _withheld(at: AppTest) -> bool:
    """Whether the results are drawn inside the greyed-out container of the strong warning (app/main.py)."""
    def inside(node, withheld: bool) -> bool:
        withheld = withheld or str(getattr(getattr(node, "proto", None), "id", "")).endswith("-maps_withheld")
        if getattr(getattr(node, "proto", None), "component_name", "") == "chest_xray_viewer.image_pair":
            return withheld
        children = getattr(node, "children", None)
        return isinstance(children, dict) and any(inside(child, withheld) for child in children.values())

    return inside(at._tree, False)


def test_a_non_chest_image_greys_out_the_maps_until_the_reader_chooses_to_see_them(dicom_file):
    if read_card(default_card()).out_of_distribution is None:
        pytest.skip("this checkpoint has no out-of-distribution statistics")
    at = _upload(_page(), "tibia.dcm", dicom_file("RG3_UNCI.dcm").read_bytes())  # a radiograph of a tibia
    assert not at.exception
    assert any("does not look like a frontal chest radiograph" in error.value for error in at.error)
    assert _image_pair(at) is not None and _withheld(at)  # drawn, but greyed out and inert
    reveal = next(toggle for toggle in at.toggle if toggle.label == "Show the predictions and maps anyway")
    assert reveal.value is False
    reveal.set_value(True).run()
    assert not at.exception
    assert _image_pair(at) is not None and not _withheld(at)
    assert len(_findings(at)) == 14
    _press(at, "Open sample")  # a frontal chest film: no warning at either level, nothing withheld
    _assert_fine(at)
    assert not any("chest" in warning.value.lower() and "differs" in warning.value for warning in at.warning)
    assert not _withheld(at)


def test_the_operating_point_switch_changes_the_flags_and_says_what_the_point_means(forward_passes):
    at = _opened_sample()
    card = read_card(default_card())
    if card.operating_points is None:
        pytest.skip("this checkpoint's card has no operating points")
    shown = next(label for label in PATHOLOGIES if card.operating_point(label, "high_sensitivity"))
    _show(at, shown)
    summaries = set()
    for point, name in (("high_specificity", "high specificity"), ("high_sensitivity", "high sensitivity")):
        at.radio(key="operating_point").set_value(point).run()
        _assert_fine(at)
        rows = _findings(at)
        for row in rows:
            cut = card.operating_point(row["label"], point)
            assert row["flagged"] == (None if cut is None else row["probability"] >= cut.threshold), row
        test = card.operating_point(shown, point).test
        words = (f"at this point the model found {test.true_positives} of {test.positives} test cases and raised "
                 f"{test.false_alarms} false alarms in {test.negatives} films without the finding")
        summary = next(element.value for element in at.markdown if "Evidence on NIH test films" in element.value)
        assert f"the {name} point" in summary and words.capitalize() in summary
        assert card.verdict(shown).words in summary
        assert next(row for row in rows if row["label"] == shown)["flag_help"].endswith(words)
        summaries.add(summary)
    assert len(summaries) == 2
    assert len(forward_passes) == 1  # switching the point never reruns the model
