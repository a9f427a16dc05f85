"""PACS in and out against a real Orthanc: QIDO, WADO, STOW; Secondary Capture and TID 1500 SR; faults.

Nothing is mocked: each Orthanc is Debian's, started on a free loopback port with a
configuration in a temporary folder, and stopped afterwards.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import random
import shutil
import socket
import subprocess
from datetime import date
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from orthanc_server import orthanc_missing, running_orthanc

from xai_core import dicom_out
from xai_core.__main__ import main
from xai_core.errors import XRayError
from xai_core.explain import explain
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES
from xai_core.overlay import outline_polygons
from xai_core.pacs import Pacs, PacsSettings

PASSWORD = "correct horse battery"
USERS = {"reader": PASSWORD}


def _require(tool_missing: str | None) -> None:
    if tool_missing:
        if os.environ.get("CI"):
            pytest.fail(f"{tool_missing}; .ci/run installs it")
        pytest.skip(tool_missing)


@pytest.fixture(scope="module")
def source_bytes(chest_dicom: Path) -> bytes:
    return chest_dicom.read_bytes()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, source_bytes):
    """An Orthanc without authentication, holding the pydicom-data chest film."""
    _require(orthanc_missing())
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        server.upload(source_bytes)
        yield server


@pytest.fixture(scope="module")
def pacs(orthanc) -> Pacs:
    return Pacs(PacsSettings(orthanc.dicomweb_url))


@pytest.fixture(scope="module")
def film(pacs: Pacs):
    """The chest film's instance as the PACS lists it."""
    (study,) = pacs.search_studies(patient_id="9RG1")
    (instance,) = pacs.list_instances(study.study_uid)
    return instance


@pytest.fixture(scope="module")
def results(pacs, film, model):
    """WADO the film, explain it and make the SC and SR, all in memory."""
    data = pacs.retrieve_image(film.study_uid, film.series_uid, film.sop_uid)
    xray = read_xray(data)
    explanation = explain(model, xray)
    source = dicom_out.source_header(data)
    made = dicom_out.dicom_results(source, xray, explanation, model, label="Cardiomegaly")
    return source, xray, explanation, made


def test_pacs_qido_finds_the_film_by_patient_id_and_date(pacs: Pacs) -> None:
    by_patient = pacs.search_studies(patient_id="9RG1")
    by_date = pacs.search_studies(date_from=date(2004, 8, 26), date_to=date(2004, 8, 26))
    assert [s.study_uid for s in by_patient] == [s.study_uid for s in by_date] != []
    assert by_patient[0].date == "20040826" and by_patient[0].modalities == ("CR",)
    assert by_patient[0].series_count == 1 and by_patient[0].instance_count >= 1
    assert pacs.search_studies(date_to=date(2000, 1, 1)) == []
    assert pacs.search_studies(patient_id="NOBODY") == []


def test_pacs_qido_finds_a_study_by_accession_number(orthanc, pacs: Pacs, source_bytes) -> None:
    # The film's own accession number ("exam Number") holds a space, which Orthanc 1.10 cannot match
    # once percent-encoded in the query: a copy in a study of its own carries a plain one.
    copy = pydicom.dcmread(io.BytesIO(source_bytes))
    copy.StudyInstanceUID, copy.SeriesInstanceUID, copy.SOPInstanceUID = (pydicom.uid.generate_uid() for _ in range(3))
    copy.AccessionNumber, copy.PatientID, copy.StudyDate = "XAI0001", "XAI-COPY", "20300101"
    orthanc.upload(dicom_out.to_bytes(copy))
    (study,) = pacs.search_studies(accession_number="XAI0001")
    assert study.study_uid == copy.StudyInstanceUID
    assert pacs.search_studies(accession_number="XAI0002") == []


def test_pacs_lists_what_a_reader_needs_and_no_patient_name(pacs: Pacs, film, source_bytes) -> None:
    assert (film.modality, film.view_position, film.body_part, film.is_image) == ("CR", "PA", "CHEST", True)
    assert film.kind == "Computed Radiography Image Storage"
    header = pydicom.dcmread(io.BytesIO(source_bytes), stop_before_pixels=True)
    for listed in (film, pacs.search_studies(patient_id="9RG1")[0]):
        assert str(header.PatientName) not in repr(listed)


