"""Two explanation methods side by side for the pathology shown, how far they agree, and a figure of both.

Widgets only: the methods, the background runs, the agreement and the figures (PNG and GIF, drawn
only when downloaded) are xai_core's (methods, method_jobs, map_agreement, figures). Grad-CAM++ is the
page's own map; Grad-CAM and CAM come from one forward pass and are drawn at once; every other
method runs when the reader asks, in a background thread (xai_core.method_jobs), with a progress
bar refreshed by a small fragment and a Stop button that takes effect before the method's next
batch. All of it only once the reader opens the panel: closed, it computes and draws nothing. Finished maps are kept in the reader's session per (image, pathology, method). Under each method, what the model card's
NIH test method comparison says it is worth for this pathology (method_evaluation.method_track_record).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.image_pane import colour_bands
from xai_core.explanation import Explanation
from xai_core.figures import MethodFigure, figure_caption
from xai_core.imaging import XRay
from xai_core.labels import display_name
from xai_core.map_agreement import map_agreement
from xai_core.method_evaluation import method_track_record
from xai_core.method_jobs import JobState, MethodJob, start_method_job
from xai_core.methods import METHODS, Attribution, attribute, planned_forward_passes
from xai_core.model import XRayModel
from xai_core.overlay import render_overlay

PAGE_METHOD = "grad_cam_plus_plus"  # drawn from the page's own explanation, never recomputed
SIDES = (("left", PAGE_METHOD), ("right", "grad_cam"))  # each side's key and first method
JOB, MAPS = "method_job", "method_maps"  # session state: the running (or last) job, the finished maps
OPENED = "method_comparison_open"  # the panel's state: closed, it computes nothing (Streamlit would run a plain
# expander's body, here a Grad-CAM pass, the overlays and their agreement, on every run while it is closed)
CHOSEN = "methods_chosen"  # each side's method, kept while the panel is closed
KEPT_MAPS = 24  # finished maps kept per session, oldest forgotten first
POLL_S = 3.0  # progress refresh while a method runs; each refresh is a script run (and a full gc in Streamlit)


def method_comparison(model: XRayModel, xray: XRay, explanation: Explanation, label: str, grey: np.ndarray,
                      settings: dict) -> None:
    """grey: the radiograph at display size; the maps are drawn at that size. Nothing is computed or drawn inside
    until the reader opens the panel (opening or closing it reruns the result view)."""
    _collect_finished_job(xray.sha256)
    panel = st.expander("Compare explanation methods side by side", key=OPENED, on_change="rerun")
    if not panel.open:
        return
    with panel:
        shown, chosen = [], st.session_state.setdefault(CHOSEN, {})
        for (side, first), column in zip(SIDES, st.columns(2)):
            with column:
                # the choice outlives the panel's closing (Streamlit forgets the state of a widget not drawn)
                method = st.selectbox("Method", list(METHODS), index=list(METHODS).index(chosen.get(side, first)),
                                      format_func=lambda name: METHODS[name].title, key=f"method_{side}")
                chosen[side] = method
                heatmap = _method_pane(model, xray, explanation, label, method, grey, settings, side)
                st.caption(method_track_record(model.card, method, label))
            if heatmap is not None:
                shown.append((METHODS[method].title, heatmap))
        if shown:
            st.markdown("Colours, as a share of each map's own maximum: &nbsp; "
                        + " &nbsp; ".join(colour_bands(settings["colormap"])), unsafe_allow_html=True)
        if len(shown) == 2:
            agreement = map_agreement(shown[0][1], shown[1][1], threshold=settings["outline_threshold"])
            st.markdown(f"**{shown[0][0]} and {shown[1][0]}, {display_name(label)}:** {agreement.in_words()}")
        if shown:
            _figure_downloads(grey, shown, label, figure_caption(
                [title for title, _ in shown], label, explanation.probability(label), model.version), settings)


def _figure_downloads(grey: np.ndarray, shown: list[tuple[str, np.ndarray]], label: str, caption: str,
                      settings: dict) -> None:
    """The maps shown, to take away: beside the radiograph (PNG), and alternating with it (GIF); drawn on click."""
    figure = MethodFigure(grey, shown, caption, opacity=settings["opacity"], colormap=settings["colormap"])
    still, animated = st.columns(2)
    still.download_button(
        "Figure of these maps (PNG)", figure.png,
        file_name=f"figure_{label}.png", mime="image/png", key="method_figure", on_click="ignore",
        help="The radiograph beside the maps, with a caption: methods, pathology, probability, model version, "
             "research use only")
    animated.download_button(
        "Animation: film, then each map (GIF)", figure.gif,
        file_name=f"figure_{label}.gif", mime="image/gif", key="method_gif", on_click="ignore",
        help="The radiograph and each map over it in turn, one second each, with the same caption: for teaching")


def _method_pane(model: XRayModel, xray: XRay, explanation: Explanation, label: str, method: str,
                 grey: np.ndarray, settings: dict, side: str) -> np.ndarray | None:
    """One method's overlay and what it cost, or the way to get it; its map in [0, 1] at grey's shape, if any."""
    chosen = METHODS[method]
    if method == PAGE_METHOD:
        heatmap = explanation.normalized_map(label, grey.shape)
        cost = "the page's own map: one forward pass for all 14 pathologies"
    else:
        attribution = _finished_map(model, xray, label, method)
        if attribution is None:
            _expensive_method(model, xray, label, method, side)
            return None
        heatmap = attribution.normalized_map(label, grey.shape)
        images = attribution.forward_passes
        cost = f"{attribution.seconds:.1f} s, {images} image{'s' if images > 1 else ''} through the network"
    st.image(render_overlay(grey, heatmap=heatmap, opacity=settings["opacity"], colormap=settings["colormap"]),
             caption=f"{chosen.title} · {display_name(label)}", width="stretch")
    scale = "magnitude (for and against), min-max scaled" if chosen.magnitude else "min-max scaled"
    st.caption(f"{chosen.cited_title}: {cost}; {scale}.")
    return heatmap


def _finished_map(model: XRayModel, xray: XRay, label: str, method: str) -> Attribution | None:
    """The kept map; a one-forward-pass method is computed (and kept) here, any other only by a job."""
    maps = st.session_state.setdefault(MAPS, {})
    key = (xray.sha256, label, method)
    if key not in maps and METHODS[method].one_pass:
        _keep(maps, key, attribute(model, xray, label, method))
    return maps.get(key)


def _expensive_method(model: XRayModel, xray: XRay, label: str, method: str, side: str) -> None:
    """Progress and Stop while this method runs; otherwise what it costs, why the last run gave no map, and Run."""
    job: MethodJob | None = st.session_state.get(JOB)
    if job is not None and job.key == (xray.sha256, label, method):
        if job.running:
            _job_progress(side)
            return
        if job.state is JobState.FAILED:
            st.error(job.in_words())
        else:
            st.info(job.in_words())
    title = METHODS[method].title
    planned = planned_forward_passes(model, xray, label, method)
    st.caption(f"{title} runs {planned} images through the network for one pathology (Grad-CAM++ needs one for "
               "all 14): it can take minutes on a CPU. You can stop it.")
    st.button(f"Run {title} for {display_name(label)}", key=f"run_method_{side}", on_click=_start_job,
              args=(model, xray, label, method))


@st.fragment(run_every=POLL_S)
def _job_progress(side: str) -> None:
    """Refreshed every POLL_S seconds while the job runs; a full run draws its map (or why there is none) after."""
    job: MethodJob = st.session_state[JOB]
    if not job.running:
        st.rerun()
    st.progress(job.fraction, text=job.in_words())
    st.button("Stop", key=f"stop_method_{side}", on_click=job.stop)


def _start_job(model: XRayModel, xray: XRay, label: str, method: str) -> None:
    """One job per session: starting one stops the one before."""
    previous: MethodJob | None = st.session_state.get(JOB)
    if previous is not None:
        previous.stop()
    st.session_state[JOB] = start_method_job(model, xray, label, method)


def _collect_finished_job(image_sha256: str) -> None:
    """Keep a finished job's map; stop a job still running for an image no longer shown."""
    job: MethodJob | None = st.session_state.get(JOB)
    if job is None:
        return
    if job.running and job.image_sha256 != image_sha256:
        job.stop()
    maps = st.session_state.setdefault(MAPS, {})
    if job.state is JobState.DONE and job.attribution is not None and job.key not in maps:
        _keep(maps, job.key, job.attribution)


def _keep(maps: dict, key: tuple[str, str, str], attribution: Attribution) -> None:
    maps.pop(key, None)
    maps[key] = attribution
    while len(maps) > KEPT_MAPS:
        maps.pop(next(iter(maps)))
