"""Calibrated probabilities: fitted on validation films into the card, same rankings and decisions as the raw ones."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np

from xai_core.labels import PATHOLOGIES
from xai_core.card import read_card
from xai_core.model import DEFAULT_CARD, load_model


def test_calibrated_thresholds_make_the_same_decisions_as_the_raw_ones(model):
    assert model.card.calibration is not None  # the shipped card is calibrated
    raw_thresholds = model.card.thresholds
    logits = np.linspace(-8, 8, 4001)[:, None].repeat(len(PATHOLOGIES), axis=1)
    calibrated = model.probabilities(logits)
    raw = 1 / (1 + np.exp(-logits))
    assert (np.diff(calibrated, axis=0) >= 0).all()  # increasing: every ranking kept
    for index, label in enumerate(PATHOLOGIES):
        decisions = raw[:, index] >= raw_thresholds[label]
        assert ((calibrated[:, index] >= model.thresholds()[label]) == decisions).all(), label
        assert decisions.any() and not decisions.all()


def test_calibrate_command_fits_on_validation_films_and_refuses_the_test_split(shared_data, tmp_path):
    card = tmp_path / DEFAULT_CARD.name
    shutil.copy(DEFAULT_CARD, card)
    shipped = read_card(DEFAULT_CARD)
    shutil.copy(DEFAULT_CARD.parent / shipped.weights_file, tmp_path)  # the card holds everything else
    with open(shared_data / "nih" / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "val"][:30]
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    command = [sys.executable, "-m", "xai_core", "calibrate", "--images", str(shared_data / "nih" / "images"),
               "--labels", str(labels), "--weights", str(card), "--device", "cpu"]
    refused = subprocess.run([*command, "--split", "test"], capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "test split" in refused.stderr
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    section = json.loads(card.read_text())["calibration"]
    assert section["images"] == 30 and section["data"] == "labels.csv, split val"
    assert list(section["labels"]) == list(PATHOLOGIES)
    for label in PATHOLOGIES:
        positives = sum(row[label] == "1" for row in rows)
        assert section["labels"][label]["positives"] == positives
        if positives == 0:
            assert (section["labels"][label]["scale"], section["labels"][label]["shift"]) == (1.0, 0.0)
    # the refit card loads, and its probabilities follow its own calibration
    refit = load_model(card, device="cpu")
    entry = section["labels"]["Infiltration"]
    index = PATHOLOGIES.index("Infiltration")
    logits = np.zeros((1, len(PATHOLOGIES)))
    logits[0, index] = 1.5
    expected = 1 / (1 + np.exp(-(entry["scale"] * 1.5 + entry["shift"])))
    assert refit.probabilities(logits)[0, index] == np.float32(expected)
