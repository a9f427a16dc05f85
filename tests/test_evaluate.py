"""The evaluation's controls: the average-map control is what the model shows whatever the image."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from xai_core.errors import XRayError
from xai_core.evaluate import evaluate_dataset, map_resemblance
from xai_core.labels import PATHOLOGIES


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
