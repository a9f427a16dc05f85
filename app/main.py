"""The clinician's viewer: `streamlit run app/main.py`.

Layout and widgets only: every image, model and map operation is a call into
xai_core. Uploads stay in memory (Streamlit keeps them there, and so do the
caches of app/image_cache.py, which forget an image after an hour); nothing a
user gives is written to disk or logged, and upload file names are never shown.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `streamlit run app/main.py` from anywhere

from app.feedback_panel import feedback_panel  # noqa: E402
from app.image_cache import display_grey, explain_image, read_image, saliency_map, saliency_png  # noqa: E402
from app.image_pane import (  # noqa: E402
    HEATMAP,
    LAYER_KEYS,
    OUTLINE,
    SALIENCY,
    colour_bands,
    image_pair,
    last_pane_place,
    no_pane,
    place_pane,
    swatch,
    view_settings,
)
from app.method_picker import method_comparison  # noqa: E402
from app.pacs_tab import pacs_source, send_to_pacs  # noqa: E402
from xai_core import display  # noqa: E402
from xai_core.errors import XRayError  # noqa: E402
from xai_core.explanation import Explanation  # noqa: E402
from xai_core.findings import Finding, by_probability, findings  # noqa: E402
from xai_core.imaging import MAX_UPLOAD_BYTES, XRay  # noqa: E402
from xai_core.labels import PATHOLOGIES, display_name  # noqa: E402
from xai_core.model import XRayModel  # noqa: E402
from xai_core.ood import Assessment, Level  # noqa: E402
from xai_core.operating_points import POINT_NAMES  # noqa: E402
from xai_core.overlay import COLORMAPS, DEFAULT_COLORMAP, saliency_for_display, to_png_bytes  # noqa: E402
from xai_core.report import DISCLAIMER, explanation_record  # noqa: E402
from xai_core.samples import sample_images  # noqa: E402
from xai_core.serving import shared_model  # noqa: E402  one per process, loaded as app/server.py starts

UPLOADED = "Uploaded image"  # what an upload is called on the page: its file name may carry the patient's
LAYER_TITLES = {HEATMAP: "Grad-CAM++", SALIENCY: "saliency", OUTLINE: "outline"}
SALIENCY_COLOUR, OUTLINE_COLOUR = display.css_colour(display.SALIENCY_RGB), display.css_colour(display.OUTLINE_RGB)
SMOOTHGRAD_SAMPLES = 16
MAPS_WITHHELD = "maps_withheld"  # the container of an image's results while the strong warning greys them out
APP = Path(__file__).resolve().parent
# The findings table is a small browser component (a cxr- prefix on its classes: its styles live in the page's DOM),
# refilling its 14 rows in place; the image pane is app/image_pane.py's.
PATHOLOGY_TABLE = st.components.v2.component("chest_xray_viewer.pathology_table",
                                             css=(APP / "pathology_table.css").read_text(),
                                             js=(APP / "pathology_table.js").read_text(), isolate_styles=False)


# --- callbacks: they run before the page is drawn again ---------------------------------


def _on_upload() -> None:
    upload = st.session_state.get("upload")
    if upload is not None:
        _keep_image(UPLOADED, upload.getvalue())
    elif st.session_state.get("image", ("",))[0] == UPLOADED:
        del st.session_state["image"]  # the user removed the upload


def _open_sample() -> None:
    samples = sample_images()
    name = st.session_state.get("sample_choice") or next(iter(samples), None)
    if name in samples:
        _keep_image(name, samples[name].read_bytes())


def _keep_image(name: str, data: bytes) -> None:
    """The image shown, with its digest taken once here rather than hashing the file on every redraw."""
    st.session_state["image"] = (name, data, hashlib.sha256(data).hexdigest())


def _pick_from_table() -> None:
    picked = st.session_state["pathology_table"].get("picked")
    if picked in PATHOLOGIES:
        st.session_state["pathology"] = picked


# --- page parts -------------------------------------------------------------------------------


def header(model: XRayModel) -> None:
    title, notice = st.columns([2, 3], vertical_alignment="center")
    title.markdown("#### Chest X-ray explainability viewer")
    spec = model.input_spec
    title.caption(f"Model {model.version} · ResNet-50, {spec.size} px input · {model.device.type.upper()}")
    notice.warning(f"**{DISCLAIMER}**", icon="⚠️")


def image_source() -> DeltaGenerator:
    """Upload or sample, in the sidebar; returns the place for a line on what is shown."""
    samples = sample_images()
    with st.sidebar:
        st.subheader("Image")
        st.file_uploader(
            f"DICOM, PNG or JPEG, up to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB",
            key="upload",
            on_change=_on_upload,
            help="Any file name is accepted (PACS exports often have no suffix): the format is read "
            "from the content. The file stays in memory and is never stored.",
        )
        if len(samples) > 1:
            st.selectbox("Sample", list(samples), key="sample_choice")
        st.button("Open sample", on_click=_open_sample, disabled=not samples, width="stretch",
                  help="A real, de-identified adult PA chest radiograph (DICOM) from the pydicom-data package.")
        return st.container()


def overlay_settings() -> dict:
    """The colour map and the saliency's kind, in the sidebar (rarely changed). The pathology, layers, opacity and
    outline threshold are chosen in the image pane, drawn there at once and then told to the server (_from_pane)."""
    with st.sidebar:
        st.subheader("Overlay")
        colormap = st.selectbox("Colour map", COLORMAPS, index=COLORMAPS.index(DEFAULT_COLORMAP), key="colormap")
        smoothgrad = st.toggle(f"SmoothGrad saliency ({SMOOTHGRAD_SAMPLES} noisy copies, slower)", key="smoothgrad")
    return {"colormap": colormap, "smoothgrad_samples": SMOOTHGRAD_SAMPLES if smoothgrad else 0}


def image_details(xray: XRay) -> None:
    """The window the model reads the file with, and the technical metadata, in the sidebar."""
    metadata = xray.metadata
    with st.sidebar:
        if metadata.window_source == "VOI LUT":
            used = "the file's VOI LUT"
        elif metadata.window_center is not None:
            used = f"level {metadata.window_center:g}, width {metadata.window_width:g} ({metadata.window_source})"
        else:
            used = None
        if used:
            st.caption(f"The model reads the file through {used}; the window above the images is for viewing only.")
        with st.expander("Image details (de-identified)"):
            rows = "".join(f"| {key.replace('_', ' ')} | {_literal(_readable(value))} |\n"
                           for key, value in metadata.as_dict().items() if value is not None)
            st.markdown("| | value |\n|---|---|\n" + rows)


def _literal(text: str) -> str:
    """Text from the file shown as written, never as Markdown (a body part tag could hold any characters)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", text)


