"""The page's PACS parts: search, pick and open a radiograph over DICOMweb; send the results back.

Shown only when $XAI_DICOMWEB_URL is set. Layout and widgets only: xai_core.pacs and
xai_core.dicom_out do the work. Patient names are never shown; the retrieved film stays
in memory like an upload.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import streamlit as st

from xai_core.dicom_out import RESEARCH_ONLY, dicom_results, source_header
from xai_core.errors import XRayError
from xai_core.explain import Explanation
from xai_core.imaging import XRay
from xai_core.labels import display_name
from xai_core.model import XRayModel
from xai_core.pacs import InstanceSummary, Pacs, PacsSettings, StudySummary

PACS_IMAGE = "Image from the PACS"  # what a retrieved film is called on the page


def pacs_source(keep_image: Callable[[str, bytes], None]) -> None:
    """In the sidebar: search the PACS, pick a study and an image, open it (as keep_image(name, bytes))."""
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
        study = st.selectbox("Study", studies, format_func=_study_line, key="pacs_study")
        images = [item for item in _instances(settings, study.study_uid) if item.is_image]
        if not images:
            st.info("This study holds no image (only reports or other objects).")
            return
        instance = st.selectbox("Image", images, format_func=_instance_line, key="pacs_instance")
        if st.button("Open image", type="primary", width="stretch", key="pacs_open"):
            try:
                with st.spinner("Retrieving the image…"):
                    keep_image(PACS_IMAGE, Pacs(settings).retrieve_image(instance.study_uid, instance.series_uid,
                                                                         instance.sop_uid))
            except XRayError as error:
                st.error(str(error))


def send_to_pacs(model: XRayModel, xray: XRay, explanation: Explanation, label: str, settings: dict) -> None:
    """A "Send to PACS" button for a DICOM film: its overlay as a Secondary Capture and all findings as an SR."""
    pacs_settings = _settings(show_errors=False)
    image = st.session_state.get("image")
    if pacs_settings is None or image is None or xray.metadata.format != "DICOM":
        return
    if not st.button("Send to PACS", width="stretch", key="pacs_send",
                     help=f"Stores, in the film's study, a Secondary Capture of the {display_name(label)} overlay and "
                     f"a Structured Report of the 14 findings with their outlines. {RESEARCH_ONLY}."):
        return
    try:
        with st.spinner("Sending to the PACS…"):
            results = dicom_results(
                source_header(image[1]), xray, explanation, model, label=label, opacity=settings["opacity"],
                colormap=settings["colormap"], outline_threshold=settings["outline_threshold"],
            )
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
    if not (accession or patient_id or date_from or date_to):
        st.warning("Give an accession number, a patient ID or a date range.")
        return
    try:
        st.session_state["pacs_studies"] = Pacs(settings).search_studies(
            accession_number=accession or None, patient_id=patient_id or None, date_from=date_from, date_to=date_to
        )
    except XRayError as error:
        st.error(str(error))


def _instances(settings: PacsSettings, study_uid: str) -> list[InstanceSummary]:
    """The study's instances, listed once per chosen study."""
    listed = st.session_state.get("pacs_instances")
    if listed is None or listed[0] != study_uid:
        try:
            listed = (study_uid, Pacs(settings).list_instances(study_uid))
        except XRayError as error:
            st.error(str(error))
            return []
        st.session_state["pacs_instances"] = listed
    return listed[1]


def _study_line(study: StudySummary) -> str:
    count = study.instance_count
    count_text = "instances unknown" if count is None else f"{count} instance{'' if count == 1 else 's'}"
    return f"{_readable_date(study.date)} · {', '.join(study.modalities) or 'modality unknown'} · {count_text}"


def _instance_line(item: InstanceSummary) -> str:
    parts = [_readable_date(item.date), item.modality, item.view_position, item.body_part,
             f"series {item.series_number}" if item.series_number is not None else None,
             f"image {item.instance_number}" if item.instance_number is not None else None]
    return " · ".join(part for part in parts if part)


def _readable_date(value: str | None) -> str:
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return "date unknown"
