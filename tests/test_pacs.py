"""PACS in and out against a real Orthanc: QIDO, WADO, STOW of the Secondary Capture and TID 1500 SR; faults
(what the two objects hold: test_dicom_results.py).

Nothing is mocked: each Orthanc is Debian's, started on a free loopback port with a
configuration in a temporary folder, and stopped afterwards.
"""

from __future__ import annotations

import io
import logging
import random
import re
import socket
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from orthanc_server import orthanc_missing, require_tool, running_orthanc

from xai_core import dicom_out, dicom_source, dicom_sr
from xai_core import pacs as pacs_module
from xai_core.__main__ import main
from xai_core.errors import XRayError
from xai_core.explanation import explain
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES
from xai_core.overlay import outline_polygons
from xai_core.pacs import Pacs, PacsSettings

PASSWORD = "correct horse battery"
USERS = {"reader": PASSWORD}


@pytest.fixture(scope="module")
def source_bytes(chest_dicom: Path) -> bytes:
    return chest_dicom.read_bytes()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, source_bytes):
    """An Orthanc without authentication, holding the pydicom-data chest film."""
    require_tool(orthanc_missing())
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
    (instance,) = pacs.list_instances(study.study_uid).instances
    return instance


@pytest.fixture(scope="module")
def results(pacs, film, model):
    """WADO the film, explain it and make the SC and SR, all in memory."""
    data = pacs.retrieve_image(film.study_uid, film.series_uid, film.sop_uid)
    xray = read_xray(data)
    explanation = explain(model, xray)
    source = dicom_source.source_header(data)
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


def test_pacs_qido_finds_a_study_by_accession_number(orthanc, pacs: Pacs, source_bytes, film) -> None:
    # The film's own accession number, "exam Number", holds a space: it is sent as exam*Number (module docstring).
    (study,) = pacs.search_studies(accession_number="exam Number")
    assert study.study_uid == film.study_uid
    assert pacs.search_studies(accession_number="exam  Number") == []  # two spaces: matched by the PACS, not kept
    copy = pydicom.dcmread(io.BytesIO(source_bytes))
    copy.StudyInstanceUID, copy.SeriesInstanceUID, copy.SOPInstanceUID = (pydicom.uid.generate_uid() for _ in range(3))
    copy.AccessionNumber, copy.PatientID, copy.StudyDate = "XAI0001", "XAI-COPY", "20300101"
    orthanc.upload(dicom_source.to_bytes(copy))
    (study,) = pacs.search_studies(accession_number="XAI0001")
    assert study.study_uid == copy.StudyInstanceUID
    assert pacs.search_studies(accession_number="XAI0002") == []


def _copy_of(source_bytes: bytes, **attributes: str) -> bytes:
    """The chest film in a study of its own, with the given attributes (and none of the film's accession number)."""
    copy = pydicom.dcmread(io.BytesIO(source_bytes))
    copy.StudyInstanceUID, copy.SeriesInstanceUID, copy.SOPInstanceUID = (pydicom.uid.generate_uid() for _ in range(3))
    for keyword, value in {"AccessionNumber": "", **attributes}.items():
        setattr(copy, keyword, value)
    return dicom_source.to_bytes(copy)


def test_pacs_qido_sends_punctuation_orthanc_reads_as_typed(orthanc, pacs: Pacs, source_bytes) -> None:
    # dicomweb-client percent-encodes all of these, and Orthanc 1.10 then matched none of them.
    punctuated = "Q-._~!$'();=:@/9"
    orthanc.upload(_copy_of(source_bytes, PatientID=punctuated, AccessionNumber="ACC/2031(7)"))
    (by_patient,) = pacs.search_studies(patient_id=punctuated)
    assert pacs.search_studies(accession_number="ACC/2031(7)") == [by_patient]
    assert pacs.search_studies(patient_id="Q-._~!$'();=:@/8") == []


