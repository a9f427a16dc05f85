"""The out-of-distribution warning: non-chest images are flagged, chest films mostly are not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from xai_core.errors import XRayError
from xai_core.explain import explain
from xai_core.imaging import read_xray
from xai_core.model import default_card, load_model
from xai_core.stats import auroc

# Real images that are not frontal chest radiographs: a tibia radiograph, MR, CT, ultrasound, a photograph.
NON_CHEST_DICOMS = ["RG3_UNCI.dcm", "MR2_UNCI.dcm", "MR_small.dcm", "CT_small.dcm", "US1_UNCI.dcm", "liver.dcm",
                    "emri_small.dcm", "OT-PAL-8-face.dcm", "693_UNCI.dcm", "gdcm-US-ALOKA-16.dcm"]
PHOTOGRAPH = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def non_chest_distances(model, dicom_file) -> list[float]:
    paths = [dicom_file(name) for name in NON_CHEST_DICOMS] + [PHOTOGRAPH]
    return [explain(model, read_xray(path)).ood_distance for path in paths]


def test_the_shipped_checkpoint_has_out_of_distribution_statistics(model):
    assert model.feature_distribution is not None
    assert model.card["out_of_distribution"]["threshold"] == pytest.approx(model.feature_distribution.threshold)


def test_non_chest_images_are_separated_from_nih_test_films(model, non_chest_distances, shared_data):
    import csv

    with open(shared_data / "nih" / "labels.csv", newline="") as handle:
        names = [row["image"] for row in csv.DictReader(handle) if row["split"] == "test"][:120]
    chest = [explain(model, read_xray(shared_data / "nih" / "images" / name)).ood_distance for name in names]
    truth = np.r_[np.zeros(len(chest)), np.ones(len(non_chest_distances))]
    assert auroc(truth, np.r_[chest, non_chest_distances]) >= 0.95
    threshold = model.feature_distribution.threshold
    assert np.mean(np.array(chest) > threshold) <= 0.1  # chest films are rarely flagged
    assert np.mean(np.array(non_chest_distances) > threshold) >= 0.8


def test_the_sample_chest_film_is_not_flagged(model, chest_dicom):
    assert explain(model, read_xray(chest_dicom)).out_of_distribution is False


def test_tampered_statistics_are_refused(tmp_path):
    card_path = default_card()
    card = json.loads(card_path.read_text())
    for name in (card_path.name, card["weights_file"], card["out_of_distribution"]["file"]):
        shutil.copy(card_path.parent / name, tmp_path / name)
    stats = tmp_path / card["out_of_distribution"]["file"]
    stats.write_bytes(stats.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(XRayError, match="sha256"):
        load_model(tmp_path / card_path.name, device="cpu")
