"""The page's method picker (app/method_picker.py) with Streamlit's AppTest, on the sample and the real checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import app.method_picker as method_picker

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


@pytest.fixture
def method_runs(monkeypatch) -> list[str]:
    """The method of every map the picker computes (the page imports the module once, so the patch holds)."""
    st.cache_data.clear()
    runs: list[str] = []
    original = method_picker.attribute

    def counting(model, xray, label, method):
        runs.append(method)
        return original(model, xray, label, method)

    monkeypatch.setattr(method_picker, "attribute", counting)
    return runs


def _page_text(at: AppTest) -> str:
    return "\n".join(str(element.value) for kind in ("markdown", "caption") for element in getattr(at, kind))


def test_method_picker_draws_one_pass_methods_at_once_and_runs_the_others_on_demand(method_runs):
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    next(button for button in at.button if button.label == "Open sample").click().run()
    assert not at.exception and [error.value for error in at.error] == []
    assert at.selectbox(key="compared_method").value == "grad_cam"
    assert method_runs == ["grad_cam"]  # one forward pass: drawn without asking
    text = _page_text(at)
    assert "Grad-CAM (Selvaraju et al. 2017)" in text and "1 forward passes" in text
    assert "Against Grad-CAM++: The two maps" in text

    at.selectbox(key="compared_method").set_value("occlusion").run()
    assert method_runs == ["grad_cam"]  # many forward passes: nothing runs until the reader asks
    run = next(button for button in at.button if button.label.startswith("Run Occlusion"))
    run.click().run()
    assert not at.exception and method_runs == ["grad_cam", "occlusion"]
    assert "Occlusion (superpixels) (Zeiler & Fergus 2014)" in _page_text(at)

    at.selectbox(key="compared_method").set_value("grad_cam").run()
    at.selectbox(key="compared_method").set_value("occlusion").run()
    assert method_runs == ["grad_cam", "occlusion"]  # cached per image, pathology and method
    assert "Occlusion (superpixels) (Zeiler & Fergus 2014)" in _page_text(at)
