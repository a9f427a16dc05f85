"""The page's PACS parts: search, pick and open a radiograph over DICOMweb; send the results back.

Shown only when $XAI_DICOMWEB_URL is set. Layout and widgets only: xai_core.pacs and
xai_core.dicom_out do the work. Patient names are never shown; the retrieved film stays
in memory like an upload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

import numpy as np
import streamlit as st

from xai_core.dicom_out import BurnedOverlay, dicom_results
from xai_core.dicom_source import RESEARCH_ONLY, source_header
from xai_core.errors import XRayError
from xai_core.explanation import Explanation
from xai_core.imaging import XRay
from xai_core.labels import display_name
from xai_core.model import XRayModel
from xai_core.operating_points import POINT_NAMES
from xai_core.pacs import MAX_INSTANCES, Pacs, PacsSettings
from xai_core.pacs_records import InstanceListing, InstanceSummary, SeriesSummary, StudySummary

PACS_IMAGE = "Image from the PACS"  # what a retrieved film is called on the page


def pacs_source(keep_image: Callable[[str, bytes], None], *, listed: int = MAX_INSTANCES) -> None:
    """In the sidebar: search the PACS, pick a study and an image, open it (as keep_image(name, bytes)). A study of
    more than `listed` instances says its list is incomplete and offers its series to narrow it."""
    settings = _settings()
    if settings is None:
        return
    with st.sidebar.expander("From PACS", expanded=True):
        st.caption(f"DICOMweb: {settings.location}")
        with st.form("pacs_search", border=False):
            accession = st.text_input("Accession number", key="pacs_accession")
            patient_id = st.text_input("Patient ID", key="pacs_patient_id")
            first, last = st.columns(2)
            date_from = first.date_input("Study date from", value=None, min_value=date(1900, 1, 1))
            date_to = last.date_input("to", value=None, min_value=date(1900, 1, 1))
            searched = st.form_submit_button("Search", width="stretch", key="pacs_search_button")
        if searched:
            _search(settings, accession.strip(), patient_id.strip(), date_from, date_to)
        studies: list[StudySummary] | None = st.session_state.get("pacs_studies")
        if studies is None:
            return
        if not studies:
            st.info("No study matches the search.")
            return
        study = st.selectbox("Study", studies, format_func=StudySummary.line, key="pacs_study")
        listing = _instances(settings, study.study_uid, None, listed)
        if listing is not None and not listing.complete:  # too long: the reader narrows it to one series
            st.warning(listing.notice())
            series = st.selectbox("Series", _series(settings, study.study_uid), index=None, key="pacs_series",
                                  format_func=SeriesSummary.line, placeholder="Pick a series")
            if series is not None:
                listing = _instances(settings, study.study_uid, series.series_uid, listed)
                if listing is not None and not listing.complete:
                    st.warning(listing.notice())
        if listing is None:  # the error is shown
            return
        images = [item for item in listing.instances if item.is_image]
        if not images:
            st.info("This study holds no image (only reports or other objects).")
            return
        instance = st.selectbox("Image", images, format_func=InstanceSummary.line, key="pacs_instance")
        if st.button("Open image", type="primary", width="stretch", key="pacs_open"):
            try:
                with st.spinner("Retrieving the image…"):
                    keep_image(PACS_IMAGE, Pacs(settings).retrieve_image(instance.study_uid, instance.series_uid,
                                                                         instance.sop_uid))
            except XRayError as error:
                st.error(str(error))


def send_to_pacs(model: XRayModel, xray: XRay, explanation: Explanation, label: str, point: str, settings: dict,
                 layers: Iterable[str], saliency: np.ndarray | None) -> None:
    """A "Send to PACS" button for a DICOM film: the overlay as shown (`layers`, by dicom_out's names, and
    `settings`) as a Secondary Capture, and all findings against the operating `point` as an SR."""
    pacs_settings = _settings(show_errors=False)
    image = st.session_state.get("image")
    if pacs_settings is None or image is None or xray.metadata.format != "DICOM":
        return
    samples = settings["smoothgrad_samples"]
    method = f"SmoothGrad saliency ({samples} samples)" if samples else "gradient saliency"
    overlay = BurnedOverlay(layers=tuple(layers), opacity=settings["opacity"], colormap=settings["colormap"],
                            outline_threshold=settings["outline_threshold"], saliency=saliency, saliency_method=method)
    if not st.button("Send to PACS", width="stretch", key="pacs_send",
                     help=f"Stores, in the film's study, a Secondary Capture of {display_name(label)} with the overlay "
                     f"as shown ({overlay.describe()}) and a Structured Report of the 14 findings with their outlines, "
                     f"against the {POINT_NAMES[point]} point. {RESEARCH_ONLY}."):
        return
    try:
        with st.spinner("Sending to the PACS…"):
            results = dicom_results(source_header(image[1]), xray, explanation, model, label=label, overlay=overlay,
                                    point=point)
            receipt = Pacs(pacs_settings).store(results.datasets())
    except XRayError as error:
        st.error(str(error))
        return
    st.success(receipt.describe())


def _settings(show_errors: bool = True) -> PacsSettings | None:
    try:
        return PacsSettings.from_environment()
    except XRayError as error:
        if show_errors:
            st.sidebar.error(f"The PACS connection is misconfigured: {error}")
        return None


def _search(settings: PacsSettings, accession: str, patient_id: str, date_from: date | None,
            date_to: date | None) -> None:
    st.session_state.pop("pacs_studies", None)
    st.session_state.pop("pacs_instances", None)
    st.session_state.pop("pacs_series", None)
    if not (accession or patient_id or date_from or date_to):
        st.warning("Give an accession number, a patient ID or a date range.")
        return
    try:
        st.session_state["pacs_studies"] = Pacs(settings).search_studies(
            accession_number=accession or None, patient_id=patient_id or None, date_from=date_from, date_to=date_to
        )
    except XRayError as error:
        st.error(str(error))


def _instances(settings: PacsSettings, study_uid: str, series_uid: str | None, limit: int) -> InstanceListing | None:
    """The study's (or one series') instances, listed once per choice; None after an error (shown)."""
    listed = st.session_state.setdefault("pacs_instances", {})
    if (study_uid, series_uid) not in listed:
        try:
            listed[study_uid, series_uid] = Pacs(settings).list_instances(study_uid, series_uid, limit=limit)
        except XRayError as error:
            st.error(str(error))
            return None
    return listed[study_uid, series_uid]


def _series(settings: PacsSettings, study_uid: str) -> list[SeriesSummary]:
    try:
        return Pacs(settings).list_series(study_uid)
    except XRayError as error:
        st.error(str(error))
        return []
