"""The reader's feedback on the pathology shown, and the audit row of each explanation viewed.

Widgets only: validation, storage and the audit chain are xai_core.store's. The reader may draw where the
finding really is on the radiograph (app/box_drawing.js, inside the form: drawing sends nothing until "Save
feedback"). What is stored beside the verdict is what the page showed: the probabilities and the thresholds of
the operating point the reader flags findings at. A database that cannot be reached never breaks the page:
the form keeps what the reader typed and drew, and says so.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import numpy as np
import streamlit as st

from xai_core.alignment import Box
from xai_core.errors import XRayError
from xai_core.findings import Finding
from xai_core.imaging import XRay
from xai_core.labels import display_name
from xai_core.model import XRayModel
from xai_core.operating_points import POINT_NAMES
from xai_core.overlay import display_shape, render_overlay, resize_grey, to_jpeg_bytes
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
DRAWING_SIDE = 768  # longest side of the picture drawn on, in pixels; the boxes are kept in the image's own
FORM_ROUND = "feedback_round"  # a new, empty form after each save
OUTCOME = "feedback_outcome"  # (image, pathology), kind and words of the last save, shown above the form
OPENED = "feedback_open"  # the panel's state: the form (its film picture included) is drawn only once it was opened
STARTED = "feedback_forms_opened"  # the forms opened in this session, kept drawn while the panel is closed again
APP = Path(__file__).resolve().parent
BOX_DRAWING = st.components.v2.component("chest_xray_viewer.box_drawing", css=(APP / "box_drawing.css").read_text(),
                                         js=(APP / "box_drawing.js").read_text(), isolate_styles=False)


@st.cache_resource(show_spinner=False)
def feedback_store(url: str) -> Store:
    """The store, migrated on first use; not cached while it cannot be opened, so the next run retries."""
    return open_store(url)


@st.cache_data(max_entries=8, ttl=3600, show_spinner=False)
def drawing_picture(image_sha256: str, _pixels: np.ndarray) -> bytes:
    """The radiograph as the model read it, small enough to send with every redraw (JPEG)."""
    return to_jpeg_bytes(render_overlay(resize_grey(_pixels, display_shape(_pixels.shape, DRAWING_SIDE))))


def reader_name() -> str:
    """The login the reverse proxy passes in $XAI_USER_HEADER, else "anonymous:" and this session's id."""
    header = os.environ.get(USER_HEADER_ENV)
    if header and st.context.headers.get(header):
        return st.context.headers[header]
    return f"anonymous:{st.session_state.setdefault('reader_session', secrets.token_hex(6))}"


def overlay_shown(settings: dict, label: str) -> dict:
    return {"pathology": label, "layers": list(settings.get("layers", [])), "colormap": settings.get("colormap"),
            "opacity": settings.get("opacity"), "outline_threshold": settings.get("outline_threshold")}


def shown_findings(found: tuple[Finding, ...]) -> dict[str, ShownFinding]:
    """Every probability with the threshold it was flagged against (None where the card has no such point)."""
    return {finding.label: ShownFinding(finding.probability, finding.cut) for finding in found}


def feedback_panel(model: XRayModel, xray: XRay, found: tuple[Finding, ...], label: str, settings: dict,
                   point: str) -> None:
    """Audit the view once per image, pathology, overlay and operating point; offer the feedback form, drawn only
    once the reader opens its panel (closed, it would cost every first result a quarter of a second in the browser).
    found: the findings the page shows (xai_core.findings, at `point`)."""
    overlay = overlay_shown(settings, label)
    try:
        store = feedback_store(database_url())
    except XRayError as error:
        st.caption(f"Feedback is unavailable right now: {error}")
        return
    try:
        _audit_view(store, model, xray, overlay, point)
    except FeedbackNotSaved as error:  # audited on a later run; the form stays, keeping what the reader typed or drew
        (st.warning if st.session_state.get(STARTED) else st.caption)(f"Feedback cannot be saved right now: {error}")
    except XRayError as error:  # a reader name the store refuses: nothing can be saved under it
        st.caption(f"Feedback is unavailable right now: {error}")
        return
    panel = st.expander(f"Your feedback on {display_name(label)}", key=OPENED, on_change="rerun")
    form = f"feedback_{xray.sha256[:16]}_{label}_{st.session_state.get(FORM_ROUND, 0)}"
    started = st.session_state.setdefault(STARTED, set())
    if panel.open:
        started.add(form)
    if form in started:  # drawn while closed too, once opened: what the reader typed or drew stays in the form
        with panel:
            _feedback_form(store, model, xray, found, label, overlay, point, form)