def test_pacs_never_logs_or_lists_patient_identifiers(orthanc, pacs: Pacs, source_bytes, caplog, capsys) -> None:
    identifiers = {"PatientName": "Doe^Jane", "PatientID": "MRN7731XQ", "AccessionNumber": "ACC99812",
                   "ReferringPhysicianName": "Kildare^J", "StudyDate": "20290101"}
    copy = pydicom.dcmread(io.BytesIO(source_bytes))
    copy.StudyInstanceUID, copy.SeriesInstanceUID, copy.SOPInstanceUID = (pydicom.uid.generate_uid() for _ in range(3))
    for keyword, value in identifiers.items():
        setattr(copy, keyword, value)
    orthanc.upload(dicom_out.to_bytes(copy))
    caplog.set_level(logging.DEBUG)
    (study,) = pacs.search_studies(patient_id="MRN7731XQ")
    assert pacs.search_studies(accession_number="ACC99812") == [study]
    (instance,) = pacs.list_instances(study.study_uid)
    pacs.retrieve_image(instance.study_uid, instance.series_uid, instance.sop_uid)
    everything = "\n".join([caplog.text, *capsys.readouterr(), repr(study), repr(instance)])
    assert "search for studies" in caplog.text  # the client did log, at DEBUG level
    for value in ("Doe", "Jane", "MRN7731XQ", "ACC99812", "Kildare"):
        assert value not in everything


def test_pacs_lists_a_study_of_hundreds_of_instances_in_order(orthanc, pacs: Pacs) -> None:
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for number in random.Random(0).sample(range(1, 201), 200):  # stored out of order
        orthanc.upload(_small_radiograph(study, series, number))
    listed = pacs.list_instances(study)
    assert [item.instance_number for item in listed] == list(range(1, 201))
    assert all(item.is_image and item.view_position == "PA" for item in listed)


def _small_radiograph(study_uid: str, series_uid: str, number: int) -> bytes:
    """A 64 x 64 CR instance (the smallest the viewer reads) of the given study and series."""
    dataset = pydicom.Dataset()
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.SOPClassUID, dataset.SOPInstanceUID = pydicom.uid.ComputedRadiographyImageStorage, pydicom.uid.generate_uid()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
    dataset.PatientID, dataset.Modality, dataset.ViewPosition, dataset.BodyPartExamined = "MANY", "CR", "PA", "CHEST"
    dataset.SeriesNumber, dataset.InstanceNumber = 1, number
    dataset.Rows = dataset.Columns = 64
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.PixelData = np.full((64, 64), number, dtype=np.uint16).tobytes()
    return dicom_out.to_bytes(dataset)


def test_dicomweb_wado_retrieves_the_film_unchanged_in_memory(pacs: Pacs, film, source_bytes) -> None:
    data = pacs.retrieve_image(film.study_uid, film.series_uid, film.sop_uid)
    assert np.array_equal(read_xray(data).pixels, read_xray(source_bytes).pixels)


def test_dicomweb_wado_retrieves_a_jpeg_2000_film_as_stored(tmp_path, dicom_file) -> None:
    _require(orthanc_missing())
    compressed = dicom_file("RG1_J2KR.dcm").read_bytes()
    with running_orthanc(tmp_path / "orthanc") as server:
        server.upload(compressed)
        pacs = Pacs(PacsSettings(server.dicomweb_url))
        (study,) = pacs.search_studies(patient_id="9RG1")
        (instance,) = pacs.list_instances(study.study_uid)
        xray = read_xray(pacs.retrieve_image(instance.study_uid, instance.series_uid, instance.sop_uid))
    assert xray.metadata.transfer_syntax == "JPEG 2000 Image Compression (Lossless Only)"
    assert np.array_equal(xray.pixels, read_xray(compressed).pixels)


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
    assert dicom_out.RESEARCH_ONLY in image.SeriesDescription and dicom_out.RESEARCH_ONLY in image.ImageComments
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
    assert dicom_out.RESEARCH_ONLY in report.SeriesDescription
    findings = dicom_out.read_findings(report)
    assert set(findings) == set(PATHOLOGIES)
    thresholds = model.thresholds()
    for label, finding in findings.items():
        assert finding.probability == pytest.approx(explanation.probability(label), abs=1e-6)
        assert finding.threshold == pytest.approx(thresholds[label], abs=1e-6)
        assert (finding.model_version, finding.algorithm) == (model.version, dicom_out.ALGORITHM_NAME)
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