def _readable(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return " – ".join(_readable(item) for item in value)
    return str(value)


def operating_point_switch() -> str:
    """The point every pathology is flagged against: high specificity unless the reader picks the other."""
    point = st.radio("Flag findings at", list(POINT_NAMES), format_func=lambda name: POINT_NAMES[name].capitalize(),
                     horizontal=True, key="operating_point",
                     help="Both points were chosen on NIH validation films and counted on NIH test films. High "
                          "specificity: 90% of validation films without the finding stay unflagged (fewer false "
                          "alarms, more misses). High sensitivity: 90% of validation films with it are flagged.")
    return point


def probability_table(model: XRayModel, found: tuple[Finding, ...], label: str, point: str) -> None:
    """All 14 pathologies by probability (app/pathology_table.js); pressing a row shows that pathology's map.

    ▲ marks a pathology at or above the chosen operating point; a label whose test evidence is not "works"
    is drawn faint."""
    probability_help = ("Calibrated on validation films (model card): of the films given about this value there, "
                        "about this share had the finding. Where the finding is commoner or rarer, so is the share."
                        if model.card.calibration is not None else "Not calibrated: read it as a ranking, not a risk.")
    PATHOLOGY_TABLE(key="pathology_table", on_picked_change=_pick_from_table, data={
        "columns": [
            {"title": "Pathology", "className": "cxr-name"},
            {"title": "Probability", "className": "cxr-probability", "help": probability_help},
            {"title": "▲", "className": "cxr-above", "help": f"At or above its {POINT_NAMES[point]} point"},
            {"title": "Evidence", "className": "cxr-evidence",
             "help": "From the NIH test AUROC's 95% interval and the number of test cases: works (lower bound "
                     "at least 0.70), weak (above 0.50), not shown to work, or too few cases to tell"},
        ],
        "rows": [{"label": finding.label, "name": finding.name, "probability": finding.probability,
                  "flagged": finding.flagged, "flag_help": finding.point_words(), "evidence": finding.evidence,
                  "evidence_help": finding.verdict_words, "trusted": finding.trusted}
                 for finding in by_probability(found)],
        "shown": label,
    })


def pathology_summary(finding: Finding) -> None:
    """The pathology shown: its probability against the chosen point, what that point means in test films, and
    how far its evidence goes."""
    lines = [f"Pathology shown: **{finding.name}** · probability **{finding.probability:.3f}**, "
             f"{finding.flag_words()}."]
    if finding.cut is not None:
        lines.append(f"{finding.point_meaning.capitalize()} ({finding.rates_words()}).")
    lines.append(f"Evidence on NIH test films: **{finding.verdict_words}**.")
    st.markdown("  \n".join(lines))


def map_evidence(model: XRayModel, label: str) -> None:
    """How often this label's maps matched radiologists' boxes on held-out films, beside what chance and the
    model's own average map score: the numbers that say how far to trust the map shown."""
    figures = model.test_figures(label)
    if not figures:
        st.caption("This model card holds no test figures: nothing says how far to trust its maps.")
        return
    sentences = []
    if "auroc" in figures:
        low, high = figures["auroc_ci95"]
        sentences.append(f"AUROC {figures['auroc']:.2f} (chance 0.50; 95% CI {low:.2f}–{high:.2f}, "
                         f"{figures['positives']} positives).")
    alignment = figures.get("alignment")
    if alignment:
        boxes = alignment["model"]["n"]
        hits = round(alignment["model"]["pointing_hit"] * boxes)
        controls = f"a random map {alignment['random']['pointing_hit']:.0%}"
        if "average_map" in alignment:
            controls += (f", this model's average {display_name(label)} map, the same on every film, "
                         f"{alignment['average_map']['pointing_hit']:.0%}")
        sentences.append(f"Map maximum inside the radiologists' box: {hits} of {boxes} ({controls}).")
    else:
        sentences.append("No radiologist boxes for this finding: where its maps point was never checked.")
    if "map_resemblance" in figures:
        sentences.append(f"How much its maps change from film to film: median correlation with this model's average "
                         f"{display_name(label)} map {figures['map_resemblance']:.2f} (1 = the same map on every film).")
    st.caption("NIH test films: " + " ".join(sentences))


def legend(settings: dict, explanation: Explanation, label: str) -> None:
    layers, parts = settings["layers"], []
    if HEATMAP in layers:
        parts += colour_bands(settings["colormap"])
    if SALIENCY in layers:
        parts.append(f"{swatch(SALIENCY_COLOUR)} gradient saliency")
    if OUTLINE in layers:
        parts.append(f"<span style='color:{OUTLINE_COLOUR}'>▢</span> outline at {settings['outline_threshold']:.2f}")
    if parts:
        st.markdown(" &nbsp; ".join(parts), unsafe_allow_html=True)
    st.caption(
        f"Map scaling: per-image min–max, 1 = this map's maximum. Raw attention strength for "
        f"{display_name(label)}: {explanation.strength(label):.3g} (comparable across pathologies and images). "
        "Scroll to zoom, drag to pan, double-click to reset; hover for attention values."
    )


def downloads(overlay_png: Callable[[], bytes], record: dict, label: str) -> None:
    stem = f"cxr_{record['image']['sha256'][:12]}"
    first, second = st.columns(2)
    first.download_button("Overlay (PNG)", overlay_png, file_name=f"{stem}_{label}.png", mime="image/png",
                          on_click="ignore", width="stretch", help="At the image's full resolution")
    second.download_button("Result (JSON)", json.dumps(record, indent=2), file_name=f"{stem}.json",
                           mime="application/json", key="download_json", on_click="ignore", width="stretch")


def show_result(model: XRayModel, xray: XRay, settings: dict, pane_before: tuple[str, bool] | None) -> None:
    """The result of a full run; pane_before is where the full run before drew the image pane (None: nowhere)."""
    image_details(xray)
    with st.spinner("Running the model…"):
        explanation = explain_image(xray.sha256, xray)
    order = sorted(explanation.labels, key=explanation.probability, reverse=True)
    if st.session_state.get("pathology_image") != xray.sha256 or st.session_state.get("pathology") not in order:
        st.session_state["pathology"] = order[0]  # a new image opens on its most probable finding
        st.session_state["pathology_image"] = xray.sha256

    for notice in xray.notices:
        st.info(notice)
    withheld = out_of_distribution_warning(explanation.ood, xray.sha256)
    place_pane(xray.sha256, withheld, pane_before)
    if withheld:
        with st.container(key=MAPS_WITHHELD):  # greyed out and inert (the page's style) until the reader asks
            result_view(model, xray, explanation, order, settings)
    else:
        result_view(model, xray, explanation, order, settings)


def out_of_distribution_warning(assessment: Assessment | None, image_sha256: str) -> bool:
    """The two-level warning (xai_core.ood); True while the maps of an image that is not a frontal chest
    radiograph stay greyed out (until the reader chooses to see them)."""
    if assessment is None or assessment.level is Level.FRONTAL_CHEST:
        return False
    if assessment.level is Level.DIFFERS:
        differences = "; ".join(assessment.reasons)
        st.warning(f"**{assessment.headline}** {differences[:1].upper()}{differences[1:]}. Read the predictions and maps "
                   "with more caution than usual: the model's figures were measured on films like its training films.",
                   icon="⚠️")
        return False
    st.error(f"**{assessment.headline}** It looks more like another body part, another modality, a photograph or "
             "a document than the frontal chest films the model was trained on, so its predictions and maps "
             "below are very likely meaningless.", icon=":material/block:")
    return not st.toggle("Show the predictions and maps anyway", key=f"reveal_maps_{image_sha256}")


@st.fragment
def result_view(model: XRayModel, xray: XRay, explanation: Explanation, order: list[str], settings: dict) -> None:
    """Probabilities, maps and downloads: picking a pathology or a layer redraws only this part of the page.

    The images are drawn first: the new overlay reaches the page before the table and the downloads.
    """
    images, findings_column = st.columns([7, 3], gap="medium")
    label = st.session_state["pathology"]  # from the pane or the table, before this run (show_result keeps it valid)
    settings = view_settings(settings)
    layers = settings["layers"]
    gradients = None
    if SALIENCY in layers:
        with st.spinner("Computing gradient saliency…"):
            gradients = saliency_for_display(saliency_map(xray.sha256, label, settings["smoothgrad_samples"], xray))

    def overlay_png() -> bytes:
        """The overlay shown, at the image's full resolution (made only when the download is pressed)."""
        picture = display.explanation_overlay(
            xray.pixels, explanation, label, [LAYER_KEYS[layer] for layer in layers], saliency=gradients,
            opacity=settings["opacity"], colormap=settings["colormap"], threshold=settings["outline_threshold"])
        return to_png_bytes(picture, text_metadata={
            "Software": "Chest X-ray explainability viewer", "Disclaimer": DISCLAIMER,
            "model_version": model.version, "label": label, "layers": ", ".join(layers)})

    grey = display_grey(xray.sha256, xray.pixels)
    overlay_title = f"{display_name(label)} · {' + '.join(LAYER_TITLES[layer] for layer in layers) or 'no overlay'}"
    saliency_picture = None if gradients is None else saliency_png(
        xray.sha256, label, settings["smoothgrad_samples"], gradients, grey.shape)
    with images:
        image_pair(xray, explanation, order, grey, overlay_title, label, settings, saliency_picture)
        legend(settings, explanation, label)
        map_evidence(model, label)
        method_comparison(model, xray, explanation, label, grey, settings)

    with findings_column:
        point = operating_point_switch()
    found = findings(explanation, model.card, point)
    record = explanation_record(model, xray, explanation, {**settings, "pathology_shown": label}, point)
    with findings_column:
        probability_table(model, found, label, point)
        st.caption("Press a row, or pick one above the images, to see where the model looked for that pathology.")
        pathology_summary(next(finding for finding in found if finding.label == label))
        downloads(overlay_png, record, label)
        feedback_panel(model, xray, found, label, settings, point)
        send_to_pacs(model, xray, explanation, label, point, settings, map(LAYER_KEYS.get, layers), gradients)


def welcome() -> None:
    st.markdown("##### Where does the model look?")
    st.markdown(
        "Open a chest radiograph to see the model's probabilities for 14 thoracic pathologies and, for each one, "
        "where in the image it looked: a Grad-CAM++ heatmap, gradient saliency and an outline of the strongest "
        "attention. Upload a DICOM, PNG or JPEG file in the sidebar, or try the sample, a real de-identified "
        "adult PA chest radiograph."
    )
    st.button("Open the sample radiograph", on_click=_open_sample, type="primary", disabled=not sample_images())


def main() -> None:
    st.set_page_config(page_title="Chest X-ray explainability viewer", page_icon="🫁", layout="wide",
                       initial_sidebar_state=300)
    # The uploader would show the file's name, which can carry the patient's: it is hidden (screen sharing, teaching).
    st.markdown("<style>.block-container {padding: 2.2rem 1.5rem 1rem 1.5rem;} "
                "[data-testid='stFileUploader'] [data-testid='stFileChipName'] {display: none;} "
                f".st-key-{MAPS_WITHHELD} {{opacity: 0.3; filter: grayscale(1) blur(6px); pointer-events: none; "
                "user-select: none;} </style>",
                unsafe_allow_html=True)
    try:
        with st.spinner("Loading the model…"):
            model = shared_model()
    except XRayError as error:
        st.warning(f"**{DISCLAIMER}**", icon="⚠️")
        st.error(f"The model could not be loaded: {error}")
        return
    header(model)
    pane_before = last_pane_place()  # show_result puts it back when this run draws the pane
    showing = image_source()
    pacs_source(_keep_image)  # only when $XAI_DICOMWEB_URL names a PACS
    settings = overlay_settings()
    image = st.session_state.get("image")
    if image is None:
        welcome()
        return
    name, data, digest = image
    try:
        with st.spinner("Reading the image…"):
            xray = read_image(digest, data)
        metadata = xray.metadata
        showing.caption(f"Showing: {name} · {metadata.format} · {metadata.columns} × {metadata.rows} px")
        show_result(model, xray, settings, pane_before)
    except XRayError as error:
        no_pane()
        st.error(f"This file could not be opened or explained. {error}")
    except Exception:  # noqa: BLE001 - the page must survive; details stay out of the page and the log
        no_pane()
        st.error("Something went wrong while explaining this image. Try another image, or reload the page.")


main()
