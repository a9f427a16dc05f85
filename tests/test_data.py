"""Dataset readers on the real CSVs and on small CSVs written by the tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xai_core.data import read_boxes, read_label_csv, read_nih, read_pediatric
from xai_core.errors import XRayError
from xai_core.labels import PATHOLOGIES, label_index


def test_nih_splits_are_read_with_all_14_labels_known(shared_data):
    counts = {split: len(read_nih(shared_data / "nih", [split])) for split in ("train", "val", "test")}
    assert counts == {"train": 896, "val": 188, "test": 318}
    test = read_nih(shared_data / "nih", ["test"])
    truth = np.stack([case.labels for case in test])
    assert not np.isnan(truth).any()
    assert int(truth[:, label_index("Pneumonia")].sum()) == 161  # as the data README counts
    assert all(case.image.is_file() for case in test[:20])


def test_pediatric_images_know_only_pneumonia(shared_data):
    cases = read_pediatric(shared_data / "pediatric_pneumonia", ["val"])
    truth = np.stack([case.labels for case in cases])
    pneumonia = label_index("Pneumonia")
    assert not np.isnan(truth[:, pneumonia]).any()
    assert np.isnan(np.delete(truth, pneumonia, axis=1)).all()
    assert {case.source for case in cases} == {"pediatric"}


def test_radiologist_boxes(shared_data):
    boxes = read_boxes(shared_data / "nih" / "boxes.csv")
    assert len(boxes) == 55 and sum(len(found) for found in boxes.values()) == 60
    labels = {finding.label for found in boxes.values() for finding in found}
    assert "Infiltration" in labels  # NIH spells it "Infiltrate" in the box list
    assert labels <= set(PATHOLOGIES)


def test_csv_aliases_unknowns_and_extra_columns(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "image,Infiltrate,Pleural Effusion,Cardiomegaly,age\n"
        "a.png,1,,0,40\n"
        "b.png,0,-1,1,55\n"
    )
    a, b = read_label_csv(tmp_path / "labels.csv", tmp_path)
    assert a.image == tmp_path / "a.png"
    assert a.labels[label_index("Infiltration")] == 1 and math.isnan(a.labels[label_index("Effusion")])
    assert math.isnan(b.labels[label_index("Effusion")])  # CheXpert's -1 (uncertain) is unknown
    assert b.labels[label_index("Cardiomegaly")] == 1
    assert math.isnan(a.labels[label_index("Hernia")])  # no column: unknown, not negative


@pytest.mark.parametrize(
    "content, message",
    [
        ("image,Pneumonia\na.png,2\n", "not 0, 1 or empty"),
        ("image,Pneumonia\na.png,yes\n", "not 0, 1 or empty"),
        ("file,Pneumonia\na.png,1\n", "'image' column"),
        ("image,age\na.png,1\n", "no column named after"),
        ("", "no rows"),
    ],
)
def test_bad_label_csvs_are_explained(tmp_path, content, message):
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(XRayError, match=message):
        read_label_csv(tmp_path / "labels.csv", tmp_path)


@pytest.mark.parametrize(
    "row, message",
    [("a.png,Pneumonia,1,2,-5,4", "row 2: A finding box needs"), ("a.png,Sprain,1,2,3,4", "not one of the 14"),
     ("a.png,Pneumonia,one,2,3,4", "row 2: needs image")],
)
def test_bad_box_rows_are_explained(tmp_path, row, message):
    (tmp_path / "boxes.csv").write_text("image,finding,x,y,w,h\n" + row + "\n")
    with pytest.raises(XRayError, match=message):
        read_boxes(tmp_path / "boxes.csv")


def test_a_missing_csv_is_explained(tmp_path):
    with pytest.raises(XRayError, match="not found"):
        read_label_csv(tmp_path / "absent.csv", tmp_path)
