"""Uploads stay in memory and patient identifiers never reach the page, the logs or any output."""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from xai_core.explanation import explain
from xai_core.imaging import read_xray
from xai_core.overlay import render_overlay, to_png_bytes
from xai_core.report import explanation_record

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
def _files_newer_than(folder: Path, moment: float) -> list[Path]:
    found = []
    for root, _dirs, files in os.walk(folder):
        if "__pycache__" in root or ".pytest_cache" in root:
            continue
        for name in files:
            path = Path(root) / name
            try:
                if path.stat().st_mtime >= moment:
                    found.append(path)
            except OSError:
                continue
    return found


def test_identifiers_never_reach_any_output(model, identified_dicom, patient_identifiers, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    xray = read_xray(identified_dicom)
    explanation = explain(model, xray)
    record = json.dumps(explanation_record(model, xray, explanation, {}))
    png = to_png_bytes(render_overlay(xray.pixels, heatmap=explanation.normalized_map("Nodule")),
                       text_metadata={"model_version": model.version, "label": "Nodule"})
    captured = capsys.readouterr()
    from PIL import Image

    png_text = json.dumps(Image.open(io.BytesIO(png)).text)
    everything = "\n".join([record, repr(xray.metadata), caplog.text, captured.out, captured.err, png_text])
    for value in patient_identifiers.values():
        for part in value.split("^"):
            assert part not in everything
        if len(value) >= 8:  # short strings turn up by chance in compressed pixels
            assert value.encode() not in png


def test_a_session_writes_no_image_bytes_and_shows_no_identifier(identified_dicom, patient_identifiers, caplog,
                                                                 capsys):
    caplog.set_level(logging.DEBUG)
    started = time.time() - 1
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.file_uploader[0].upload("patient.dcm", identified_dicom, "application/dicom").run()
    components = {element.proto.component_name: json.loads(element.proto.json) for element in at.get("bidi_component")}
    table, panes = components["chest_xray_viewer.pathology_table"], components["chest_xray_viewer.image_pair"]
    assert not at.exception and len(table["rows"]) == 14
    at.expander[0]  # the metadata panel is rendered
    page_text = "\n".join(str(element.value) for kind in ("markdown", "caption", "table", "error", "warning", "info")
                          for element in getattr(at, kind) if hasattr(element, "value"))
    page_text += "\n" + json.dumps(table) + "\n" + "\n".join(panes["captions"])  # the components' words
    captured = capsys.readouterr()
    for value in patient_identifiers.values():
        for part in value.split("^"):
            assert part not in page_text
            assert part not in caplog.text + captured.out + captured.err
    signature = identified_dicom[-4096:]  # pixel data: would appear in any copy of the upload
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        for path in _files_newer_than(folder, started):
            if path.stat().st_size >= len(signature) and path.suffix not in {".pyc"}:
                assert signature not in path.read_bytes(), f"upload bytes found in {path}"
