"""The page's side-by-side methods (app/method_picker.py) with Streamlit's AppTest, on the sample and the real checkpoint.

AppTest does not run the progress fragment on its timer, so the tests rerun the page while a
method runs in its background thread, as the fragment's timer would.
"""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from app.method_picker import OPENED
from xai_core.card import read_card
from xai_core.labels import display_name
from xai_core.method_evaluation import method_track_record
from xai_core.method_jobs import JobState
from xai_core.model import DEFAULT_CARD
from xai_core.overlay import DEFAULT_COLORMAP, legend_entries

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def _page_text(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "error")
    return "\n".join(str(element.value) for kind in kinds for element in getattr(at, kind))


def _button(at: AppTest, start: str):
    return next(button for button in at.button if button.label.startswith(start))


def _opened_sample() -> AppTest:
    """The sample open, and the comparison panel too (closed, it computes nothing: test_app.py checks that)."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    _button(at, "Open sample").click().run()
    at.session_state[OPENED] = True  # as the reader's click on the panel's title tells the page
    at.run()
    assert not at.exception and [error.value for error in at.error] == []
    return at


def _rerun_until(at: AppTest, done, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        time.sleep(1.0)
        at.run()
    assert done(), _page_text(at)


def test_method_side_by_side_draws_one_pass_methods_at_once_with_their_agreement():
    at = _opened_sample()
    assert at.selectbox(key="method_left").value == "grad_cam_plus_plus"
    assert at.selectbox(key="method_right").value == "grad_cam"
    text = _page_text(at)
    assert "Grad-CAM++ (Chattopadhay et al. 2018): the page's own map" in text
    assert "Grad-CAM (Selvaraju et al. 2017): " in text and "1 image through the network" in text
    assert "**Grad-CAM++ and Grad-CAM, " in text and "rank correlation" in text and "(IoU)" in text
    # the two maps' colours in words, as under the page's overlay: each band's swatch, name and range
    legend = next(line.value for line in at.markdown if "of each map's own maximum" in line.value)
    assert all(f"{name} ({text})" in legend and colour in legend for name, text, colour in legend_entries(DEFAULT_COLORMAP))
    downloads = {button.key: button.proto for button in at.get("download_button")}
    assert downloads["method_figure"].label == "Figure of these maps (PNG)"
    assert downloads["method_gif"].label == "Animation: film, then each map (GIF)"
    # What each method is worth, from the shipped card's NIH test method comparison, under each map; the page's
    # own map quotes the same boxes as the evidence line under the overlay.
    card, shown = read_card(DEFAULT_CARD), at.session_state["pathology"]
    for method in ("grad_cam_plus_plus", "grad_cam"):
        assert method_track_record(card, method, shown) in text
    scored = card.test_figures(shown)["alignment"]["model"]
    hits = round(scored["pointing_hit"] * scored["n"])
    assert f"for {display_name(shown)}, Grad-CAM++ pointed inside the box" in text
    assert f"Map maximum inside the radiologists' box: {hits} of {scored['n']}" in text
    assert f"{hits} of {scored['n']} times" in text or f"{scored['pointing_hit']:.2f} of the time" in text


def test_method_expensive_run_shows_progress_can_be_stopped_and_is_kept_per_image():
    at = _opened_sample()
    at.selectbox(key="method_right").set_value("kernel_shap").run()
    assert "runs 200 images through the network" in _page_text(at)
    assert "**Grad-CAM++ and" not in _page_text(at)  # nothing to compare until it has run

    _button(at, "Run Kernel SHAP").click().run()
    job = at.session_state["method_job"]
    assert job.method == "kernel_shap" and job.planned == 200
    progress = [bar.proto.text for bar in at.get("progress")]
    assert len(progress) == 1 and "Kernel SHAP (superpixels) for " in progress[0]
    assert "of 200 images through the network" in progress[0]
    _rerun_until(at, lambda: job.done > 0)
    _button(at, "Stop").click().run()
    _rerun_until(at, lambda: "was stopped after" in _page_text(at))
    assert job.state is JobState.STOPPED and 0 < job.done < job.planned
    assert _button(at, "Run Kernel SHAP")  # it can be run again

    at.selectbox(key="method_right").set_value("occlusion").run()
    _button(at, "Run Occlusion").click().run()
    job = at.session_state["method_job"]
    _rerun_until(at, lambda: "Occlusion (superpixels; Zeiler & Fergus 2014): " in _page_text(at))
    assert job.state is JobState.DONE
    assert f"{job.planned} images through the network" in _page_text(at)
    assert "**Grad-CAM++ and Occlusion (superpixels), " in _page_text(at)

    at.selectbox(key="method_right").set_value("grad_cam").run()
    at.selectbox(key="method_right").set_value("occlusion").run()
    assert at.session_state["method_job"] is job  # kept for this image and pathology: not run again
    assert not [button for button in at.button if button.label.startswith("Run Occlusion")]
    assert "Occlusion (superpixels; Zeiler & Fergus 2014): " in _page_text(at)
