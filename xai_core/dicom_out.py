"""Results as DICOM objects a PACS already shows: a Secondary Capture and a TID 1500 Structured Report.

Both objects join the source radiograph's study (its Study Instance UID, patient and
general study modules are copied from the source header), each in a new series with
new UIDs, so a PACS files them beside the film:

- the Secondary Capture is the radiograph with one pathology's attention overlay and
  outline burned in, and the words of ``RESEARCH_ONLY`` burned in and in its header;
- the Comprehensive 3D SR follows TID 1500 (Measurement Report): per pathology, one
  planar ROI group per attention outline, the outline as an SCOORD polygon on the
  source image, the probability and the operating threshold as measurements, and the
  algorithm identification (name, model version, weights sha256) on each of them.

The patient and study attributes are copied into the objects because a PACS files
them by these; they are never read for anything else, shown or logged.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian

from .errors import XRayError
from .explain import Explanation
from .imaging import XRay
from .labels import PATHOLOGIES, display_name, require_label
from .model import XRayModel
from .overlay import DEFAULT_COLORMAP, outline_polygons, render_overlay

RESEARCH_ONLY = "Research use only - not for diagnosis"
MANUFACTURER = "cxr-xai research viewer"
ALGORITHM_NAME = "cxr-xai ResNet-50 Grad-CAM++"
SECONDARY_CAPTURE_SERIES_NUMBER = 9901
STRUCTURED_REPORT_SERIES_NUMBER = 9902
# A local coding scheme (PS3.16 8.2: designators starting "99") for the 14 NIH ChestX-ray14
# labels: they are the model's output classes, not SNOMED findings.
LABEL_SCHEME = "99CXRXAI"
_LABEL_CODES = {label: f"CXR14-{index + 1:02d}" for index, label in enumerate(PATHOLOGIES)}
# Patient and general study module attributes copied as they are from the source header.
_COPIED_FROM_SOURCE = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
)
_REQUIRED_SOURCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


@dataclass(frozen=True)
class DicomResults:
    """The two objects made for one explained radiograph."""

    secondary_capture: Dataset
    structured_report: Dataset

    def datasets(self) -> tuple[Dataset, Dataset]:
        return self.secondary_capture, self.structured_report


@dataclass(frozen=True)
class ReportedFinding:
    """What a Structured Report says about one pathology."""

    label: str
    probability: float
    threshold: float
    model_version: str
    algorithm: str  # Algorithm Name
    algorithm_parameters: tuple[str, ...]  # the weights' sha256 and the outline level among them
    outlines: tuple[np.ndarray, ...]  # (N, 2) float32 (column, row) polygons on the source image


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


def dicom_results(
    source: Dataset,
    xray: XRay,
    explanation: Explanation,
    model: XRayModel,
    *,
    label: str,
    labels: tuple[str, ...] = PATHOLOGIES,
    opacity: float = 0.45,
    colormap: str = DEFAULT_COLORMAP,
    outline_threshold: float = 0.5,
) -> DicomResults:
    """The Secondary Capture of `label`'s overlay and the SR of every label in `labels`."""
    return DicomResults(
        secondary_capture=secondary_capture(
            source, xray, explanation, model, label=label, opacity=opacity, colormap=colormap,
            outline_threshold=outline_threshold,
        ),
        structured_report=structured_report(
            source, explanation, model, labels=labels, outline_threshold=outline_threshold
        ),
    )