def test_structured_report_keeps_a_finding_whose_map_has_no_outline(results, model, tmp_path) -> None:
    source, _xray, explanation, _made = results
    flat = dataclasses.replace(explanation, raw_cams=np.zeros_like(explanation.raw_cams))  # no region anywhere
    report = dicom_out.structured_report(source, flat, model, labels=("Hernia", "Mass"))
    findings = dicom_out.read_findings(report)
    assert {label: (f.probability, f.outlines) for label, f in findings.items()} == {
        "Hernia": (pytest.approx(explanation.probability("Hernia")), ()),
        "Mass": (pytest.approx(explanation.probability("Mass")), ()),
    }
    _assert_dciodvfy_passes(tmp_path / "flat_sr.dcm", report)


def test_structured_report_reader_refuses_another_object(results) -> None:
    with pytest.raises(XRayError, match="not a measurement report"):
        dicom_out.read_findings(results[-1].secondary_capture)


def _assert_dciodvfy_passes(path: Path, dataset: pydicom.Dataset) -> None:
    _require(None if shutil.which("dciodvfy") else "dciodvfy is not installed (apt-get install dicom3tools)")
    path.write_bytes(dicom_out.to_bytes(dataset))
    check = subprocess.run(["dciodvfy", str(path)], check=False, capture_output=True, text=True, timeout=60)
    report = check.stdout + check.stderr
    assert "Error" not in report, f"{path.name}:\n{report}"


def test_secondary_capture_and_structured_report_pass_dciodvfy(results, tmp_path) -> None:
    *_, made = results
    _assert_dciodvfy_passes(tmp_path / "film_sc.dcm", made.secondary_capture)
    _assert_dciodvfy_passes(tmp_path / "film_sr.dcm", made.structured_report)


def test_dicomweb_stow_round_trip_stores_sc_and_sr_in_the_study(pacs: Pacs, film, results) -> None:
    _source, _xray, explanation, made = results
    receipt = pacs.store(made.datasets())
    assert receipt.study_uid == film.study_uid
    assert [item.kind for item in receipt.stored] == ["Secondary Capture Image", "Comprehensive 3D SR"]
    assert made.secondary_capture.SeriesInstanceUID in receipt.describe()
    listed = {item.series_uid: item for item in pacs.list_instances(film.study_uid)}
    sc, sr = (listed[dataset.SeriesInstanceUID] for dataset in made.datasets())
    assert (sc.is_image, sr.is_image, sr.modality) == (True, False, "SR")
    report = pacs.retrieve(sr.study_uid, sr.series_uid, sr.sop_uid)
    findings = dicom_out.read_findings(report)
    assert {label: f.probability for label, f in findings.items()} == pytest.approx(
        {label: explanation.probability(label) for label in PATHOLOGIES}, abs=1e-6
    )
    expected = outline_polygons(explanation.normalized_map("Effusion"), 0.5)
    for read, made_polygon in zip(findings["Effusion"].outlines, expected, strict=True):
        np.testing.assert_array_equal(read, made_polygon.astype(np.float32))
    with pytest.raises(XRayError, match="is a Comprehensive 3D SR Storage, not an image"):
        pacs.retrieve_image(sr.study_uid, sr.series_uid, sr.sop_uid)


