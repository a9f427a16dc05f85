"""Page flows of the viewer with Streamlit's AppTest, on the real checkpoint and real images."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import importlib

explain_module = importlib.import_module("xai_core.explain")  # the package exports a function of the same name

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


@pytest.fixture
def forward_passes(monkeypatch) -> list[str]:
    """Record every explain() the page makes (the app imports it from the module on each run)."""
    st.cache_data.clear()
    calls: list[str] = []
    original = explain_module.explain

    def counting(model, xray):
        calls.append(xray.sha256)
        return original(model, xray)

    monkeypatch.setattr(explain_module, "explain", counting)
    return calls


def _opened_sample() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception
    next(button for button in at.button if button.label == "Open sample").click().run()
    assert not at.exception
    return at


def test_first_page_offers_the_sample_and_says_not_for_diagnosis():
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception
    assert any("not for diagnosis" in element.value.lower() for element in at.error)
    assert any(button.label == "Open sample" for button in at.button)
    assert at.file_uploader[0].allowed_type == [".png", ".jpg", ".jpeg", ".dcm", ".dicom"]


def test_sample_shows_14_sorted_probabilities_with_validation_status(forward_passes):
    at = _opened_sample()
    table = at.dataframe[0].value
    assert len(table) == 14
    probabilities = table["Probability"].tolist()
    assert probabilities == sorted(probabilities, reverse=True)
    assert set(table["Validation"]) <= {"validated", "not validated"}
    assert "not validated" in set(table["Validation"])  # Hernia has 3 test positives
    assert len(forward_passes) == 1
    assert at.selectbox(key="pathology").value == at.session_state["table_order"][0]


def test_toggling_pathology_and_layers_never_repeats_the_forward_pass(forward_passes):
    at = _opened_sample()
    first = at.selectbox(key="pathology").value
    other = at.session_state["table_order"][5]
    at.selectbox(key="pathology").set_value(other).run()
    assert at.selectbox(key="pathology").value == other != first
    assert any(other.replace("_", " ") in element.value for element in at.markdown)
    at.session_state["layers"] = ["Attention outline"]
    at.run()
    at.slider(key="opacity").set_value(0.8).run()
    at.selectbox(key="colormap").set_value("viridis").run()
    at.slider(key="threshold").set_value(0.3).run()
    assert not at.exception and not [e for e in at.error if "not for diagnosis" not in e.value.lower()]
    assert len(forward_passes) == 1


def test_saliency_layer_is_computed_on_demand(forward_passes, monkeypatch):
    calls = []
    original = explain_module.saliency
    monkeypatch.setattr(explain_module, "saliency", lambda *a, **k: calls.append(1) or original(*a, **k))
    at = _opened_sample()
    assert calls == []
    at.session_state["layers"] = ["Gradient saliency"]
    at.run()
    assert not at.exception and len(calls) == 1
    at.slider(key="opacity").set_value(0.3).run()
    assert len(calls) == 1 and len(forward_passes) == 1


def test_a_corrupt_upload_shows_its_message_and_the_next_upload_works(nih_test_images):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    good = nih_test_images[0].read_bytes()
    at.file_uploader[0].upload("broken.png", good[:200], "image/png").run()
    assert not at.exception
    messages = [e.value for e in at.error if "not for diagnosis" not in e.value.lower()]
    assert messages and "could not be opened" in messages[0]
    at.file_uploader[0].upload("chest.png", good, "image/png").run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 14
    assert not [e.value for e in at.error if "not for diagnosis" not in e.value.lower()]


def test_dicom_window_change_reruns_the_model_on_the_new_window(forward_passes):
    at = _opened_sample()
    width = at.slider(key="window_width")
    at.slider(key="window_width").set_value(width.value / 2).run()
    assert not at.exception
    assert len(forward_passes) == 2
    assert any("Window used" in caption.value for caption in at.caption)


def test_overlay_and_result_can_be_downloaded():
    at = _opened_sample()
    assert {button.label for button in at.download_button} == {"Overlay (PNG)", "Result (JSON)"}


def test_a_tibia_radiograph_gets_the_out_of_distribution_caution(dicom_file):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.file_uploader[0].upload("knee.dcm", dicom_file("RG3_UNCI.dcm").read_bytes(), "application/dicom").run()
    assert not at.exception
    assert any("does not look like the frontal chest radiographs" in warning.value for warning in at.warning)
    assert len(at.dataframe[0].value) == 14  # the result is still shown


def test_the_chest_sample_gets_no_caution():
    at = _opened_sample()
    assert not any("does not look like" in warning.value for warning in at.warning)