@pytest.mark.parametrize("value", [
    "SPACE ID", "PLUS+ID", "AMP&ID", "PCT%20", "HASH#1", "MÜLLER1", "CARET^1", "WILD*", "WILD?", "LIST,1",
])
def test_pacs_qido_finds_a_value_sent_with_wildcards_and_nobody_else(orthanc, pacs: Pacs, source_bytes,
                                                                     value) -> None:
    # Each odd character goes as *, which also matches the near miss: only the exact value's study is kept.
    wanted = pydicom.dcmread(io.BytesIO(_copy_of(source_bytes, PatientID=value)))
    orthanc.upload(dicom_source.to_bytes(wanted))
    for near_miss in {re.sub(r"[^A-Za-z0-9]", "X", value), re.sub(r"[^A-Za-z0-9]", "", value) + "X"}:
        orthanc.upload(_copy_of(source_bytes, PatientID=near_miss))
    (found,) = pacs.search_studies(patient_id=value)
    assert found.study_uid == wanted.StudyInstanceUID
    assert [item.study_uid for item in pacs.search_studies(patient_id=f" {value} ")] == [found.study_uid]


def test_pacs_qido_refuses_a_value_no_search_can_find(orthanc, pacs: Pacs, source_bytes) -> None:
    orthanc.upload(_copy_of(source_bytes, PatientID="MULTI\\1"))
    with pytest.raises(XRayError, match=r"A DICOM patient ID cannot hold '\\': it separates several values"):
        pacs.search_studies(patient_id="MULTI\\1")
    for nothing_to_send in ("ÜÖ", "*", "? ?"):
        with pytest.raises(XRayError, match="holds no letter or digit a PACS search can send as typed") as refused:
            pacs.search_studies(patient_id=nothing_to_send)
        assert nothing_to_send not in str(refused.value)
    with pytest.raises(XRayError, match="at most 16 characters; this one has 17"):
        pacs.search_studies(accession_number="A" * 17)


def test_pacs_qido_wildcard_search_spares_the_reader_another_patients_study(orthanc, pacs: Pacs,
                                                                           source_bytes) -> None:
    # Why nothing is percent-encoded: Orthanc 1.10 reads "A+B" (the encoded "A B") literally.
    uids = {}
    for value in ("TWO WORDS", "TWO+WORDS", "TWOXWORDS"):
        copy = pydicom.dcmread(io.BytesIO(_copy_of(source_bytes, PatientID=value)))
        orthanc.upload(dicom_source.to_bytes(copy))
        uids[value] = copy.StudyInstanceUID
    wrong = requests.get(f"{orthanc.dicomweb_url}/studies", params={"PatientID": "TWO WORDS"}, timeout=10).json()
    assert [item["00100020"]["Value"] for item in wrong] == [["TWO+WORDS"]]
    for value, study_uid in uids.items():
        assert [item.study_uid for item in pacs.search_studies(patient_id=value)] == [study_uid]


def test_pacs_qido_refuses_a_search_matching_more_studies_than_it_lists(orthanc, pacs: Pacs, source_bytes,
                                                                        monkeypatch) -> None:
    for _ in range(3):
        orthanc.upload(_copy_of(source_bytes, PatientID="CROWDED 1", StudyDate="20310101"))
    monkeypatch.setattr(pacs_module, "MAX_STUDIES", 3)  # the rule of MAX_STUDIES (200), on a PACS quick to fill
    assert len(pacs.search_studies(patient_id="CROWDED 1")) == 3
    monkeypatch.setattr(pacs_module, "MAX_STUDIES", 2)
    with pytest.raises(XRayError, match="More than 2 studies match the search in the PACS at .*: narrow it"):
        pacs.search_studies(patient_id="CROWDED 1")
    with pytest.raises(XRayError, match="More than 2 studies match"):
        pacs.search_studies(date_from=date(2031, 1, 1), date_to=date(2031, 1, 1))


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
    orthanc.upload(dicom_source.to_bytes(copy))
    caplog.set_level(logging.DEBUG)
    (study,) = pacs.search_studies(patient_id="MRN7731XQ")
    assert pacs.search_studies(accession_number="ACC99812") == [study]
    (instance,) = pacs.list_instances(study.study_uid).instances
    pacs.retrieve_image(instance.study_uid, instance.series_uid, instance.sop_uid)
    everything = "\n".join([caplog.text, *capsys.readouterr(), repr(study), repr(instance)])
    assert "retrieve instance" in caplog.text and "GET" in caplog.text  # the client and urllib3 did log
    for value in ("Doe", "Jane", "MRN7731XQ", "ACC99812", "Kildare"):
        assert value not in everything


