"""The reader's feedback on the pathology shown, and the audit row of each explanation viewed.

Widgets only: validation, storage and the audit chain are xai_core.store's. A database that
cannot be reached never breaks the page: the form keeps what the reader typed and says so.
"""

from __future__ import annotations

import os
import secrets

import streamlit as st

from xai_core.errors import XRayError
from xai_core.explain import Explanation
from xai_core.imaging import XRay
from xai_core.labels import display_name
from xai_core.model import XRayModel
from xai_core.store import (
    MAX_COMMENT_CHARS,
    FeedbackNotSaved,
    ReaderFeedback,
    SavedFeedback,
    ShownFinding,
    Store,
    database_url,
    open_store,
    record_view,
    save_feedback,
)

USER_HEADER_ENV = "XAI_USER_HEADER"  # e.g. X-Forwarded-User, set by the hospital's reverse proxy
VERDICTS = {"agree": "I agree with the model's flag", "disagree": "I disagree", "unsure": "Unsure"}


@st.cache_resource(show_spinner=False)
def feedback_store(url: str) -> Store:
    """The store, migrated on first use; not cached while it cannot be opened, so the next run retries."""
    return open_store(url)


def reader_name() -> str:
    """The login the reverse proxy passes in $XAI_USER_HEADER, else "anonymous:" and this session's id."""
    header = os.environ.get(USER_HEADER_ENV)
    if header and st.context.headers.get(header):
        return st.context.headers[header]
    return f"anonymous:{st.session_state.setdefault('reader_session', secrets.token_hex(6))}"


def overlay_shown(settings: dict, label: str) -> dict:
    return {"pathology": label, "layers": list(settings.get("layers", [])), "colormap": settings.get("colormap"),
            "opacity": settings.get("opacity"), "outline_threshold": settings.get("outline_threshold")}


def feedback_panel(model: XRayModel, xray: XRay, explanation: Explanation, label: str, settings: dict) -> None:
    """Audit the view once per image, pathology and overlay; offer the feedback form for the pathology shown."""
    overlay = overlay_shown(settings, label)
    try:
        store = feedback_store(database_url())
        _audit_view(store, model, xray, overlay)
    except XRayError as error:
        st.caption(f"Feedback is unavailable right now: {error}")
        return
    with st.expander(f"Your feedback on {display_name(label)}"):
        _feedback_form(store, model, xray, explanation, label, overlay)


def _audit_view(store: Store, model: XRayModel, xray: XRay, overlay: dict) -> None:
    key = (xray.sha256, repr(sorted(overlay.items())))
    if st.session_state.get("audited_view") != key:
        record_view(store, reader_name(), xray, model_version=model.version, pathologies=[overlay["pathology"]],
                    overlay=overlay)
        st.session_state["audited_view"] = key


def _feedback_form(store: Store, model: XRayModel, xray: XRay, explanation: Explanation, label: str,
                   overlay: dict) -> None:
    thresholds = model.thresholds()
    with st.form(f"feedback_{label}", border=False):
        verdict = st.radio("Verdict", list(VERDICTS), format_func=VERDICTS.get, horizontal=True)
        no_finding = st.checkbox("No finding to mark")
        comment = st.text_area("Comment (optional, no patient details)", max_chars=MAX_COMMENT_CHARS)
        keep_image = st.checkbox("Keep this de-identified image for improving the model")
        if not st.form_submit_button("Save feedback"):
            return
    feedback = ReaderFeedback(
        reader=reader_name(), pathology=label, verdict=verdict, model_version=model.version,
        weights_sha256=model.card.weights_sha256,
        shown={name: ShownFinding(explanation.probability(name), thresholds[name]) for name in explanation.labels},
        overlay=overlay, no_finding=no_finding, comment=comment, keep_image=keep_image,
    )
    try:
        saved = save_feedback(store, feedback, xray)
    except FeedbackNotSaved as error:
        st.warning(f"{error} Your answers are still in the form: press Save again.")
    except XRayError as error:
        st.error(f"Nothing was saved. {error}")
    else:
        st.success(_confirmation(saved))


def _confirmation(saved: SavedFeedback) -> str:
    kept = "the de-identified image was kept" if saved.image_kept else "the image itself was not kept"
    marked = "no finding" if saved.no_finding else f"{saved.boxes} box(es)"
    return (f"Saved: '{saved.verdict}' on {display_name(saved.pathology)}, {marked}; {kept} "
            f"(feedback {saved.feedback_id}, audit row {saved.audit_seq}).")
