"""The two-level out-of-distribution warning on real images: chest films pass, non-chest images are
strongly warned, children's films at most mildly; the card section round-trips and old ones are refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from xai_core.card import card_from_json, out_of_distribution_json, read_card
from xai_core.data import read_images
from xai_core.errors import XRayError
from xai_core.explanation import explain
from xai_core.imaging import read_xray
from xai_core.model import default_card, load_model
from xai_core.non_chest import non_chest_images
from xai_core.ood import Level, assess
from xai_core.report import explanation_record


@pytest.fixture(scope="module")
def section():
    section = read_card(default_card()).out_of_distribution
    if section is None:
        pytest.skip("this checkpoint has no out-of-distribution statistics")
    return section


@pytest.fixture(scope="module")
def held_out_non_chest():
    """The non-chest images the warning was not fitted on (non_chest.py)."""
    return [image for image in non_chest_images() if image.held_out]


def _levels(paths, section) -> list[Level]:
    return [assess(read_xray(path).pixels, section).level for path in paths]


def test_frontal_chest_films_pass(section, shared_data, chest_dicom):
    """NIH test films (never fitted on) and the pydicom-data sample film get no warning at either level."""
    levels = _levels(read_images(shared_data / "nih", ["test"]), section)  # 318 films
    assert np.mean([level is not Level.FRONTAL_CHEST for level in levels]) <= 0.02  # the goal for NIH test
    assert assess(read_xray(chest_dicom).pixels, section).level is Level.FRONTAL_CHEST


def test_films_from_another_hospital_system_pass(section, shared_data):
    """JSRT (Japan, digitised film), which no part of the fit saw."""
    levels = _levels(read_images(shared_data / "jsrt", ["train", "val"]), section)
    assert np.mean([level is not Level.FRONTAL_CHEST for level in levels]) <= 0.05


def test_childrens_films_get_at_most_the_mild_warning(section, shared_data):
    levels = _levels(read_images(shared_data / "pediatric_pneumonia", ["val"])[::4], section)  # 192 films
    assert np.mean([level is Level.NOT_CHEST for level in levels]) <= 0.01


def test_held_out_non_chest_images_get_the_strong_warning(section, held_out_non_chest):
    kinds = {image.kind for image in held_out_non_chest}
    assert {"medical DICOM", "packaged picture", "generated document", "generated photograph"} <= kinds
    strong = [assess(image.xray.pixels, section).level is Level.NOT_CHEST for image in held_out_non_chest]
    assert len(strong) >= 40 and np.mean(strong) >= 0.9
    tibia = next(image for image in held_out_non_chest if image.name.startswith("pydicom:RG3_"))
    assert assess(tibia.xray.pixels, section).level is Level.NOT_CHEST


def test_the_mild_warning_says_what_differs(section, chest_dicom):
    """The sample film shrunk to a thumbnail, then also made much darker: still a chest film, its differences named;
    exposure alone does not raise a warning (other hospitals' films are often darker or brighter)."""
    pixels = read_xray(chest_dicom).pixels
    small = assess(pixels[::24, ::24], section)  # 77 x 81 px
    assert small.level is Level.DIFFERS and any("small" in reason for reason in small.reasons)
    assert not any("darker" in reason for reason in small.reasons)
    dark = assess(pixels[::24, ::24] * 0.15, section)
    assert dark.level is Level.DIFFERS and any("darker" in reason for reason in dark.reasons)
    assert assess(pixels * 0.15, section).level is Level.FRONTAL_CHEST


def test_the_explanation_record_carries_the_level(model, dicom_file, chest_dicom):
    tibia = read_xray(dicom_file("RG3_UNCI.dcm"))
    record = explanation_record(model, tibia, explain(model, tibia), {})
    assert record["out_of_distribution"]["level"] == "not_frontal_chest"
    assert "does not look like a frontal chest radiograph" in record["out_of_distribution"]["headline"]
    film = read_xray(chest_dicom)
    assert explanation_record(model, film, explain(model, film), {})["out_of_distribution"]["level"] == "frontal_chest"


def test_the_card_section_round_trips(section):
    data = json.loads(default_card().read_text())
    again = card_from_json({**data, "out_of_distribution": out_of_distribution_json(section)}, "card.json")
    assert again.out_of_distribution == section


def test_an_old_or_damaged_section_is_refused_with_a_clear_message(section, tmp_path):
    card_path = default_card()
    data = json.loads(card_path.read_text())
    shutil.copy(card_path.parent / data["weights_file"], tmp_path)
    old = {"file": "resnet50_cxr14_ood.safetensors", "sha256": "0" * 64, "threshold": 127.5, "blocks": ["layer4"]}
    (tmp_path / card_path.name).write_text(json.dumps({**data, "out_of_distribution": old}))
    with pytest.raises(XRayError, match="older or unknown format.*fit-ood"):
        load_model(tmp_path / card_path.name, device="cpu")
    damaged = {**data["out_of_distribution"], "weights": data["out_of_distribution"]["weights"][:-1]}
    with pytest.raises(XRayError, match="incomplete or damaged"):
        card_from_json({**data, "out_of_distribution": damaged}, "card.json")
    other = replace(section, feature_names=section.feature_names[::-1])
    (tmp_path / card_path.name).write_text(json.dumps({**data, "out_of_distribution": out_of_distribution_json(other)}))
    with pytest.raises(XRayError, match="other measurements"):
        load_model(tmp_path / card_path.name, device="cpu")