@pytest.fixture(scope="module")
def crowded_study(orthanc) -> tuple[str, str, str]:
    """A study of 200 instances, stored out of order: 150 in series 1, 50 in series 2."""
    study, first, second = (pydicom.uid.generate_uid() for _ in range(3))
    for number in random.Random(0).sample(range(1, 201), 200):
        orthanc.upload(_small_radiograph(study, *((first, 1) if number <= 150 else (second, 2)), number))
    return study, first, second


def test_pacs_lists_a_study_of_hundreds_of_instances_in_order(pacs: Pacs, crowded_study) -> None:
    listed = pacs.list_instances(crowded_study[0])
    assert (listed.complete, listed.notice()) == (True, None)
    assert [item.instance_number for item in listed.instances] == list(range(1, 201))
    assert all(item.is_image and item.view_position == "PA" for item in listed.instances)


def test_pacs_listing_past_its_limit_says_so_and_narrows_to_a_series(pacs: Pacs, crowded_study) -> None:
    study, first, second = crowded_study
    cut = pacs.list_instances(study, limit=120)  # the same rule as MAX_INSTANCES, on a study quick to store
    assert (cut.complete, len(cut.instances)) == (False, 120)
    assert cut.notice().startswith("The list is incomplete: the PACS holds more than 120 instances in this study")
    assert "Pick one of the study's series" in cut.notice()
    series = pacs.list_series(study)
    assert [(item.series_uid, item.series_number, item.instance_count) for item in series] == [
        (first, 1, 150), (second, 2, 50)]
    narrowed = pacs.list_instances(study, second, limit=120)
    assert narrowed.complete and [item.instance_number for item in narrowed.instances] == list(range(151, 201))
    still_long = pacs.list_instances(study, first, limit=120)
    assert not still_long.complete and "more than 120 instances in this series" in still_long.notice()
    assert pacs.list_instances(study, first, limit=150).complete  # exactly at the limit: all of them


def test_pacs_cli_lists_instances_and_says_how_to_narrow_an_incomplete_list(orthanc, crowded_study, film,
                                                                              capsys) -> None:
    study, first, second = crowded_study
    main(["pacs", "instances", "--url", orthanc.dicomweb_url, "--study", study, "--limit", "120"])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 120 + 1 + 2 and printed[0].endswith("series 1 · image 1  Computed Radiography Image Storage")
    assert printed[120].startswith("The list is incomplete: the PACS holds more than 120 instances in this study")
    assert printed[121:] == [f"  --series {first}  series 1 · date unknown · CR · CHEST · 150 instances",
                             f"  --series {second}  series 2 · date unknown · CR · CHEST · 50 instances"]
    main(["pacs", "instances", "--url", orthanc.dicomweb_url, "--study", study, "--series", second, "--limit", "120"])
    assert len(capsys.readouterr().out.splitlines()) == 50  # complete: no notice
    main(["pacs", "studies", "--url", orthanc.dicomweb_url, "--accession", "exam Number"])
    assert capsys.readouterr().out.startswith(f"{film.study_uid}  2004-08-26 · CR · ")
    with pytest.raises(SystemExit, match="2"):
        main(["pacs", "studies", "--url", orthanc.dicomweb_url, "--patient-id", "MULTI\\1"])
    assert "error: A DICOM patient ID cannot hold" in capsys.readouterr().err


