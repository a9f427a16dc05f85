"""What the DICOM results take from the source radiograph: its header, its patient and study modules, and
the research-use notice every object carries.

The patient and study attributes are copied into the objects because a PACS files them by these; they are
never read for anything else, shown or logged.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pydicom
from pydicom.dataset import Dataset

from .errors import XRayError

RESEARCH_ONLY = "Research use only - not for diagnosis"
MANUFACTURER = "cxr-xai research viewer"

# Patient and general study module attributes copied as they are from the source header.
_COPIED_FROM_SOURCE = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
)
_REQUIRED_SOURCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def source_header(source: bytes | str | os.PathLike) -> Dataset:
    """The header (no pixel data) of the source radiograph, for the objects' study and references."""
    try:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        header = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
        missing = [keyword for keyword in _REQUIRED_SOURCE_UIDS if not header.get(keyword)]
    except Exception:  # noqa: BLE001 - pydicom raises a wide, undocumented range of types on bad bytes
        missing = list(_REQUIRED_SOURCE_UIDS)
    if missing:
        raise XRayError(
            "DICOM results (Secondary Capture and Structured Report) can only be made for a DICOM "
            "radiograph with study, series and instance UIDs; this image has none. "
            "Retrieve the image from the PACS or export it as DICOM."
        )
    return header


def to_bytes(dataset: Dataset) -> bytes:
    """A DICOM Part 10 file of `dataset`, in memory."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def patient_orientation(source: Dataset) -> tuple[str, str]:
    """The source's row and column directions; ("", "") when it has none (the attribute is then empty)."""
    orientation = [str(value) for value in source.get("PatientOrientation") or []]
    return (orientation[0], orientation[1]) if len(orientation) == 2 else ("", "")


def laterality(source: Dataset) -> str:
    """The source's laterality (R or L) where it has one; "" for an unpaired part such as the chest."""
    value = str(source.get("Laterality") or source.get("ImageLaterality") or "").strip()
    return value if value in ("R", "L") else ""


@contextmanager
def quiet_about_names() -> Iterator[None]:
    """Silence highdicom's warning on unusual person names: it quotes the name (a patient identifier)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*person name.*", category=UserWarning)
        yield


def copy_patient_and_study(source: Dataset, target: Dataset) -> None:
    for keyword in _COPIED_FROM_SOURCE:
        if keyword in source:
            setattr(target, keyword, source[keyword].value)


def image_reference(source: Dataset) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return reference
