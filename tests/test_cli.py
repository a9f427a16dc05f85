"""The command line: explain writes overlays and JSON; evaluate writes a report with CIs and box alignment."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
import sys

import pytest
from PIL import Image

from xai_core.labels import PATHOLOGIES
from xai_core.card import read_card
from xai_core.model import DEFAULT_CARD


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xai_core", *args], capture_output=True, text=True, timeout=timeout)


def test_explain_writes_an_overlay_per_label_and_a_json(chest_dicom, nih_test_images, tmp_path):
    png = nih_test_images[0]
    result = _run("explain", str(chest_dicom), str(png), "--out", str(tmp_path), "--labels", "Pneumonia", "Cardiomegaly",
                  "--device", "cpu")
    assert result.returncode == 0, result.stderr
    calibration = read_card(DEFAULT_CARD).calibration.labels
    for image in (chest_dicom, png):
        record = json.loads((tmp_path / f"{image.stem}.json").read_text())
        assert [f["label"] for f in record["findings"]] == list(PATHOLOGIES)
        assert record["image"]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        assert record["model"]["probability_calibration"].startswith("Platt scaling per label")
        for finding in record["findings"]:  # the probability is the card's calibration of the raw logit
            entry = calibration[finding["label"]]
            expected = 1 / (1 + math.exp(-(entry.scale * finding["logit"] + entry.shift)))
            assert finding["probability"] == pytest.approx(expected, abs=1e-5)
        assert all(0.0 <= f["probability"] <= 1.0 for f in record["findings"])
        assert "not for diagnosis" in record["disclaimer"].lower()
        for label in ("Pneumonia", "Cardiomegaly"):
            overlay = Image.open(tmp_path / f"{image.stem}_{label}.png")
            assert overlay.mode == "RGB"
            assert overlay.size == Image.open(png).size if image == png else overlay.size == (1841, 1955)
    assert not (tmp_path / f"{png.stem}_Hernia.png").exists()


def test_explain_reports_an_unreadable_file_and_goes_on(nih_test_images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(nih_test_images[0].read_bytes()[:300])
    result = _run("explain", str(broken), str(nih_test_images[1]), "--out", str(tmp_path / "out"), "--labels", "Effusion")
    assert result.returncode != 0
    assert "broken.png" in result.stdout + result.stderr and "1 of 2 images could not be read" in result.stderr
    assert (tmp_path / "out" / f"{nih_test_images[1].stem}_Effusion.png").is_file()


def test_explain_refuses_an_unknown_label(chest_dicom, tmp_path):
    result = _run("explain", str(chest_dicom), "--out", str(tmp_path), "--labels", "Sprain")
    assert result.returncode == 2 and "Sprain" in result.stderr and "Traceback" not in result.stderr


def test_evaluate_reports_auroc_with_ci_and_alignment_beside_random(shared_data, tmp_path):
    with open(shared_data / "nih" / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    with open(shared_data / "nih" / "boxes.csv", newline="") as handle:
        box_rows = list(csv.DictReader(handle))[:4]
    boxed = {row["image"] for row in box_rows}
    chosen = [row for row in rows if row["image"] in boxed] + [row for row in rows if row["image"] not in boxed][:36]
    labels_csv, boxes_csv = tmp_path / "labels.csv", tmp_path / "boxes.csv"
    for path, table in ((labels_csv, chosen), (boxes_csv, box_rows)):
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    out = tmp_path / "report.json"
    result = _run("evaluate", "--images", str(shared_data / "nih" / "images"), "--labels", str(labels_csv),
                  "--boxes", str(boxes_csv), "--out", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["data"]["n"] == len(chosen)
    pneumonia = report["labels"]["Pneumonia"]
    assert pneumonia["positives"] == sum(int(row["Pneumonia"]) for row in chosen)
    assert pneumonia["auroc_ci95"][0] <= pneumonia["auroc"] <= pneumonia["auroc_ci95"][1]
    assert report["labels"]["Hernia"]["verdict"].startswith("too few cases to tell")  # < 10 positives here
    alignment = report["alignment"]["all"]
    assert alignment["model"]["n"] == alignment["random"]["n"] == alignment["average_map"]["n"] == len(box_rows)
    assert 0.0 <= alignment["model"]["pointing_hit"] <= 1.0
    assert "Pneumonia" in result.stdout and "pointing" in result.stdout
    assert "evaluating" in result.stderr  # the progress bar