def test_pacs_panel_says_a_long_study_is_listed_in_part_and_narrows_it(orthanc, crowded_study, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    def panel() -> None:
        import streamlit as st

        from app.pacs_tab import pacs_source

        pacs_source(lambda name, data: st.session_state.update(opened=(name, len(data))), listed=120)

    monkeypatch.setenv("XAI_DICOMWEB_URL", orthanc.dicomweb_url)
    at = AppTest.from_function(panel, default_timeout=60)
    at.run()
    at.text_input(key="pacs_patient_id").input("MANY")
    at.button(key="pacs_search_button").click().run()
    (warning,) = at.warning
    assert warning.value.startswith("The list is incomplete: the PACS holds more than 120 instances in this study")
    assert len(at.selectbox(key="pacs_instance").options) == 120
    series = at.selectbox(key="pacs_series")
    assert series.options == ["series 1 · date unknown · CR · CHEST · 150 instances",
                              "series 2 · date unknown · CR · CHEST · 50 instances"]
    series.select_index(1).run()
    assert len(at.warning) == 1 and len(at.selectbox(key="pacs_instance").options) == 50  # series 2: all listed
    at.button(key="pacs_open").click().run()
    assert at.session_state["opened"][0] == "Image from the PACS" and not at.exception and not at.error


def test_pacs_listing_refuses_what_is_not_a_uid(pacs: Pacs) -> None:
    with pytest.raises(XRayError, match="not a DICOM UID"):
        pacs.list_instances("1.2.3/../../instances")


def _small_radiograph(study_uid: str, series_uid: str, series_number: int, number: int) -> bytes:
    """A 64 x 64 CR instance (the smallest the viewer reads) of the given study and series."""
    dataset = pydicom.Dataset()
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.SOPClassUID, dataset.SOPInstanceUID = pydicom.uid.ComputedRadiographyImageStorage, pydicom.uid.generate_uid()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
    dataset.PatientID, dataset.Modality, dataset.ViewPosition, dataset.BodyPartExamined = "MANY", "CR", "PA", "CHEST"
    dataset.SeriesNumber, dataset.InstanceNumber = series_number, number
    dataset.Rows = dataset.Columns = 64
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.PixelData = np.full((64, 64), number, dtype=np.uint16).tobytes()
    return dicom_source.to_bytes(dataset)


def test_dicomweb_wado_retrieves_the_film_unchanged_in_memory(pacs: Pacs, film, source_bytes) -> None:
    data = pacs.retrieve_image(film.study_uid, film.series_uid, film.sop_uid)
    assert np.array_equal(read_xray(data).pixels, read_xray(source_bytes).pixels)


def test_dicomweb_round_trip_of_a_jpeg_2000_film_as_stored(tmp_path, dicom_file, model) -> None:
    require_tool(orthanc_missing())
    compressed = dicom_file("RG1_J2KR.dcm").read_bytes()
    with running_orthanc(tmp_path / "orthanc") as server:
        server.upload(compressed)
        pacs = Pacs(PacsSettings(server.dicomweb_url))
        (study,) = pacs.search_studies(accession_number="exam Number")
        (instance,) = pacs.list_instances(study.study_uid).instances
        data = pacs.retrieve_image(instance.study_uid, instance.series_uid, instance.sop_uid)
        xray = read_xray(data)
        assert xray.metadata.transfer_syntax == "JPEG 2000 Image Compression (Lossless Only)"
        assert np.array_equal(xray.pixels, read_xray(compressed).pixels)
        explanation = explain(model, xray)
        made = dicom_out.dicom_results(dicom_source.source_header(data), xray, explanation, model, label="Effusion")
        receipt = pacs.store(made.datasets())
        listed = {item.series_uid: item for item in pacs.list_instances(study.study_uid).instances}
        assert receipt.study_uid == study.study_uid and set(listed) == {
            instance.series_uid, *(dataset.SeriesInstanceUID for dataset in made.datasets())}
        sr = listed[made.structured_report.SeriesInstanceUID]
        findings = dicom_sr.read_findings(pacs.retrieve(sr.study_uid, sr.series_uid, sr.sop_uid))
    assert findings["Effusion"].probability == pytest.approx(explanation.probability("Effusion"), abs=1e-6)


def test_dicomweb_stow_round_trip_stores_sc_and_sr_in_the_study(pacs: Pacs, film, results) -> None:
    _source, _xray, explanation, made = results
    receipt = pacs.store(made.datasets())
    assert receipt.study_uid == film.study_uid
    assert [item.kind for item in receipt.stored] == ["Secondary Capture Image", "Comprehensive 3D SR"]
    assert made.secondary_capture.SeriesInstanceUID in receipt.describe()
    listed = {item.series_uid: item for item in pacs.list_instances(film.study_uid).instances}
    sc, sr = (listed[dataset.SeriesInstanceUID] for dataset in made.datasets())
    assert (sc.is_image, sr.is_image, sr.modality) == (True, False, "SR")
    report = pacs.retrieve(sr.study_uid, sr.series_uid, sr.sop_uid)
    findings = dicom_sr.read_findings(report)
    assert {label: f.probability for label, f in findings.items()} == pytest.approx(
        {label: explanation.probability(label) for label in PATHOLOGIES}, abs=1e-6
    )
    sent = dicom_sr.read_findings(made.structured_report)
    assert {label: (f.operating_point, f.threshold, f.flagged) for label, f in findings.items()} == {
        label: (f.operating_point, f.threshold, f.flagged) for label, f in sent.items()}
    expected = outline_polygons(explanation.normalized_map("Effusion"), 0.5)
    for read, made_polygon in zip(findings["Effusion"].outlines, expected, strict=True):
        np.testing.assert_array_equal(read, made_polygon.astype(np.float32))
    with pytest.raises(XRayError, match="is a Comprehensive 3D SR Storage, not an image"):
        pacs.retrieve_image(sr.study_uid, sr.series_uid, sr.sop_uid)


def test_pacs_unknown_instance_is_a_clear_404(pacs: Pacs, film) -> None:
    with pytest.raises(XRayError, match=r"no longer in the PACS .*\(HTTP 404\)"):
        pacs.retrieve_image(film.study_uid, film.series_uid, "1.2.826.0.1.3680043.8.498.1")


def test_orthanc_with_basic_auth_refuses_a_wrong_password(tmp_path, source_bytes, caplog, capsys) -> None:
    require_tool(orthanc_missing())
    caplog.set_level(logging.DEBUG)
    with running_orthanc(tmp_path / "orthanc", users=USERS) as server:
        server.upload(source_bytes)
        environment = {"XAI_DICOMWEB_URL": server.dicomweb_url, "XAI_DICOMWEB_USER": "reader"}
        wrong = PacsSettings.from_environment(environ={**environment, "XAI_DICOMWEB_PASSWORD": "guess"})
        with pytest.raises(XRayError, match=r"refused the credentials \(HTTP 401\)") as refused:
            Pacs(wrong).search_studies(patient_id="9RG1")
        assert "guess" not in str(refused.value)
        token = PacsSettings.from_environment(environ={"XAI_DICOMWEB_URL": server.dicomweb_url,
                                                       "XAI_DICOMWEB_TOKEN": "t0ken-s3cr3t"})
        with pytest.raises(XRayError, match=r"refused the credentials \(HTTP 401\)") as refused_token:
            Pacs(token).search_studies(patient_id="9RG1")
        right = PacsSettings.from_environment(environ={**environment, "XAI_DICOMWEB_PASSWORD": PASSWORD})
        assert PASSWORD not in repr(right)
        assert len(Pacs(right).search_studies(patient_id="9RG1")) == 1
    everything = "\n".join([caplog.text, *capsys.readouterr(), str(refused_token.value), repr(token)])
    assert "GET" in caplog.text  # urllib3 did log the requests
    for secret in ("guess", PASSWORD, "t0ken-s3cr3t"):
        assert secret not in everything


def test_pacs_stopped_mid_session_says_it_cannot_be_reached(tmp_path, source_bytes, results) -> None:
    require_tool(orthanc_missing())
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
    require_tool(orthanc_missing())
    secondary_capture, report = (dataset.copy() for dataset in results[-1].datasets())
    report.StudyInstanceUID = pydicom.uid.generate_uid()  # Orthanc refuses an object of another study (409)
    with running_orthanc(tmp_path / "orthanc") as server:
        server.upload(source_bytes)
        pacs = Pacs(PacsSettings(server.dicomweb_url))
        with pytest.raises(XRayError) as refused:
            pacs.store([secondary_capture, report])
        series = {item.series_uid for item in pacs.list_instances(secondary_capture.StudyInstanceUID).instances}
    message = str(refused.value)
    assert "refused it (HTTP 409 Conflict) while storing the Comprehensive 3D SR" in message
    assert f"now holds only the Secondary Capture Image (series {secondary_capture.SeriesInstanceUID})" in message
    assert secondary_capture.SeriesInstanceUID in series and report.SeriesInstanceUID not in series


# Orthanc's Lua filter answers 403 Forbidden: this account may search and retrieve, not store.
READ_ONLY = """function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  return not (method == 'POST' and string.sub(uri, 1, 11) == '/dicom-web/')
end
"""


def test_pacs_account_that_may_not_store_gets_a_clear_403(tmp_path, source_bytes, results) -> None:
    require_tool(orthanc_missing())
    with running_orthanc(tmp_path / "orthanc", lua=READ_ONLY) as server:
        server.upload(source_bytes)  # Orthanc's own REST API, which the filter lets through
        pacs = Pacs(PacsSettings(server.dicomweb_url))
        (study,) = pacs.search_studies(patient_id="9RG1")
        with pytest.raises(XRayError) as refused:
            pacs.store(results[-1].datasets())
        assert len(pacs.list_instances(study.study_uid).instances) == 1
    assert str(refused.value) == (
        f"The PACS at {server.dicomweb_url} does not allow this account to do this (HTTP 403) while storing the "
        "Secondary Capture Image; ask the PACS administrator for access. Nothing was stored in the PACS.")


def _encapsulated_pdf(patient_id: str) -> bytes:
    """A one-page PDF as an Encapsulated PDF instance: a non-image object in a study of its own."""
    dataset = pydicom.Dataset()
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.SOPClassUID, dataset.SOPInstanceUID = pydicom.uid.EncapsulatedPDFStorage, pydicom.uid.generate_uid()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    dataset.PatientID, dataset.Modality, dataset.StudyDate = patient_id, "DOC", "20040827"
    dataset.SeriesNumber, dataset.InstanceNumber, dataset.MIMETypeOfEncapsulatedDocument = 1, 1, "application/pdf"
    dataset.EncapsulatedDocument = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    return dicom_source.to_bytes(dataset)


def test_pacs_refuses_to_open_a_pdf_instance_clearly(orthanc, pacs: Pacs) -> None:
    orthanc.upload(_encapsulated_pdf("PDF1"))
    (study,) = pacs.search_studies(patient_id="PDF1")
    (document,) = pacs.list_instances(study.study_uid).instances
    assert (document.kind, document.is_image, document.modality) == ("Encapsulated PDF Storage", False, "DOC")
    with pytest.raises(XRayError, match="^The instance is an Encapsulated PDF Storage, not an image: choose"):
        pacs.retrieve_image(document.study_uid, document.series_uid, document.sop_uid)


def test_pacs_panel_shows_faults_and_keeps_running(orthanc, pacs: Pacs, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    def panel() -> None:
        from app.pacs_tab import pacs_source

        pacs_source(lambda name, data: None)

    orthanc.upload(_encapsulated_pdf("PDF2"))
    monkeypatch.setenv("XAI_DICOMWEB_URL", orthanc.dicomweb_url)
    at = AppTest.from_function(panel, default_timeout=60)
    at.run()
    at.text_input(key="pacs_patient_id").input("PDF2")
    at.button(key="pacs_search_button").click().run()
    assert [item.value for item in at.info] == ["This study holds no image (only reports or other objects)."]
    at.text_input(key="pacs_patient_id").input("MULTI\\1")
    at.button(key="pacs_search_button").click().run()
    assert [item.value for item in at.error] == [
        "A DICOM patient ID cannot hold '\\': it separates several values. Give one value."]
    with socket.socket() as closed:  # a port nothing listens on: the PACS is down
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/dicom-web"
    monkeypatch.setenv("XAI_DICOMWEB_URL", down)
    at = AppTest.from_function(panel, default_timeout=60)
    at.run()
    at.text_input(key="pacs_patient_id").input("9RG1")
    at.button(key="pacs_search_button").click().run()
    unreachable = (f"The PACS at {down} cannot be reached while searching for studies: check that it is running "
                   "and that XAI_DICOMWEB_URL gives its DICOMweb address.")
    assert [item.value for item in at.error] == [unreachable]
    assert not at.exception


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


def test_pacs_cli_explain_writes_and_stows_sc_and_sr(orthanc, pacs: Pacs, film, chest_dicom, model, tmp_path,
                                                    capsys) -> None:
    before = {item.series_uid for item in pacs.list_instances(film.study_uid).instances}
    main(["explain", str(chest_dicom), "--out", str(tmp_path / "out"), "--labels", "Effusion",
          "--dicom-out", str(tmp_path / "dicom"), "--stow", orthanc.dicomweb_url, "--device", "cpu",
          "--sc-layers", "outline", "--threshold", "0.4", "--flag-at", "high_sensitivity"])
    written = sorted(path.name for path in (tmp_path / "dicom").iterdir())
    assert written == [f"{chest_dicom.stem}_sc.dcm", f"{chest_dicom.stem}_sr.dcm"]
    report = pydicom.dcmread(tmp_path / "dicom" / f"{chest_dicom.stem}_sr.dcm")
    (finding,) = dicom_sr.read_findings(report).values()
    point = model.card.operating_point("Effusion", "high_sensitivity")
    assert (finding.label, finding.operating_point, finding.threshold) == (
        "Effusion", "high_sensitivity", pytest.approx(point.threshold))
    image = pydicom.dcmread(tmp_path / "dicom" / f"{chest_dicom.stem}_sc.dcm")
    assert "at the high sensitivity point" in image.ImageComments
    assert image.ImageComments.endswith("Overlay: Grad-CAM++ outline at 0.40 of the map's maximum.")
    new_series = {item.series_uid for item in pacs.list_instances(film.study_uid).instances} - before
    assert len(new_series) == 2
    assert "Stored in the PACS" in capsys.readouterr().out


@pytest.mark.browser
def test_pacs_panel_in_the_browser_opens_a_film_and_sends_results(orthanc, pacs: Pacs, film, source_bytes,
                                                                  tmp_path) -> None:
    from browser_support import CHROMIUM, launch_chromium, running_viewer, wait_until_idle

    require_tool(None if CHROMIUM.exists() else "Debian's chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    before = {item.series_uid for item in pacs.list_instances(film.study_uid).instances}
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
    assert len({item.series_uid for item in pacs.list_instances(film.study_uid).instances} - before) == 2


def test_pacs_cli_says_why_a_png_gets_no_dicom_results(chest_dicom, tmp_path, capsys) -> None:
    from PIL import Image

    png = tmp_path / "film.png"
    Image.fromarray((read_xray(chest_dicom).pixels[::4, ::4] * 255).astype(np.uint8)).save(png)
    with pytest.raises(SystemExit, match="1 of 1 images could not be read or their results not written"):
        main(["explain", str(png), "--out", str(tmp_path / "out"), "--labels", "Effusion",
              "--dicom-out", str(tmp_path / "dicom"), "--device", "cpu"])
    assert "can only be made for a DICOM radiograph" in capsys.readouterr().out
    assert (tmp_path / "out" / "film_Effusion.png").is_file() and not (tmp_path / "dicom").exists()