def _audit_view(store: Store, model: XRayModel, xray: XRay, overlay: dict, point: str) -> None:
    key = (xray.sha256, repr(sorted(overlay.items())), point)
    if st.session_state.get("audited_view") != key:
        record_view(store, reader_name(), xray, model_version=model.version, pathologies=[overlay["pathology"]],
                    overlay=overlay, operating_point=point)
        st.session_state["audited_view"] = key


def _feedback_form(store: Store, model: XRayModel, xray: XRay, found: tuple[Finding, ...], label: str,
                   overlay: dict, point: str, form: str) -> None:
    """The form; "Save feedback" stores it in its callback, before the page is drawn again, so the outcome and
    (after a save) an empty form are what the reader sees next. The model is not run again."""
    shown = shown_findings(found)
    outcome = st.session_state.get(OUTCOME)
    if outcome and outcome[0] == (xray.sha256, label):
        {"saved": st.success, "retry": st.warning, "refused": st.error}[outcome[1]](outcome[2])
    finding = next(finding for finding in found if finding.label == label)
    st.caption(f"The model's flag, probability {finding.probability:.3f}: {finding.flag_words()}.")
    rows, columns = xray.pixels.shape[:2]
    with st.form(form, border=False):
        st.radio("Verdict", list(VERDICTS), format_func=VERDICTS.get, horizontal=True, key=f"{form}_verdict")
        st.markdown("**Draw where it really is** (optional): drag a box around each finding on the film.")
        BOX_DRAWING(key=f"{form}_boxes", data={
            "image": f"{xray.sha256}:{form}", "size": [columns, rows],
            "picture": "data:image/jpeg;base64," + base64.b64encode(drawing_picture(xray.sha256, xray.pixels)).decode(),
        }, default={"boxes": []}, on_boxes_change=lambda: None)  # the state is read when the form is saved
        st.checkbox("No finding to mark", key=f"{form}_no_finding",
                    help="There is nothing of this pathology on the film to draw")
        st.text_area("Comment (optional, no patient details)", max_chars=MAX_COMMENT_CHARS, key=f"{form}_comment")
        st.checkbox("Keep this de-identified image for improving the model", key=f"{form}_keep_image")
        st.form_submit_button("Save feedback", on_click=_save, args=(store, model, xray, shown, label, overlay,
                                                                      point, form))


def _save(store: Store, model: XRayModel, xray: XRay, shown: dict[str, ShownFinding], label: str, overlay: dict,
          point: str, form: str) -> None:
    """Store the form's feedback in one transaction; keep the outcome for the page, and a fresh form after a save."""
    values = st.session_state
    where = (xray.sha256, label)
    try:
        feedback = ReaderFeedback(
            reader=reader_name(), pathology=label, verdict=values[f"{form}_verdict"], model_version=model.version,
            weights_sha256=model.card.weights_sha256, shown=shown, operating_point=point, overlay=overlay,
            boxes=_boxes((values.get(f"{form}_boxes") or {}).get("boxes")),
            no_finding=values[f"{form}_no_finding"], comment=values[f"{form}_comment"] or "",
            keep_image=values[f"{form}_keep_image"],
        )
        saved = save_feedback(store, feedback, xray)
    except FeedbackNotSaved as error:
        values[OUTCOME] = (where, "retry", f"{error} Your answers and boxes are still in the form: press Save again.")
    except XRayError as error:
        values[OUTCOME] = (where, "refused", f"Nothing was saved. {error}")
    else:
        values[OUTCOME] = (where, "saved", _confirmation(saved))
        values[FORM_ROUND] = values.get(FORM_ROUND, 0) + 1


def _boxes(drawn: object) -> list[Box]:
    """The boxes the component sent, as Box (in the image's pixels); anything else is refused."""
    try:
        return [Box(float(box["x"]), float(box["y"]), float(box["w"]), float(box["h"])) for box in drawn or []]
    except (KeyError, TypeError, ValueError) as error:
        raise XRayError("The boxes drawn could not be read; clear them and draw them again.") from error


def _confirmation(saved: SavedFeedback) -> str:
    marked = ("marked 'no finding'" if saved.no_finding
              else f"{saved.boxes} box{'' if saved.boxes == 1 else 'es'} drawn")
    comment = f"a comment of {saved.comment_chars} characters" if saved.comment_chars else "no comment"
    kept = "the de-identified image was kept" if saved.image_kept else "the image itself was not kept"
    return (f"Saved: '{saved.verdict}' on {display_name(saved.pathology)} (flags at the "
            f"{POINT_NAMES[saved.operating_point]} point), {marked}, {comment}; {kept} "
            f"(feedback {saved.feedback_id}, audit row {saved.audit_seq}).")
