"""The image pane's plumbing (app/image_pair/): what it is sent, what it tells the page, and when it needs the
radiograph's pictures again.

The pane draws the original and the overlay in the browser: the display window, zoom and pan stay as the reader
left them, and a pathology, layer, opacity or threshold picked there is drawn at once and then told to the server
(`_from_pane`). The maps travel as the model's raw 14 grids, scaled and coloured there.

The radiograph's picture is sent once per pane: a rerun for a switch in the pane sends it no more. The pane asks
again when it was drawn anew (`_resend_pictures`). The film's 16-bit codes for the display window (about two thirds
of the bytes, 1.9 MB for the sample) are sent only once the pane asks for them, when the reader first picks a window
(`_send_codes`): the film is shown sooner.

Where the last full run drew the pane (the image, greyed out or not) is kept too: a pane drawn anew by this run
(after a run without one, or moved in or out of the greyed-out container) gets the picture with its first data,
since asking for it from a pane mounted mid-run starts a fragment rerun while the full run still streams, which
Streamlit's page cannot follow ("Bad delta path index": the page goes blank).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from app.image_cache import codes_png, radiograph_png, window_values
from xai_core import display
from xai_core.explanation import Explanation
from xai_core.imaging import XRay
from xai_core.labels import PATHOLOGIES, display_name
from xai_core.overlay import legend_entries

HEATMAP, SALIENCY, OUTLINE = "Grad-CAM++ heatmap", "Gradient saliency", "Attention outline"  # the layers' names
LAYER_KEYS = {HEATMAP: display.HEATMAP, SALIENCY: display.SALIENCY, OUTLINE: display.OUTLINE}  # ... in the pane
# What the overlay shows until the reader changes it in the image pane, the one place for it.
DEFAULT_VIEW = {"layers": ["heatmap"], "opacity": 0.5, "threshold": 0.5}
PICTURES_SENT = "pictures_sent"  # the image whose radiograph picture this session's pane already holds
CODES_ASKED = "codes_asked"  # the image whose display codes the pane asked for, until a run sends them
PANE_PLACE = "pane_place"  # where the last full run drew the image pane: (image, greyed out or not)
FIGURE_HEIGHT = 540  # of each image pane, in CSS pixels
APP = Path(__file__).resolve().parent
# The pane's script is app/image_pair/'s files joined (each only declares; pane.js says which does what). Its
# classes carry a cxr- prefix, so its styles can live in the page's own DOM.
IMAGE_PAIR = st.components.v2.component(
    "chest_xray_viewer.image_pair", css=(APP / "image_pair" / "pane.css").read_text(),
    js="\n".join(path.read_text() for path in sorted((APP / "image_pair").glob("*.js"))), isolate_styles=False)


def swatch(colour: str) -> str:
    """A small square of colour for a legend line (markdown with HTML)."""
    return (f"<span style='display:inline-block;width:0.8em;height:0.8em;background:{colour};"
            "border:1px solid #888;vertical-align:-0.05em'></span>")


def colour_bands(colormap: str) -> list[str]:
    """The heatmap's bands, highest first, each as its swatch, name and range: the legend of every map drawn."""
    return [f"{swatch(colour)} {name} ({text})" for name, text, colour in legend_entries(colormap)]


def last_pane_place() -> tuple[str, bool] | None:
    """Where the run before drew the pane (None: nowhere); forgotten until this run draws it (place_pane)."""
    return st.session_state.pop(PANE_PLACE, None)


def place_pane(image_sha256: str, withheld: bool, before: tuple[str, bool] | None) -> None:
    """This run draws the pane for this image, greyed out or not; drawn anywhere else before, it is a new pane."""
    if (image_sha256, withheld) != before:
        st.session_state.pop(PICTURES_SENT, None)
    st.session_state[PANE_PLACE] = (image_sha256, withheld)


def no_pane() -> None:
    """This run draws no pane (the image could not be opened or explained)."""
    st.session_state.pop(PANE_PLACE, None)


def view_settings(settings: dict) -> dict:
    """The whole overlay's settings (they also go into the JSON record): the sidebar's and the image pane's."""
    view = st.session_state.get("view", DEFAULT_VIEW)
    return {**settings, "opacity": view["opacity"], "outline_threshold": view["threshold"],
            "layers": [layer for layer in (HEATMAP, SALIENCY, OUTLINE) if LAYER_KEYS[layer] in view["layers"]]}


def image_pair(xray: XRay, explanation: Explanation, order: list[str], grey: np.ndarray, overlay_title: str,
               label: str, settings: dict, saliency_picture: bytes | None) -> None:
    """Original and overlay side by side, drawn in the browser; `order`: the pathologies in the pane's picker."""
    values = window_values(xray.sha256, xray, grey.shape)
    send_pictures = st.session_state.get(PICTURES_SENT) != xray.sha256
    st.session_state[PICTURES_SENT] = xray.sha256
    send_codes = st.session_state.get(CODES_ASKED) == xray.sha256
    st.session_state.pop(CODES_ASKED, None)
    data = {
        "image": xray.sha256,
        "size": [grey.shape[1], grey.shape[0]],
        "height": FIGURE_HEIGHT,
        "captions": ["Original", overlay_title],
        "original": display.data_url(radiograph_png(xray.sha256, grey)) if send_pictures else None,
        "codes": display.data_url(codes_png(xray.sha256, values)) if send_codes else None,
        "display": values.as_dict(),
        "findings": [{"label": name, "name": display_name(name)} for name in order],
        "maps": display.raw_map_grids(explanation),
        "overlay": {
            "label": label,
            "layers": [LAYER_KEYS[layer] for layer in settings["layers"]],
            "opacity": settings["opacity"],
            "threshold": settings["outline_threshold"],
            **display.pane_overlay(grey.shape, settings["colormap"]),
            "saliency": None if saliency_picture is None else display.data_url(saliency_picture),
            "saliency_label": None if saliency_picture is None else label,
        },
    }
    IMAGE_PAIR(key="image_pair", height="content", data=data, on_choice_change=_from_pane,
               on_pictures_change=_resend_pictures, on_codes_change=_send_codes)


def _resend_pictures() -> None:
    """The pane lost the radiograph's pictures (it was drawn anew): the next run sends them again."""
    st.session_state.pop(PICTURES_SENT, None)


def _send_codes() -> None:
    """The reader picked a display window: the next run sends the film's codes (the image the pane names)."""
    image = st.session_state["image_pair"].get("codes")
    if isinstance(image, str):
        st.session_state[CODES_ASKED] = image


def _from_pane() -> None:
    """The image pane's choice (already drawn there): the pathology and overlay that the summary, the downloads and
    the feedback, PACS and method panels act on. Checked, since it comes from the browser."""
    choice = st.session_state["image_pair"].get("choice")
    if not isinstance(choice, dict):
        return
    if choice.get("label") in PATHOLOGIES:
        st.session_state["pathology"] = choice["label"]
    layers = choice.get("layers")
    view = dict(st.session_state.get("view", DEFAULT_VIEW))
    if isinstance(layers, list):
        view["layers"] = [key for key in LAYER_KEYS.values() if key in layers]
    for name, (low, high) in (("opacity", (0.0, 1.0)), ("threshold", (0.05, 0.95))):
        if isinstance(choice.get(name), int | float):
            view[name] = min(high, max(low, float(choice[name])))
    st.session_state["view"] = view