def secondary_capture(
    source: Dataset,
    xray: XRay,
    explanation: Explanation,
    model: XRayModel,
    *,
    label: str,
    opacity: float = 0.45,
    colormap: str = DEFAULT_COLORMAP,
    outline_threshold: float = 0.5,
) -> Dataset:
    """The radiograph with `label`'s attention overlay, outline and the research-use notice burned in."""
    label = require_label(label)
    attention = explanation.normalized_map(label)
    rgb = render_overlay(
        xray.pixels, heatmap=attention, outline_map=attention, opacity=opacity, colormap=colormap,
        threshold=outline_threshold,
    )
    caption = (
        f"{RESEARCH_ONLY} | {display_name(label)}: probability {explanation.probability(label):.2f}, "
        f"Grad-CAM++ | model {model.version}"
    )
    with _quiet_about_names():
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=_burn_in(rgb, caption),
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=hd.UID(),
            series_number=SECONDARY_CAPTURE_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            patient_orientation=_patient_orientation(source),
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
    _copy_patient_and_study(source, image)
    image.BodyPartExamined = source.get("BodyPartExamined", "")
    if _laterality(source):
        image.Laterality = _laterality(source)
    image.BurnedInAnnotation = "YES"
    image.ImageComments = f"{RESEARCH_ONLY}. Attention overlay (Grad-CAM++) for {display_name(label)}."
    image.SeriesDescription = f"XAI overlay - {RESEARCH_ONLY}"
    image.DerivationDescription = f"Grad-CAM++ overlay of model {model.version} for {display_name(label)}"
    image.SourceImageSequence = [_image_reference(source)]
    return image


def structured_report(
    source: Dataset,
    explanation: Explanation,
    model: XRayModel,
    *,
    labels: tuple[str, ...] = PATHOLOGIES,
    outline_threshold: float = 0.5,
) -> Dataset:
    """A TID 1500 Measurement Report: per pathology, its probability, threshold and attention outlines."""
    algorithm = hd.sr.AlgorithmIdentification(
        name=ALGORITHM_NAME,
        version=model.version,
        parameters=[
            f"weights sha256 {model.card.weights_sha256}",
            f"outline where the normalised Grad-CAM++ map >= {outline_threshold:g}",
        ],
    )
    thresholds = model.thresholds()
    groups = [
        group
        for label in (require_label(name) for name in labels)
        for group in _finding_groups(
            source, explanation, label, thresholds[label], algorithm, outline_threshold
        )
    ]
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=ALGORITHM_NAME, manufacturer_name=MANUFACTURER, model_name=model.version
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.PlainRadiography,
        imaging_measurements=groups,
    )
    with _quiet_about_names():
        document = hd.sr.Comprehensive3DSR(
            evidence=[source],
            content=report[0],
            series_instance_uid=hd.UID(),
            series_number=STRUCTURED_REPORT_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
        )
    _copy_patient_and_study(source, document)
    document.SeriesDescription = f"XAI findings - {RESEARCH_ONLY}"
    return document


def read_findings(report: Dataset) -> dict[str, ReportedFinding]:
    """The findings of a Structured Report written by `structured_report`, by pathology."""
    labels_by_code = {code: label for label, code in _LABEL_CODES.items()}
    try:
        content = hd.sr.Comprehensive3DSR.from_dataset(report, copy=True).content
        groups_by_label: dict[str, list] = {}
        for group in [*content.get_planar_roi_measurement_groups(), *content.get_image_measurement_groups()]:
            label = labels_by_code.get(group.finding_type.value) if group.finding_type else None
            if label is not None:
                groups_by_label.setdefault(label, []).append(group)
        return {label: _reported_finding(label, groups) for label, groups in groups_by_label.items()}
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        raise XRayError(
            "The DICOM object is not a measurement report (TID 1500) of this viewer's findings."
        ) from None


def _reported_finding(label: str, groups: list) -> ReportedFinding:
    measurements = {item.name.value: item for item in groups[0].get_measurements()}
    probability = measurements[codes.DCM.Probability.value]
    return ReportedFinding(
        label=label,
        probability=float(probability.value),
        threshold=float(measurements[codes.DCM.ThresholdValue.value].value),
        model_version=_algorithm_texts(probability, codes.DCM.AlgorithmVersion)[0],
        algorithm=_algorithm_texts(probability, codes.DCM.AlgorithmName)[0],
        algorithm_parameters=tuple(_algorithm_texts(probability, codes.DCM.AlgorithmParameters)),
        outlines=tuple(
            np.asarray(group.roi.value, dtype=np.float32)
            for group in groups
            if isinstance(group, hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations)
        ),
    )


