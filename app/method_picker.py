"""Another explanation method beside Grad-CAM++ for the pathology shown: its map, its cost and how far they agree.

Widgets only: the methods, their maps and the agreement figures are xai_core.methods'. The
one-forward-pass methods (Grad-CAM, CAM) are drawn at once; the others run when the reader
asks, once per (image, pathology, method), and say how long they took.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from xai_core.imaging import XRay
from xai_core.labels import display_name
from xai_core.methods import METHODS, Attribution, attribute, map_agreement
from xai_core.model import XRayModel
from xai_core.overlay import render_overlay

REFERENCE_METHOD = "grad_cam_plus_plus"  # the page's own map, which the picked method is compared with
COMPARED = [name for name in METHODS if name != REFERENCE_METHOD]
CACHE_TTL_S = 3600


@st.cache_data(max_entries=32, ttl=CACHE_TTL_S, show_spinner=False)
def method_attribution(image_sha256: str, label: str, method: str, _model: XRayModel, _xray: XRay) -> Attribution:
    """One method's map for one pathology, computed once per (image, pathology, method)."""
    return attribute(_model, _xray, label, method)


def method_comparison(model: XRayModel, xray: XRay, label: str, grey: np.ndarray,
                      reference_map: np.ndarray, settings: dict) -> None:
    """A picker of methods; the picked method's overlay at display size, its cost and its agreement with the page's map.

    grey: the radiograph at display size; reference_map: the page's Grad-CAM++ map at that size, in [0, 1].
    """
    with st.expander("Compare with another explanation method"):
        method = st.selectbox("Method", COMPARED, format_func=lambda name: METHODS[name].title, key="compared_method")
        chosen = METHODS[method]
        computed = st.session_state.setdefault("computed_methods", set())
        key = (xray.sha256, label, method)
        if not (chosen.one_pass or key in computed):
            st.caption(f"{chosen.title} runs the network many times for one pathology: it can take a while on a CPU.")
            if not st.button(f"Run {chosen.title} for {display_name(label)}", key="run_compared_method"):
                return
        with st.spinner(f"Computing {chosen.title} for {display_name(label)}…"):
            attribution = method_attribution(xray.sha256, label, method, model, xray)
        computed.add(key)
        shown = attribution.normalized_map(label, grey.shape)
        st.image(render_overlay(grey, heatmap=shown, opacity=settings["opacity"], colormap=settings["colormap"]),
                 caption=f"{chosen.title} · {display_name(label)}", width="stretch")
        scale = "magnitude (for and against), min-max scaled" if chosen.magnitude else "min-max scaled"
        st.caption(f"{chosen.title} ({chosen.reference}): {attribution.seconds:.1f} s, "
                   f"{attribution.forward_passes} forward passes of the network; {scale}.")
        agreement = map_agreement(reference_map, shown, threshold=settings["outline_threshold"])
        st.markdown(f"Against Grad-CAM++: {agreement.in_words()}")
