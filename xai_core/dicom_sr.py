"""The findings as a Comprehensive 3D SR following TID 1500 (Measurement Report), and read back.

Per pathology: one planar ROI group per attention outline (TID 1410 holds one region per group), the outline as
an SCOORD polygon on the source image, the probability and the threshold of the model card's operating point the
reader flagged at (chosen on validation films) as measurements, the point's name, whether the probability
reaches it and the verdict's kind as qualitative evaluations, and the algorithm identification (name, model
version, weights sha256) on each. A pathology whose map has no outline is reported without a region (TID 1501);
one for which the card has no such point gets no threshold. The probability, threshold, flag and verdict are the
pathology's `findings.Finding`, as the page, the command line and the JSON record show it. The SR joins the
source's study in a new series (dicom_source).
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from .dicom_source import MANUFACTURER, RESEARCH_ONLY, copy_patient_and_study, quiet_about_names
from .errors import XRayError
from .explanation import Explanation
from .findings import Finding, findings
from .labels import PATHOLOGIES, require_label
from .model import XRayModel
from .operating_points import HIGH_SENSITIVITY, HIGH_SPECIFICITY, POINT_NAMES
from .overlay import outline_polygons
from .verdict import NOT_SHOWN, TOO_FEW, WEAK, WORKS

ALGORITHM_NAME = "cxr-xai ResNet-50 Grad-CAM++"
STRUCTURED_REPORT_SERIES_NUMBER = 9902
# A local coding scheme (PS3.16 8.2: designators starting "99") for the 14 NIH ChestX-ray14
# labels: they are the model's output classes, not SNOMED findings.
LABEL_SCHEME = "99CXRXAI"
_LABEL_CODES = {label: f"CXR14-{index + 1:02d}" for index, label in enumerate(PATHOLOGIES)}
# The operating point a finding was flagged against, in the same local scheme.
_POINT_CONCEPT = hd.sr.CodedConcept(value="OPERATING-POINT", scheme_designator=LABEL_SCHEME, meaning="Operating point")
_POINT_CODES = {HIGH_SPECIFICITY: "HIGH-SPECIFICITY", HIGH_SENSITIVITY: "HIGH-SENSITIVITY"}
_NO_POINT_CODE = "NO-POINT"
_FLAGGED_CONCEPT = hd.sr.CodedConcept(value="AT-OPERATING-POINT", scheme_designator=LABEL_SCHEME,
                                      meaning="Probability at or above the operating point")
# The label's verdict (verdict.py) on the card's test films, by its kind; "none" where the card has no verdict.
_EVIDENCE_CONCEPT = hd.sr.CodedConcept(value="EVIDENCE", scheme_designator=LABEL_SCHEME,
                                       meaning="Evidence on test films")
_EVIDENCE_CODES = {WORKS: "WORKS", WEAK: "WEAK", NOT_SHOWN: "NOT-SHOWN", TOO_FEW: "TOO-FEW", "none": "NO-VERDICT"}


@dataclass(frozen=True)
class ReportedFinding:
    """What a Structured Report says about one pathology."""

    label: str
    probability: float
    threshold: float | None  # the operating point's; None where the model card has no such point for the label
    operating_point: str | None  # "high_specificity" or "high_sensitivity"; None where the card has none
    flagged: bool | None  # whether the probability reaches the point; None without a point
    evidence: str  # the verdict's kind ("works", "weak", ...), "none" where the card has no verdict
    model_version: str
    algorithm: str  # Algorithm Name
    algorithm_parameters: tuple[str, ...]  # the weights' sha256 and the outline level among them
    outlines: tuple[np.ndarray, ...]  # (N, 2) float32 (column, row) polygons on the source image


def structured_report(
    source: Dataset,
    explanation: Explanation,
    model: XRayModel,
    *,
    labels: tuple[str, ...] = PATHOLOGIES,
    point: str = HIGH_SPECIFICITY,
    outline_threshold: float = 0.5,
) -> Dataset:
    """A TID 1500 Measurement Report: per pathology, its probability, the threshold of the card's operating `point`
    (the one the reader flagged at), whether the probability reaches it, its verdict and its attention outlines."""
    found = {finding.label: finding for finding in findings(explanation, model.card, point)}
    section = model.card.operating_points
    algorithm = hd.sr.AlgorithmIdentification(
        name=ALGORITHM_NAME,
        version=model.version,
        parameters=[
            f"weights sha256 {model.card.weights_sha256}",
            f"outline where the normalised Grad-CAM++ map >= {outline_threshold:g}",
            f"flagged at the {POINT_NAMES[point]} point, "
            + (f"chosen on {section.chosen_on}" if section else "which this model card does not hold"),
        ],
    )
    groups = [
        group
        for label in (require_label(name) for name in labels)
        for group in _finding_groups(source, explanation, found[label], algorithm, outline_threshold)
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
    with quiet_about_names():
        document = hd.sr.Comprehensive3DSR(
            evidence=[source],
            content=report[0],
            series_instance_uid=hd.UID(),
            series_number=STRUCTURED_REPORT_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
        )
    copy_patient_and_study(source, document)
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
    evaluations = {item.name.value: item.value.value for item in groups[0].get_qualitative_evaluations()}
    probability = measurements[codes.DCM.Probability.value]
    threshold = measurements.get(codes.DCM.ThresholdValue.value)
    points_by_code = {code: point for point, code in _POINT_CODES.items()}
    flagged = evaluations.get(_FLAGGED_CONCEPT.value)
    kinds_by_code = {code: kind for kind, code in _EVIDENCE_CODES.items()}
    return ReportedFinding(
        label=label,
        probability=float(probability.value),
        threshold=None if threshold is None else float(threshold.value),
        operating_point=points_by_code.get(evaluations[_POINT_CONCEPT.value]),
        flagged=None if flagged is None else flagged == codes.SCT.Yes.value,
        evidence=kinds_by_code[evaluations[_EVIDENCE_CONCEPT.value]],
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


def _finding_groups(
    source: Dataset,
    explanation: Explanation,
    finding: Finding,
    algorithm: hd.sr.AlgorithmIdentification,
    outline_threshold: float,
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    """One planar ROI group per attention outline of the finding's label (TID 1410 holds one region per group)."""
    label, point = finding.label, finding.point
    finding_type = hd.sr.CodedConcept(value=_LABEL_CODES[label], scheme_designator=LABEL_SCHEME, meaning=finding.name)
    measurements = [hd.sr.Measurement(name=codes.DCM.Probability, value=finding.probability, unit=codes.UCUM.NoUnits,
                                      algorithm_id=algorithm)]
    if finding.cut is None:
        evaluations = [hd.sr.QualitativeEvaluation(_POINT_CONCEPT, hd.sr.CodedConcept(
            value=_NO_POINT_CODE, scheme_designator=LABEL_SCHEME, meaning=f"No {POINT_NAMES[point]} point"))]
    else:
        measurements.append(hd.sr.Measurement(name=codes.DCM.ThresholdValue, value=finding.cut,
                                              unit=codes.UCUM.NoUnits, algorithm_id=algorithm))
        evaluations = [
            hd.sr.QualitativeEvaluation(_POINT_CONCEPT, hd.sr.CodedConcept(
                value=_POINT_CODES[point], scheme_designator=LABEL_SCHEME, meaning=POINT_NAMES[point].capitalize())),
            hd.sr.QualitativeEvaluation(_FLAGGED_CONCEPT, codes.SCT.Yes if finding.flagged else codes.SCT.No),
        ]
    evaluations.append(hd.sr.QualitativeEvaluation(_EVIDENCE_CONCEPT, hd.sr.CodedConcept(
        value=_EVIDENCE_CODES[finding.evidence], scheme_designator=LABEL_SCHEME,
        meaning=finding.evidence.capitalize())))
    polygons = outline_polygons(explanation.normalized_map(label), outline_threshold)
    if not polygons:  # a flat map or only specks: the finding is reported without a region (TID 1501)
        return [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=finding.name),
                finding_type=finding_type,
                method=codes.DCM.Saliency,
                algorithm_id=algorithm,
                measurements=measurements,
                qualitative_evaluations=evaluations,
            )
        ]
    return [
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=hd.UID(), identifier=f"{finding.name} attention region {number}"
            ),
            referenced_region=hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=polygon.astype(np.float32),
                source_image=hd.sr.SourceImageForRegion.from_source_image(source),
            ),
            finding_type=finding_type,
            method=codes.DCM.Saliency,
            algorithm_id=algorithm,
            measurements=measurements,
            qualitative_evaluations=evaluations,
        )
        for number, polygon in enumerate(polygons, start=1)
    ]
