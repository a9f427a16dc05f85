"""The DICOM results of the chest film: the Secondary Capture burns in exactly the overlay shown, the TID 1500 SR
records the operating point flagged at, both read back and pass dciodvfy. (Their trip through a real PACS is in
test_pacs.py.)"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from orthanc_server import require_tool

from xai_core import dicom_out, dicom_source, dicom_sr
from xai_core.errors import XRayError
from xai_core.explanation import explain, saliency
from xai_core.findings import findings
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES
from xai_core.operating_points import POINT_NAMES
from xai_core.overlay import outline_polygons, render_overlay, saliency_for_display


@pytest.fixture(scope="module")
def results(chest_dicom, model):
    """The film explained, and its SC (Cardiomegaly, the page's default overlay) and SR, in memory."""
    data = chest_dicom.read_bytes()
    xray = read_xray(data)
    explanation = explain(model, xray)
    source = dicom_source.source_header(data)
    return source, xray, explanation, dicom_out.dicom_results(source, xray, explanation, model, label="Cardiomegaly")


def test_secondary_capture_joins_the_source_study_in_a_new_series(results) -> None:
    source, xray, _explanation, made = results
    image = made.secondary_capture
    assert image.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                    "AccessionNumber", "StudyDate", "StudyTime", "StudyID", "ReferringPhysicianName"):
        assert image[keyword].value == source[keyword].value, keyword
    assert image.SeriesInstanceUID != source.SeriesInstanceUID
    assert image.SOPInstanceUID != source.SOPInstanceUID
    assert made.structured_report.SeriesInstanceUID not in (image.SeriesInstanceUID, source.SeriesInstanceUID)
    assert dicom_source.RESEARCH_ONLY in image.SeriesDescription and dicom_source.RESEARCH_ONLY in image.ImageComments
    assert image.BurnedInAnnotation == "YES"
    pixels = image.pixel_array
    assert pixels.shape == (*xray.pixels.shape, 3)
    band = pixels[: pixels.shape[0] // 40]
    assert (band == 0).all(axis=-1).mean() > 0.5 and (band == 255).all(axis=-1).any()  # white words on black


def test_structured_report_holds_probabilities_thresholds_and_outlines(results, model) -> None:
    source, _xray, explanation, made = results
    report = made.structured_report
    assert report.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert report.StudyInstanceUID == source.StudyInstanceUID and report.PatientID == source.PatientID
    assert dicom_source.RESEARCH_ONLY in report.SeriesDescription
    findings = dicom_sr.read_findings(report)
    assert set(findings) == set(PATHOLOGIES)
    for label, finding in findings.items():
        assert finding.probability == pytest.approx(explanation.probability(label), abs=1e-6)
        point = model.card.operating_point(label, "high_specificity")  # the page's default, the fixture's
        assert (finding.operating_point, finding.threshold) == ("high_specificity", pytest.approx(point.threshold))
        assert finding.flagged == (explanation.probability(label) >= point.threshold)
        assert (finding.model_version, finding.algorithm) == (model.version, dicom_sr.ALGORITHM_NAME)
        assert f"weights sha256 {model.card.weights_sha256}" in finding.algorithm_parameters
        expected = outline_polygons(explanation.normalized_map(label), 0.5)
        assert len(finding.outlines) == len(expected) >= 1
        for read, made_polygon in zip(finding.outlines, expected):
            np.testing.assert_array_equal(read, made_polygon.astype(np.float32))
    region_references = [
        group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for group in hd.sr.Comprehensive3DSR.from_dataset(report).content.get_planar_roi_measurement_groups()
    ]
    assert set(region_references) == {source.SOPInstanceUID}  # every polygon is drawn on the source image


def test_structured_report_records_the_operating_point_the_reader_flagged_at(results, model) -> None:
    source, _xray, explanation, _made = results
    report = dicom_sr.structured_report(source, explanation, model, point="high_sensitivity")
    findings = dicom_sr.read_findings(report)
    reported = {label: (f.operating_point, f.threshold, f.flagged) for label, f in findings.items()}
    expected = {}
    for label in PATHOLOGIES:
        point = model.card.operating_point(label, "high_sensitivity")
        expected[label] = (None, None, None) if point is None else (
            "high_sensitivity", pytest.approx(point.threshold), explanation.probability(label) >= point.threshold)
    assert reported == expected
    assert reported["Cardiomegaly"] == (None, None, None)  # the card has no high-sensitivity point for it
    chosen_on = model.card.operating_points.chosen_on
    assert f"flagged at the high sensitivity point, chosen on {chosen_on}" in findings["Edema"].algorithm_parameters
    with pytest.raises(XRayError, match="Unknown operating point"):
        dicom_sr.structured_report(source, explanation, model, point="youden")


# What the Secondary Capture says of its pathology: "<name>: probability 0.123, flagged at the high specificity
# point (0.131)", or "..., not flagged: <why the card has no such point>".
_SC_FLAG = re.compile(r"probability [0-9.]+, (?:(?P<side>flagged|not flagged) at the (?P<point>[a-z ]+) point "
                      r"\((?P<cut>[0-9.]+)\)|not flagged: )")


@pytest.mark.parametrize("point", list(POINT_NAMES))
def test_secondary_capture_and_structured_report_flag_what_the_findings_flag(results, model, point) -> None:
    """The SR's and each pathology's SC's flags and thresholds are those of `findings` (the page's, the CLI's and
    the JSON record's) at the operating point flagged at: none of them can use another threshold."""
    source, xray, explanation, _made = results
    found = {finding.label: finding for finding in findings(explanation, model.card, point)}
    flagged = {label for label, finding in found.items() if finding.flagged}
    assert flagged and set(PATHOLOGIES) - flagged  # the film is flagged for some pathologies, not for others
    reported = dicom_sr.read_findings(dicom_sr.structured_report(source, explanation, model, point=point))
    assert {label for label, finding in reported.items() if finding.flagged} == flagged
    assert {label: (f.threshold, f.flagged, f.evidence) for label, f in reported.items()} == {
        label: (None if f.cut is None else pytest.approx(f.cut), f.flagged, f.evidence) for label, f in found.items()}
    stated = {}
    for label in PATHOLOGIES:
        image = dicom_out.secondary_capture(source, xray, explanation, model, label=label,
                                            overlay=dicom_out.BurnedOverlay(layers=()), point=point)
        said = _SC_FLAG.search(image.ImageComments)
        assert said is not None, image.ImageComments
        assert said["point"] in (None, POINT_NAMES[point])
        stated[label] = (said["side"] == "flagged", said["cut"])
        assert f"evidence on test films: {found[label].verdict_words.replace('–', '-')}." in image.ImageComments
    assert {label for label, (is_flagged, _cut) in stated.items() if is_flagged} == flagged
    assert {label: cut for label, (_side, cut) in stated.items()} == {
        label: None if f.cut is None else f"{f.cut:.3f}" for label, f in found.items()}


def test_structured_report_keeps_a_finding_whose_map_has_no_outline(results, model, tmp_path) -> None:
    source, _xray, explanation, _made = results
    flat = dataclasses.replace(explanation, raw_cams=np.zeros_like(explanation.raw_cams))  # no region anywhere
    report = dicom_sr.structured_report(source, flat, model, labels=("Hernia", "Mass"))
    findings = dicom_sr.read_findings(report)
    assert {label: (f.probability, f.outlines) for label, f in findings.items()} == {
        "Hernia": (pytest.approx(explanation.probability("Hernia")), ()),
        "Mass": (pytest.approx(explanation.probability("Mass")), ()),
    }
    _assert_dciodvfy_passes(tmp_path / "flat_sr.dcm", report)


def test_structured_report_reader_refuses_another_object(results) -> None:
    with pytest.raises(XRayError, match="not a measurement report"):
        dicom_sr.read_findings(results[-1].secondary_capture)


def _assert_dciodvfy_passes(path: Path, dataset: pydicom.Dataset) -> None:
    require_tool(None if shutil.which("dciodvfy") else "dciodvfy is not installed (apt-get install dicom3tools)")
    path.write_bytes(dicom_source.to_bytes(dataset))
    check = subprocess.run(["dciodvfy", str(path)], check=False, capture_output=True, text=True, timeout=60)
    report = check.stdout + check.stderr
    assert "Error" not in report, f"{path.name}:\n{report}"


def test_secondary_capture_and_structured_report_pass_dciodvfy(results, tmp_path) -> None:
    *_, made = results
    _assert_dciodvfy_passes(tmp_path / "film_sc.dcm", made.secondary_capture)
    _assert_dciodvfy_passes(tmp_path / "film_sr.dcm", made.structured_report)


@pytest.fixture(scope="module")
def film_saliency(results, model) -> np.ndarray:
    return saliency(model, results[1], "Effusion")


@pytest.mark.parametrize("layers, opacity, threshold, words", [
    (("heatmap",), 0.5, 0.5, "Overlay: Grad-CAM++ heatmap (inferno) at opacity 0.50."),
    (("saliency", "outline"), 0.7, 0.3,
     "Overlay: gradient saliency at opacity 0.70, Grad-CAM++ outline at 0.30 of the map's maximum."),
    (("outline",), 0.5, 0.6, "Overlay: Grad-CAM++ outline at 0.60 of the map's maximum."),
    ((), 0.5, 0.5, "Overlay: no overlay (the radiograph alone)."),
])
def test_secondary_capture_burns_in_exactly_the_overlay_shown(results, model, film_saliency, tmp_path, layers,
                                                               opacity, threshold, words) -> None:
    source, xray, explanation, _made = results
    shown = dicom_out.BurnedOverlay(layers=layers, opacity=opacity, outline_threshold=threshold,
                                    saliency=film_saliency if "saliency" in layers else None)
    image = dicom_out.secondary_capture(source, xray, explanation, model, label="Effusion", overlay=shown)
    attention = explanation.normalized_map("Effusion")
    expected = render_overlay(  # as the page's "Overlay (PNG)" download draws the same choice
        xray.pixels, heatmap=attention if "heatmap" in layers else None,
        saliency=saliency_for_display(film_saliency) if "saliency" in layers else None,
        outline_map=attention if "outline" in layers else None, opacity=opacity, threshold=threshold)
    below_band = slice(xray.pixels.shape[0] // 8, None)
    assert np.array_equal(image.pixel_array[below_band], expected[below_band])
    if not layers:
        assert np.array_equal(image.pixel_array[below_band], render_overlay(xray.pixels)[below_band])
    point = model.card.operating_point("Effusion", "high_specificity")
    side = "flagged" if explanation.probability("Effusion") >= point.threshold else "not flagged"
    assert f"{side} at the high specificity point ({point.threshold:.3f})" in image.ImageComments
    assert image.ImageComments.endswith(words) and dicom_source.RESEARCH_ONLY in image.ImageComments
    _assert_dciodvfy_passes(tmp_path / "overlay_sc.dcm", image)


def test_secondary_capture_refuses_an_overlay_it_cannot_draw() -> None:
    with pytest.raises(XRayError, match="needs the saliency map"):
        dicom_out.BurnedOverlay(layers=("saliency",))
    with pytest.raises(XRayError, match="Unknown overlay layer glow"):
        dicom_out.BurnedOverlay(layers=("glow",))


def test_secondary_capture_needs_a_dicom_source(tmp_path) -> None:
    with pytest.raises(XRayError, match="can only be made for a DICOM radiograph"):
        dicom_source.source_header(b"\x89PNG\r\n\x1a\n" + bytes(200))
