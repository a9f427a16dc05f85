"""The out-of-distribution warning: non-chest images are flagged, chest films mostly are not."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

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
    assert model.card.out_of_distribution.threshold == pytest.approx(model.feature_distribution.threshold)
    assert list(model.feature_distribution.blocks) == list(model.card.out_of_distribution.blocks) == ["layer3", "layer4"]


def test_statistics_fitted_before_0_3_0_are_read_as_layer4_only(model, chest_dicom, tmp_path):
    """Older cards name no blocks and hold the layer4 tensors without a block prefix."""
    card_path = default_card()
    card = json.loads(card_path.read_text())
    shutil.copy(card_path.parent / card["weights_file"], tmp_path / card["weights_file"])
    layer4 = model.feature_distribution.blocks["layer4"]
    old = {"mean": layer4.mean, "components": layer4.components, "variances": layer4.variances,
           "residual_variance": np.array([layer4.residual_variance])}
    blob = save_safetensors({name: torch.from_numpy(value.astype(np.float32)) for name, value in old.items()})
    (tmp_path / "old_ood.safetensors").write_bytes(blob)
    section = {key: value for key, value in card["out_of_distribution"].items() if key != "blocks"}
    card["out_of_distribution"] = {**section, "file": "old_ood.safetensors", "sha256": hashlib.sha256(blob).hexdigest()}
    (tmp_path / card_path.name).write_text(json.dumps(card))
    older = load_model(tmp_path / card_path.name, device="cpu")
    assert list(older.feature_distribution.blocks) == ["layer4"]
    features = explain(model, read_xray(chest_dicom)).features
    assert older.feature_distribution.distance(features) == pytest.approx(layer4.distance(features["layer4"]), rel=1e-5)


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