def _algorithm_texts(measurement: hd.sr.Measurement, name: Code) -> list[str]:
    """The values of one item of the Algorithm Identification (TID 4019) recorded with a measurement."""
    texts = [str(item.TextValue) for item in measurement[0].ContentSequence if item.name == name]
    return texts or ["unknown"]


def to_bytes(dataset: Dataset) -> bytes:
    """A DICOM Part 10 file of `dataset`, in memory."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_results(results: DicomResults, folder: Path, stem: str) -> list[Path]:
    """Write <stem>_sc.dcm and <stem>_sr.dcm into folder; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}_sc.dcm", folder / f"{stem}_sr.dcm"]
    for path, dataset in zip(paths, results.datasets()):
        path.write_bytes(to_bytes(dataset))
    return paths


def _finding_groups(
    source: Dataset,
    explanation: Explanation,
    label: str,
    threshold: float,
    algorithm: hd.sr.AlgorithmIdentification,
    outline_threshold: float,
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    """One planar ROI group per attention outline of `label` (TID 1410 holds one region per group)."""
    finding = hd.sr.CodedConcept(value=_LABEL_CODES[label], scheme_designator=LABEL_SCHEME, meaning=display_name(label))
    measurements = [
        hd.sr.Measurement(name=codes.DCM.Probability, value=explanation.probability(label),
                          unit=codes.UCUM.NoUnits, algorithm_id=algorithm),
        hd.sr.Measurement(name=codes.DCM.ThresholdValue, value=threshold, unit=codes.UCUM.NoUnits,
                          algorithm_id=algorithm),
    ]
    polygons = outline_polygons(explanation.normalized_map(label), outline_threshold)
    if not polygons:  # a flat map or only specks: the finding is reported without a region (TID 1501)
        return [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=display_name(label)),
                finding_type=finding,
                method=codes.DCM.Saliency,
                algorithm_id=algorithm,
                measurements=measurements,
            )
        ]
    return [
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=hd.UID(), identifier=f"{display_name(label)} attention region {number}"
            ),
            referenced_region=hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=polygon.astype(np.float32),
                source_image=hd.sr.SourceImageForRegion.from_source_image(source),
            ),
            finding_type=finding,
            method=codes.DCM.Saliency,
            algorithm_id=algorithm,
            measurements=measurements,
        )
        for number, polygon in enumerate(polygons, start=1)
    ]


def _burn_in(rgb: np.ndarray, caption: str) -> np.ndarray:
    """The caption in white on a black band along the top; on an image too narrow for it, the notice alone."""
    width = rgb.shape[1]
    font = ImageFont.load_default(size=max(12, width // 60))
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
    margin = max(4, (bottom - top) // 3)
    if right - left + 2 * margin > width:
        caption = RESEARCH_ONLY
    draw.rectangle((0, 0, width, bottom - top + 2 * margin), fill=(0, 0, 0))
    draw.text((margin - left, margin - top), caption, font=font, fill=(255, 255, 255))
    return np.asarray(image)


def _patient_orientation(source: Dataset) -> tuple[str, str]:
    """The source's row and column directions; ("", "") when it has none (the attribute is then empty)."""
    orientation = [str(value) for value in source.get("PatientOrientation") or []]
    return (orientation[0], orientation[1]) if len(orientation) == 2 else ("", "")


def _laterality(source: Dataset) -> str:
    """The source's laterality (R or L) where it has one; "" for an unpaired part such as the chest."""
    value = str(source.get("Laterality") or source.get("ImageLaterality") or "").strip()
    return value if value in ("R", "L") else ""


@contextmanager
def _quiet_about_names() -> Iterator[None]:
    """Silence highdicom's warning on unusual person names: it quotes the name (a patient identifier)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*person name.*", category=UserWarning)
        yield


def _copy_patient_and_study(source: Dataset, target: Dataset) -> None:
    for keyword in _COPIED_FROM_SOURCE:
        if keyword in source:
            setattr(target, keyword, source[keyword].value)


def _image_reference(source: Dataset) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return reference