def test_pacs_unknown_instance_is_a_clear_404(pacs: Pacs, film) -> None:
    with pytest.raises(XRayError, match=r"no longer in the PACS .*\(HTTP 404\)"):
        pacs.retrieve_image(film.study_uid, film.series_uid, "1.2.826.0.1.3680043.8.498.1")


def test_orthanc_with_basic_auth_refuses_a_wrong_password(tmp_path, source_bytes) -> None:
    _require(orthanc_missing())
    with running_orthanc(tmp_path / "orthanc", users=USERS) as server:
        server.upload(source_bytes)
        environment = {"XAI_DICOMWEB_URL": server.dicomweb_url, "XAI_DICOMWEB_USER": "reader"}
        wrong = PacsSettings.from_environment(environ={**environment, "XAI_DICOMWEB_PASSWORD": "guess"})
        with pytest.raises(XRayError, match=r"refused the credentials \(HTTP 401\)") as refused:
            Pacs(wrong).search_studies(patient_id="9RG1")
        assert "guess" not in str(refused.value)
        right = PacsSettings.from_environment(environ={**environment, "XAI_DICOMWEB_PASSWORD": PASSWORD})
        assert PASSWORD not in repr(right)
        assert len(Pacs(right).search_studies(patient_id="9RG1")) == 1


def test_pacs_stopped_mid_session_says_it_cannot_be_reached(tmp_path, source_bytes, results) -> None:
    _require(orthanc_missing())
    with running_orthanc(tmp_path / "orthanc") as server:
        server.upload(source_bytes)
        pacs = Pacs(PacsSettings(server.dicomweb_url))
        (study,) = pacs.search_studies(patient_id="9RG1")
        server.stop()
        with pytest.raises(XRayError, match="cannot be reached while listing"):
            pacs.list_instances(study.study_uid)
        with pytest.raises(XRayError, match="cannot be reached while storing .*Nothing was stored in the PACS"):
            pacs.store(results[-1].datasets())


def test_pacs_partial_stow_says_what_the_pacs_holds_now(tmp_path, source_bytes, results) -> None:
    _require(orthanc_missing())
    secondary_capture, report = (dataset.copy() for dataset in results[-1].datasets())
    report.StudyInstanceUID = pydicom.uid.generate_uid()  # Orthanc refuses an object of another study (409)
    with running_orthanc(tmp_path / "orthanc") as server:
        server.upload(source_bytes)
        pacs = Pacs(PacsSettings(server.dicomweb_url))
        with pytest.raises(XRayError) as refused:
            pacs.store([secondary_capture, report])
        series = {item.series_uid for item in pacs.list_instances(secondary_capture.StudyInstanceUID)}
    message = str(refused.value)
    assert "refused it (HTTP 409 Conflict) while storing the Comprehensive 3D SR" in message
    assert f"now holds only the Secondary Capture Image (series {secondary_capture.SeriesInstanceUID})" in message
    assert secondary_capture.SeriesInstanceUID in series and report.SeriesInstanceUID not in series


def test_pacs_that_never_answers_times_out_clearly() -> None:
    with socket.socket() as silent:  # listens, never accepts: the request waits for an answer
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        pacs = Pacs(PacsSettings(f"http://127.0.0.1:{port}/dicom-web", timeout_s=0.5))
        with pytest.raises(XRayError, match=r"did not answer within 0.5 s while searching"):
            pacs.search_studies(patient_id="9RG1")


def test_dicomweb_settings_keep_credentials_out_of_urls_and_repr() -> None:
    assert PacsSettings.from_environment(environ={}) is None
    settings = PacsSettings.from_environment(
        environ={"XAI_DICOMWEB_URL": "https://pacs.example.org/dicom-web/", "XAI_DICOMWEB_TOKEN": "s3cr3t"}
    )
    assert settings.url == "https://pacs.example.org/dicom-web" and "s3cr3t" not in repr(settings)
    with pytest.raises(XRayError, match="Do not put a user name or password in the DICOMweb address"):
        PacsSettings("https://reader:s3cr3t@pacs.example.org/dicom-web")
    with pytest.raises(XRayError, match="must start with http"):
        PacsSettings("pacs.example.org")


