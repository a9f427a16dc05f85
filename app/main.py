"""The clinician's viewer: `streamlit run app/main.py`.

Layout and widgets only: every image, model and map operation is a call into
xai_core. Uploads stay in memory (Streamlit keeps them there, and so do the
caches below); nothing a user gives is written to disk or logged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `streamlit run app/main.py` from anywhere

from xai_core.errors import XRayError  # noqa: E402
from xai_core.explain import Explanation, explain, saliency  # noqa: E402
from xai_core.imaging import XRay, read_xray, with_window  # noqa: E402
from xai_core.labels import display_name  # noqa: E402
from xai_core.model import XRayModel, load_model  # noqa: E402
from xai_core.overlay import (  # noqa: E402
    COLORMAPS,
    DEFAULT_COLORMAP,
    display_shape,
    legend_entries,
    render_overlay,
    resize_grey,
    to_png_bytes,
)
from xai_core.report import DISCLAIMER, explanation_record  # noqa: E402
from xai_core.samples import sample_images  # noqa: E402

HEATMAP, SALIENCY, OUTLINE = "Grad-CAM++ heatmap", "Gradient saliency", "Attention outline"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "dcm", "dicom"]


@st.cache_resource(show_spinner="Loading the model…")
def shared_model() -> XRayModel:
    """One model per server process, shared by every session (never copied)."""
    return load_model()


@st.cache_data(max_entries=32, show_spinner=False)
def read_image(data: bytes) -> XRay:
    return read_xray(data)


@st.cache_data(max_entries=32, show_spinner=False)
def explain_image(image_sha256: str, window: tuple[float, float] | None, _xray: XRay) -> Explanation:
    """One forward pass per (image, window): toggling a pathology or an overlay never repeats it."""
    return explain(shared_model(), _xray)


@st.cache_data(max_entries=64, show_spinner=False)
def saliency_map(image_sha256: str, window: tuple[float, float] | None, label: str, samples: int, _xray: XRay) -> np.ndarray:
    return saliency(shared_model(), _xray, label, smoothgrad_samples=samples)


def current_image() -> tuple[str, bytes] | None:
    """(name, bytes) of the image to show: the newest upload, else the opened sample."""
    return st.session_state.get("image")


def _on_upload() -> None:
    upload = st.session_state.get("upload")
    if upload is not None:
        st.session_state["image"] = ("uploaded image", upload.getvalue())
        st.session_state.pop("window", None)


def _open_sample() -> None:
    samples = sample_images()
    name = st.session_state.get("sample_choice") or next(iter(samples), None)
    if name in samples:
        st.session_state["image"] = (name, samples[name].read_bytes())
        st.session_state.pop("window", None)


def _on_table_select() -> None:
    rows = st.session_state["pathology_table"]["selection"]["rows"]
    order = st.session_state.get("table_order", [])
    if rows and rows[0] < len(order):
        st.session_state["pathology"] = order[rows[0]]


def sidebar(model: XRayModel) -> dict:
    """Image source and display controls; returns the display settings."""
    with st.sidebar:
        st.header("Image")
        st.file_uploader("Upload a chest radiograph (PNG, JPEG or DICOM, up to 50 MB)", type=UPLOAD_TYPES,
                         key="upload", on_change=_on_upload)
        samples = sample_images()
        if len(samples) > 1:
            st.selectbox("Sample", list(samples), key="sample_choice")
        st.button("Open sample", on_click=_open_sample, disabled=not samples, type="primary",
                  help="A real, de-identified adult PA chest radiograph (DICOM) from the pydicom-data package.")
        st.header("Overlay")
        layers = st.pills("Layers", [HEATMAP, SALIENCY, OUTLINE], selection_mode="multi", default=[HEATMAP, OUTLINE],
                          key="layers")
        opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
        colormap = st.selectbox("Colour map", COLORMAPS, index=COLORMAPS.index(DEFAULT_COLORMAP), key="colormap")
        threshold = st.slider("Outline threshold (fraction of the map's maximum)", 0.05, 0.95, 0.5, 0.05,
                              key="threshold")
        smoothgrad = st.toggle("SmoothGrad (16 noisy copies; slower)", key="smoothgrad")
        st.caption(f"Model {model.version} · {model.device.type.upper()} · input {model.input_spec.size} px")
    return {"layers": list(layers or []), "opacity": float(opacity), "colormap": colormap,
            "outline_threshold": float(threshold), "smoothgrad_samples": 16 if smoothgrad else 0}


def window_controls(xray: XRay) -> tuple[float, float] | None:
    """DICOM metadata and window level/width controls; returns the user's window, if changed."""
    metadata = xray.metadata
    with st.expander("Image details (de-identified technical metadata)", expanded=False):
        shown = {key: value for key, value in metadata.as_dict().items() if value is not None}
        st.table(pd.DataFrame({"value": [str(v) for v in shown.values()]}, index=list(shown)))
        if xray.modality_values is None:
            return None
        low, high = (metadata.value_range or (float(xray.modality_values.min()), float(xray.modality_values.max())))
        span = max(high - low, 1.0)
        default_center = metadata.window_center if metadata.window_center is not None else (low + high) / 2
        default_width = metadata.window_width if metadata.window_width is not None else span
        st.caption(f"Window used: level {default_center:g}, width {default_width:g} ({metadata.window_source}).")
        center = st.slider("Window level", float(low), float(high), float(np.clip(default_center, low, high)),
                           key="window_center")
        width = st.slider("Window width", 1.0, float(span * 2), float(np.clip(default_width, 1.0, span * 2)),
                          key="window_width")
    if (center, width) == (default_center, default_width):
        return None
    return float(center), float(width)


