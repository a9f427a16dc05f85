"""What a reader hands in, checked, and stored in one transaction with its audit row.

What is kept is what a reader saw and said, never who the patient is: the hash of the image's
pixels, the model version and weights hash, the probabilities shown and the thresholds of the
operating point the flags were shown against, the overlay settings, the reader and the time. The
image itself is kept only when the reader consents, as a greyscale PNG with no header, its longest
side at most 1024 px.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from PIL import Image

from ..alignment import Box
from ..errors import XRayError
from ..imaging import XRay
from ..labels import require_label
from ..operating_points import POINT_NAMES
from .audit import append_audit
from .database import Store, write_transaction
from .schema import MAX_COMMENT_CHARS, ConsentedImage, FeedbackBox, FeedbackRecord

MAX_IMAGE_SIDE = 1024
MAX_OVERLAY_JSON_CHARS = 2000
_READER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+:\-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

Verdict = Literal["agree", "disagree", "unsure"]
VERDICTS: tuple[str, ...] = get_args(Verdict)


@dataclass(frozen=True)
class ShownFinding:
    """A probability as the viewer displayed it, and the threshold it was flagged against.

    `threshold` is the chosen operating point's cut for this label, None where the model card has
    no such point for it (the page then shows no flag).
    """

    probability: float
    threshold: float | None


@dataclass(frozen=True)
class ReaderFeedback:
    """What a reader said about one pathology of the image in front of them.

    `operating_point` names the point the page flagged findings at (operating_points.POINT_NAMES);
    `boxes` (in the image's pixels) say where the finding is; `no_finding` says there is none to
    draw; `keep_image` is the reader's consent to keep a de-identified copy.
    """

    reader: str
    pathology: str
    verdict: Verdict
    model_version: str
    weights_sha256: str | None
    shown: Mapping[str, ShownFinding]
    operating_point: str
    overlay: Mapping[str, object] = field(default_factory=dict)
    boxes: Sequence[Box] = ()
    no_finding: bool = False
    comment: str = ""
    keep_image: bool = False


@dataclass(frozen=True)
class SavedFeedback:
    """The confirmation the page shows: what was stored, under which audit row."""

    feedback_id: int
    audit_seq: int
    pathology: str
    verdict: str
    operating_point: str
    comment_chars: int
    boxes: int
    no_finding: bool
    image_kept: bool


# --- checks -------------------------------------------------------------------------


def require_reader(reader: str) -> str:
    """A reader name as the reverse proxy or the session gives it: letters, digits and . _ @ + : -"""
    if not isinstance(reader, str) or not _READER.fullmatch(reader):
        raise XRayError(
            "The reader's name may only hold letters, digits and . _ @ + : - (at most 128 characters); "
            "ask the administrator to check the login header."
        )
    return reader


def _require_comment(comment: str) -> str:
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise XRayError(f"The comment is {len(comment)} characters long; at most {MAX_COMMENT_CHARS} can be saved.")
    if _CONTROL.search(comment):
        raise XRayError("The comment contains control characters; please retype it as plain text.")
    return comment


def _require_boxes(boxes: Sequence[Box], no_finding: bool, rows: int, columns: int) -> list[Box]:
    if no_finding and boxes:
        raise XRayError("Either draw boxes or mark 'no finding', not both.")
    for number, box in enumerate(boxes, start=1):
        if box.x < 0 or box.y < 0 or box.x + box.w > columns or box.y + box.h > rows:
            raise XRayError(
                f"Box {number} reaches outside the image ({columns} x {rows} pixels); draw it inside the radiograph."
            )
    return list(boxes)


def _fraction(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1


def _require_shown(shown: Mapping[str, ShownFinding], pathology: str) -> dict[str, dict[str, float | None]]:
    checked = {}
    for label, finding in shown.items():
        if not _fraction(finding.probability) or not (finding.threshold is None or _fraction(finding.threshold)):
            raise XRayError(f"The probability and threshold shown for {label} must lie between 0 and 1.")
        checked[require_label(label)] = {"probability": float(finding.probability),
                                         "threshold": None if finding.threshold is None else float(finding.threshold)}
    if pathology not in checked:
        raise XRayError(f"The feedback is about {pathology}, but its probability was not among those shown.")
    return checked


def _require_operating_point(point: str) -> str:
    if point not in POINT_NAMES:
        raise XRayError(f"The operating point must be one of {', '.join(POINT_NAMES)}.")
    return point


def require_overlay(overlay: Mapping[str, object]) -> dict[str, object]:
    try:
        encoded = json.dumps(dict(overlay), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise XRayError("The overlay settings must be plain numbers, words and lists.") from error
    if len(encoded) > MAX_OVERLAY_JSON_CHARS:
        raise XRayError("The overlay settings are too long to store.")
    return json.loads(encoded)


def require_short(value: str | None, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64 or _CONTROL.search(value):
        raise XRayError(f"The {what} must be a short text of at most 64 characters.")
    return value


# --- images -------------------------------------------------------------------------


def pixel_sha256(xray: XRay) -> str:
    """A hash of the image's pixels that does not change with the display window or the file's header.

    Greyscale DICOMs hash their modality values, other images their decoded pixels.
    """
    values = xray.modality_values if xray.modality_values is not None else xray.pixels
    values = np.ascontiguousarray(values)
    digest = hashlib.sha256(f"{values.dtype.str}{values.shape}".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def deidentified_png(pixels: np.ndarray) -> bytes:
    """8-bit greyscale PNG of the pixels, longest side at most MAX_IMAGE_SIDE, no metadata chunks."""
    grey = np.clip(np.nan_to_num(np.asarray(pixels, dtype=np.float32)), 0.0, 1.0)
    image = Image.fromarray(np.round(grey * 255).astype(np.uint8))
    image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- writing ------------------------------------------------------------------------


def record_view(store: Store, reader: str, xray: XRay, *, model_version: str, pathologies: Sequence[str],
                overlay: Mapping[str, object], operating_point: str | None = None) -> int:
    """Audit an explanation shown to a reader; returns the audit row's sequence number."""
    details = {
        "pixel_sha256": pixel_sha256(xray),
        "model_version": require_short(model_version, "model version"),
        "pathologies": [require_label(label) for label in pathologies],
        "overlay": require_overlay(overlay),
    }
    if operating_point is not None:
        details["operating_point"] = _require_operating_point(operating_point)
    reader = require_reader(reader)
    with write_transaction(store) as session:
        return append_audit(session, store.clock(), reader, "explanation_viewed", details).seq


def save_feedback(store: Store, feedback: ReaderFeedback, xray: XRay) -> SavedFeedback:
    """Validate and store one reader's feedback in one transaction, with its audit row.

    Raises XRayError (nothing stored) for bad input, FeedbackNotSaved when the database
    cannot take it right now.
    """
    rows, columns = xray.pixels.shape[:2]
    pathology = require_label(feedback.pathology)
    if feedback.verdict not in VERDICTS:
        raise XRayError(f"The verdict must be one of {', '.join(VERDICTS)}.")
    record = FeedbackRecord(
        reader=require_reader(feedback.reader),
        pixel_sha256=pixel_sha256(xray),
        image_rows=rows,
        image_columns=columns,
        model_version=require_short(feedback.model_version, "model version"),
        weights_sha256=require_short(feedback.weights_sha256, "weights hash", optional=True),
        pathology=pathology,
        verdict=feedback.verdict,
        no_finding=bool(feedback.no_finding),
        comment=_require_comment(feedback.comment),
        operating_point=_require_operating_point(feedback.operating_point),
        shown=_require_shown(feedback.shown, pathology),
        overlay=require_overlay(feedback.overlay),
        boxes=[FeedbackBox(x=b.x, y=b.y, w=b.w, h=b.h)
               for b in _require_boxes(feedback.boxes, feedback.no_finding, rows, columns)],
    )
    png = deidentified_png(xray.pixels) if feedback.keep_image else None
    with write_transaction(store) as session:
        record.saved_at = store.clock()
        session.add(record)
        if png is not None and session.get(ConsentedImage, record.pixel_sha256) is None:
            with Image.open(io.BytesIO(png)) as image:
                width, height = image.size
            session.add(ConsentedImage(pixel_sha256=record.pixel_sha256, png=png, width=width, height=height,
                                       saved_at=record.saved_at))
        session.flush()
        audit = append_audit(session, record.saved_at, record.reader, "feedback_saved", {
            "feedback_id": record.id, "pixel_sha256": record.pixel_sha256, "pathology": pathology,
            "verdict": record.verdict, "model_version": record.model_version,
            "operating_point": record.operating_point, "image_kept": png is not None,
        })
        return SavedFeedback(record.id, audit.seq, pathology, record.verdict, record.operating_point,
                             len(record.comment), len(record.boxes), record.no_finding, png is not None)
