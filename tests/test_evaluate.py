"""The evaluation's controls: the average-map control is what the model shows whatever the image."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from xai_core.card import read_card
from xai_core.errors import XRayError
from xai_core.evaluate import evaluate_dataset, map_resemblance, record_in_card
from xai_core.labels import PATHOLOGIES
from xai_core.model import DEFAULT_CARD


def _write(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _nih_rows(shared_data, name):
    with open(shared_data / "nih" / name, newline="") as handle:
        return list(csv.DictReader(handle))


def test_average_map_of_one_image_is_that_images_map(shared_data, tmp_path):
    """Over a single image the model's average map is its own map, so the two must score the same on its boxes."""
    boxes = _nih_rows(shared_data, "boxes.csv")
    image = boxes[0]["image"]
    labels = [row for row in _nih_rows(shared_data, "labels.csv") if row["image"] == image]
    _write(tmp_path / "labels.csv", labels)
    _write(tmp_path / "boxes.csv", [row for row in boxes if row["image"] == image])
    report = evaluate_dataset(images=shared_data / "nih" / "images", labels_csv=tmp_path / "labels.csv",
                              boxes_csv=tmp_path / "boxes.csv", device="cpu")
    figures = report["alignment"]["all"]
    for key in ("pointing_hit", "iou", "iobb", "energy_inside"):
        assert figures["average_map"][key] == pytest.approx(figures["model"][key], abs=1e-4), key
    assert report["map_resemblance"]["median"] == pytest.approx(1.0, abs=1e-5)  # its map is the average map


def test_average_map_differs_from_each_images_map(shared_data, tmp_path):
    """Over several images the average map is one map for all, so it cannot match every image's own map."""
    boxes = _nih_rows(shared_data, "boxes.csv")
    images = sorted({row["image"] for row in boxes})[:12]
    labels = [row for row in _nih_rows(shared_data, "labels.csv") if row["image"] in images]
    _write(tmp_path / "labels.csv", labels)
    _write(tmp_path / "boxes.csv", [row for row in boxes if row["image"] in images])
    report = evaluate_dataset(images=shared_data / "nih" / "images", labels_csv=tmp_path / "labels.csv",
                              boxes_csv=tmp_path / "boxes.csv", device="cpu")
    figures = report["alignment"]["all"]
    assert figures["average_map"]["n"] == figures["model"]["n"] == sum(row["image"] in images for row in boxes)
    assert figures["average_map"]["energy_inside"] != pytest.approx(figures["model"]["energy_inside"], abs=1e-4)
    resemblance = report["map_resemblance"]
    assert -1.0 <= min(resemblance["per_label"].values()) and resemblance["median"] < 0.999


def test_an_unreadable_film_is_named_and_the_others_are_scored(shared_data, tmp_path):
    """A damaged file in the labels CSV is reported by name with the reason; the readable films are evaluated.
    With none readable, the command says so instead of a report of nothing."""
    rows = [row for row in _nih_rows(shared_data, "labels.csv") if row["split"] == "test"][:3]
    images = tmp_path / "images"
    images.mkdir()
    for row in rows[:2]:
        (images / row["image"]).symlink_to(shared_data / "nih" / "images" / row["image"])
    (images / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    _write(tmp_path / "labels.csv", rows[:2] + [{**rows[2], "image": "damaged.png"}])
    report = evaluate_dataset(images=images, labels_csv=tmp_path / "labels.csv", device="cpu")
    assert report["data"]["n"] == 2
    assert len(report["data"]["unreadable"]) == 1 and report["data"]["unreadable"][0].startswith("damaged.png: ")
    assert all(entry["n"] == 2 for entry in report["labels"].values())
    _write(tmp_path / "labels.csv", [{**rows[2], "image": "damaged.png"}])
    with pytest.raises(XRayError, match=r"None of the films could be read \(1 tried\): damaged.png: "):
        evaluate_dataset(images=images, labels_csv=tmp_path / "labels.csv", device="cpu")


def test_map_resemblance_is_the_correlation_with_the_average_map():
    rng = np.random.default_rng(0)
    maps = rng.random((5, len(PATHOLOGIES), 7, 7))
    maps[:, :, 0, 0] += 3.0 * np.arange(5)[:, None]  # one corner grows from image to image
    maps[2, 4] = 0.5  # a flat map: no correlation defined, left out of the medians
    average = maps.mean(axis=0)
    figures = map_resemblance(maps, average)
    for index, label in enumerate(PATHOLOGIES):
        expected = [np.corrcoef(maps[image, index].ravel(), average[index].ravel())[0, 1]
                    for image in range(5) if not (image == 2 and index == 4)]
        assert figures["per_label"][label] == pytest.approx(np.median(expected), abs=1e-4), label
    same = map_resemblance(np.repeat(average[None], 3, axis=0), average)
    assert same["median"] == pytest.approx(1.0) and set(same["per_label"].values()) == {1.0}


def test_method_comparisons_recorded_one_at_a_time_join_only_for_the_same_weights_films_and_settings(tmp_path):
    """`evaluate --methods M --record-in-card nih_test` adds M to the card's comparison when the weights, films, boxes
    and settings are the ones already recorded (slow methods run one at a time); anything else replaces it."""
    card_path = tmp_path / "resnet50_cxr14.json"
    shutil.copy(DEFAULT_CARD, card_path)
    (tmp_path / "resnet50_cxr14.safetensors").symlink_to(DEFAULT_CARD.with_suffix(".safetensors"))
    recorded = read_card(card_path).report("nih_test")
    base = {key: value for key, value in recorded.items() if key != "methods"}  # `evaluate` without --methods

    def comparison(method: str, **changes) -> dict:
        return {"boxes": "boxes.csv", "films": 57, "unreadable": [], "outline_threshold": 0.5,
                "settings": {"threshold": 0.5, "seed": 0, "curve_steps": 10, "sanity_films": 2},
                "methods": {method: {"title": method}}, **changes}

    def recorded_methods() -> list[str]:
        return sorted(read_card(card_path).report("nih_test")["methods"]["methods"])

    record_in_card(card_path, "nih_test", {**base, "methods": comparison("cam")})
    record_in_card(card_path, "nih_test", {**base, "methods": comparison("occlusion")})
    assert recorded_methods() == ["cam", "occlusion"]
    record_in_card(card_path, "nih_test", base)  # evaluated again without --methods: the comparison stays
    assert recorded_methods() == ["cam", "occlusion"]
    other_steps = comparison("kernel_shap", settings={"threshold": 0.5, "seed": 0, "curve_steps": 4, "sanity_films": 2})
    record_in_card(card_path, "nih_test", {**base, "methods": other_steps})
    assert recorded_methods() == ["kernel_shap"]
    record_in_card(card_path, "nih_test", {**base, "weights_sha256": "0" * 64, "methods": comparison("cam")})
    record_in_card(card_path, "nih_test", {**base, "methods": comparison("grad_cam")})
    assert recorded_methods() == ["grad_cam"]  # other weights' figures never join this model's