def probability_table(model: XRayModel, explanation: Explanation) -> None:
    thresholds, status = model.thresholds(), model.validation_status()
    order = sorted(explanation.labels, key=explanation.probability, reverse=True)
    st.session_state["table_order"] = order
    rows = [
        {
            "Pathology": display_name(label),
            "Probability": explanation.probability(label),
            "Flag": "▲" if explanation.probability(label) >= thresholds[label] else "",
            "Validation": "validated" if status[label].startswith("validated") else "not validated",
        }
        for label in order
    ]
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        height=35 * 15 + 3,
        on_select=_on_table_select,
        selection_mode="single-row",
        key="pathology_table",
        column_config={
            "Pathology": st.column_config.TextColumn("Pathology", width=130),
            "Probability": st.column_config.ProgressColumn("Probability", min_value=0.0, max_value=1.0, format="%.2f",
                                                           width=120),
            "Flag": st.column_config.TextColumn("▲", width=30, help="Above its operating threshold (chosen on validation data)"),
            "Validation": st.column_config.TextColumn(
                "Validation", width=100, help="Validated: at least 10 positives in the NIH test split (see the model card)"),
        },
    )
    st.caption("Click a row, or choose below, to show where the model looked for that pathology.")


def figures(grey: np.ndarray, overlay: np.ndarray, attention: np.ndarray | None) -> go.Figure:
    """Original and overlay side by side, zoom and pan linked, attention values on hover."""
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.01, subplot_titles=("Original", "Where the model looked"))
    figure.add_trace(go.Image(z=np.repeat((grey * 255).astype(np.uint8)[:, :, None], 3, axis=2), hoverinfo="skip"), 1, 1)
    figure.add_trace(go.Image(z=overlay, hoverinfo="skip"), 1, 2)
    if attention is not None:
        step = max(1, max(attention.shape) // 96)
        coarse = attention[step // 2 :: step, step // 2 :: step]
        ys, xs = np.arange(coarse.shape[0]) * step + step // 2, np.arange(coarse.shape[1]) * step + step // 2
        figure.add_trace(go.Heatmap(z=coarse, x=xs, y=ys, opacity=0, showscale=False,
                                    hovertemplate="attention %{z:.2f}<extra></extra>"), 1, 2)
    figure.update_xaxes(showticklabels=False, matches="x")
    figure.update_yaxes(showticklabels=False, matches="y", autorange="reversed", scaleanchor="x")
    figure.update_layout(height=500, margin=dict(l=0, r=0, t=30, b=0), dragmode="pan",
                         paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
    return figure


def legend(colormap: str, layers: list[str]) -> None:
    parts = []
    if HEATMAP in layers:
        parts += [f"<span style='color:{colour}'>■</span> {name} attention ({text})"
                  for name, text, colour in legend_entries(colormap)]
    if SALIENCY in layers:
        parts.append("<span style='color:#00ff00'>■</span> gradient saliency")
    if OUTLINE in layers:
        parts.append("<span style='color:#00ffff'>▢</span> attention outline")
    if parts:
        st.markdown(" &nbsp; ".join(parts), unsafe_allow_html=True)


def show_result(model: XRayModel, name: str, xray: XRay, settings: dict) -> None:
    window = window_controls(xray) if xray.metadata.format == "DICOM" else None
    if window is not None:
        xray = with_window(xray, *window)
    with st.spinner("Running the model…"):
        explanation = explain_image(xray.sha256, window, xray)
    for notice in xray.notices:
        st.info(notice)
    if explanation.out_of_distribution:
        st.warning(
            "**Caution: this image does not look like the frontal chest radiographs the model was trained on** "
            f"(feature distance {explanation.ood_distance:.0f}, threshold {explanation.ood_threshold:.0f}). "
            "The predictions and maps below are very likely meaningless for it."
        )

    left, right = st.columns([2, 1], gap="small")
    with right:
        probability_table(model, explanation)
        order = st.session_state["table_order"]
        if st.session_state.get("pathology") not in order:
            st.session_state["pathology"] = order[0]
        label = st.selectbox("Pathology shown", order, format_func=display_name, key="pathology")
        st.markdown(
            f"**{display_name(label)}**: probability {explanation.probability(label):.2f} "
            f"(threshold {model.thresholds()[label]:.2f}) · {model.validation_status()[label]}  \n"
            f"Map scaling: per-image min–max (1 = this map's maximum). Raw attention strength "
            f"{explanation.strength(label):.3g}, comparable across pathologies and images."
        )

    shape = display_shape(xray.pixels.shape)
    grey = resize_grey(xray.pixels, shape)
    attention = explanation.normalized_map(label, shape)
    gradients = None
    if SALIENCY in settings["layers"]:
        with st.spinner("Computing gradient saliency…"):
            full = saliency_map(xray.sha256, window, label, settings["smoothgrad_samples"], xray)
        gradients = resize_grey(full, shape)
    overlay = render_overlay(
        grey,
        heatmap=attention if HEATMAP in settings["layers"] else None,
        saliency=gradients,
        outline_map=attention if OUTLINE in settings["layers"] else None,
        opacity=settings["opacity"],
        colormap=settings["colormap"],
        threshold=settings["outline_threshold"],
    )
    with left:
        st.plotly_chart(figures(grey, overlay, attention), width="stretch",
                        config={"scrollZoom": True, "displaylogo": False})
        legend(settings["colormap"], settings["layers"])

    record = explanation_record(model, xray, explanation, {**settings, "pathology_shown": label,
                                                            "window": list(window) if window else None})
    stem = f"cxr_{xray.sha256[:12]}"
    first, second = right.columns(2)
    first.download_button("Overlay (PNG)", to_png_bytes(overlay, text_metadata={"model_version": model.version,
                                                                                "label": label}),
                          file_name=f"{stem}_{label}.png", mime="image/png", on_click="ignore")
    second.download_button("Result (JSON)", json.dumps(record, indent=2), file_name=f"{stem}.json",
                           mime="application/json", key="download_json", on_click="ignore")


def main() -> None:
    st.set_page_config(page_title="Chest X-ray explainability viewer", page_icon="🫁", layout="wide")
    st.markdown("<style>.block-container {padding-top: 2.5rem; padding-left: 2rem; padding-right: 2rem;}</style>",
                unsafe_allow_html=True)
    st.markdown("#### Chest X-ray explainability viewer")
    st.error(f"**{DISCLAIMER}**", icon="⚠️")
    try:
        model = shared_model()
    except XRayError as error:
        st.error(f"The model could not be loaded: {error}")
        return
    settings = sidebar(model)
    image = current_image()
    if image is None:
        st.info("Upload a chest radiograph in the sidebar, or press **Open sample** to try a real adult PA chest "
                "radiograph. You will see the model's probabilities for 14 pathologies and where it looked for each.")
        return
    name, data = image
    try:
        xray = read_image(data)
    except XRayError as error:
        st.error(f"This file could not be opened: {error}")
        return
    try:
        show_result(model, name, xray, settings)
    except XRayError as error:
        st.error(str(error))
    except Exception:  # noqa: BLE001 - the page must survive; details stay out of the page and the log
        st.error("Something went wrong while explaining this image. Try another image, or reload the page.")


main()