def test_secondary_capture_needs_a_dicom_source(tmp_path) -> None:
    with pytest.raises(XRayError, match="can only be made for a DICOM radiograph"):
        dicom_out.source_header(b"\x89PNG\r\n\x1a\n" + bytes(200))


def test_pacs_cli_explain_writes_and_stows_sc_and_sr(orthanc, pacs: Pacs, film, chest_dicom, tmp_path, capsys) -> None:
    before = {item.series_uid for item in pacs.list_instances(film.study_uid)}
    main(["explain", str(chest_dicom), "--out", str(tmp_path / "out"), "--labels", "Effusion",
          "--dicom-out", str(tmp_path / "dicom"), "--stow", orthanc.dicomweb_url, "--device", "cpu"])
    written = sorted(path.name for path in (tmp_path / "dicom").iterdir())
    assert written == [f"{chest_dicom.stem}_sc.dcm", f"{chest_dicom.stem}_sr.dcm"]
    report = pydicom.dcmread(tmp_path / "dicom" / f"{chest_dicom.stem}_sr.dcm")
    assert set(dicom_out.read_findings(report)) == {"Effusion"}
    new_series = {item.series_uid for item in pacs.list_instances(film.study_uid)} - before
    assert len(new_series) == 2
    assert "Stored in the PACS" in capsys.readouterr().out


@pytest.mark.browser
def test_pacs_panel_in_the_browser_opens_a_film_and_sends_results(orthanc, pacs: Pacs, film, source_bytes,
                                                                  tmp_path) -> None:
    from browser_support import CHROMIUM, launch_chromium, running_viewer, wait_until_idle

    _require(None if CHROMIUM.exists() else "Debian's chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    before = {item.series_uid for item in pacs.list_instances(film.study_uid)}
    with running_viewer(env={"XAI_DICOMWEB_URL": orthanc.dicomweb_url}) as (url, _process), \
            playwright_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        page.get_by_label("Patient ID").fill("9RG1", timeout=180_000)
        page.get_by_role("button", name="Search").click()
        page.get_by_role("button", name="Open image").click(timeout=60_000)
        page.get_by_text("Pathology shown").wait_for(timeout=180_000)
        assert page.get_by_role("combobox", name="Study").input_value().startswith("2004-08-26 · CR")
        assert "CR · PA · CHEST" in page.get_by_role("combobox", name="Image", exact=True).input_value()
        assert "Image from the PACS" in page.locator("[data-testid='stSidebar']").inner_text()
        page.get_by_role("button", name="Send to PACS").click()
        stored = page.get_by_text("Stored in the PACS")
        stored.wait_for(timeout=60_000)
        assert film.study_uid in stored.inner_text()
        wait_until_idle(page)
        page.screenshot(path=str(tmp_path / "pacs_panel.png"), full_page=True)
        body = page.inner_text("body")
        assert not page.locator("[data-testid='stAlertContentError']").all_inner_texts()
        browser.close()
    header = pydicom.dcmread(io.BytesIO(source_bytes), stop_before_pixels=True)
    assert str(header.PatientName).split("^")[0] not in body  # the patient's name is never on the page
    assert len({item.series_uid for item in pacs.list_instances(film.study_uid)} - before) == 2


def test_pacs_cli_says_why_a_png_gets_no_dicom_results(chest_dicom, tmp_path, capsys) -> None:
    from PIL import Image

    png = tmp_path / "film.png"
    Image.fromarray((read_xray(chest_dicom).pixels[::4, ::4] * 255).astype(np.uint8)).save(png)
    with pytest.raises(SystemExit, match="1 of 1 images could not be read or their results not written"):
        main(["explain", str(png), "--out", str(tmp_path / "out"), "--labels", "Effusion",
              "--dicom-out", str(tmp_path / "dicom"), "--device", "cpu"])
    assert "can only be made for a DICOM radiograph" in capsys.readouterr().out
    assert (tmp_path / "out" / "film_Effusion.png").is_file() and not (tmp_path / "dicom").exists()
