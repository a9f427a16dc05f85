"""The training bank: balanced draws per source, box CSVs read with clear errors, boxes kept per film."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xai_core.data import Case, read_rsna
from xai_core.errors import XRayError
from xai_core.training.bank import TARGETS, ImageBank, rank_order, read_training_boxes
from xai_core.training.config import TrainConfig


def test_each_epoch_is_a_balanced_shuffled_draw_split_between_processes():
    sources = ["nih"] * 100 + ["pediatric"] * 500
    bank = ImageBank(pixels=torch.zeros(600, 1, 1, dtype=torch.uint8), labels=torch.zeros(600, 14), sources=sources)
    config = TrainConfig(out=Path("unused.json"), work_dir=Path("unused"), shares={"nih": 0.5})
    first, second = rank_order(bank.sources, 0, config, 0, 2), rank_order(bank.sources, 0, config, 1, 2)
    assert len(first) == len(second) == 300
    for part in (first[:100], first[100:200], second[:100]):  # NIH images spread through the epoch, not in a block
        assert 0.35 < float((part < 100).float().mean()) < 0.65
    assert not torch.equal(rank_order(bank.sources, 1, config, 0, 2), first)  # a new draw each epoch


def _film(path: Path, width: int = 160, height: int = 80) -> Path:
    from PIL import Image

    Image.new("L", (width, height), 128).save(path)
    return path


def _boxes_csv(path: Path, rows: list[str], header: str = "image,finding,x,y,w,h") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_box_csvs_are_read_with_clear_errors(tmp_path):
    _film(tmp_path / "a.png")
    unknown = _boxes_csv(tmp_path / "unknown.csv", ["a.png,Broken rib,1,1,5,5"])
    with pytest.raises(XRayError, match="row 2: 'Broken rib' is not one of the 14"):
        read_training_boxes([(unknown, tmp_path)])
    missing = _boxes_csv(tmp_path / "missing.csv", ["b.png,Nodule,1,1,5,5"])
    with pytest.raises(XRayError, match="missing.csv has a box on b.png, which is not in"):
        read_training_boxes([(missing, tmp_path)])
    flat = _boxes_csv(tmp_path / "flat.csv", ["a.png,Nodule,1,1,0,5"])
    with pytest.raises(XRayError, match="positive width and height"):
        read_training_boxes([(flat, tmp_path)])
    outside = _boxes_csv(tmp_path / "outside.csv", ["a.png,Nodule,170,1,5,5"])
    findings = read_training_boxes([(outside, tmp_path)])
    case = Case(image=tmp_path / "a.png", labels=np.full(14, np.nan, dtype=np.float32), source="test")
    with pytest.raises(XRayError, match=r"Nodule box on a.png .* lies outside the image \(160 x 80 pixels\)"):
        ImageBank.load([case], 16, "test", findings)


def test_boxes_are_kept_relative_to_their_film_and_an_opacity_box_supervises_two_maps(tmp_path):
    _film(tmp_path / "a.png")
    _film(tmp_path / "b.png")
    nih = _boxes_csv(tmp_path / "boxes.csv", ["a.png,Infiltrate,40,20,80,40"])
    chestxdet = _boxes_csv(tmp_path / "chestxdet.csv", ["a.png,Calcification,,0,0,4,4,train",
                                                        "b.png,Diffuse Nodule,Nodule,120,0,80,40,train"],
                           header="image,finding,nih_label,x,y,w,h,split")
    rsna = _boxes_csv(tmp_path / "rsna.csv", ["b.png,Lung Opacity,0,40,80,40"])
    findings = read_training_boxes([(nih, tmp_path), (chestxdet, tmp_path), (rsna, tmp_path)])
    cases = [Case(image=tmp_path / name, labels=np.full(14, np.nan, dtype=np.float32), source="test")
             for name in ("b.png", "a.png")]
    bank = ImageBank.load(cases, 16, "test", findings)
    rows = {(int(row[0]), TARGETS[int(row[1])]): row[2:].tolist() for row in bank.boxes}
    assert rows[(1, "Infiltration")] == pytest.approx([0.25, 0.25, 0.75, 0.75])
    assert rows[(0, "Nodule")] == pytest.approx([0.75, 0.0, 1.0, 0.5])  # clipped at the film's right edge
    assert rows[(0, "Lung Opacity")] == rows[(0, "Pneumonia")] == pytest.approx([0.0, 0.5, 0.5, 1.0])
    assert len(bank.boxes) == 4  # the Calcification box has no NIH label and is skipped
    picked = bank.boxes_of(torch.tensor([1]))
    assert picked[:, 0].tolist() == [0.0] and TARGETS[int(picked[0, 1])] == "Infiltration"


def test_rsna_normal_films_are_negative_for_all_14_labels_and_the_others_unknown(shared_data):
    cases = read_rsna(shared_data / "rsna", ["val"])
    assert len(cases) == 270
    by_class = {}
    with open(shared_data / "rsna" / "labels.csv", newline="") as handle:
        import csv

        by_class = {row["image"]: row["class"] for row in csv.DictReader(handle)}
    for case in cases:
        kind = by_class[case.image.name]
        if kind == "Normal":
            assert np.all(case.labels == 0) and case.opacity == 0
        else:
            assert np.all(np.isnan(case.labels)) and case.opacity == (1.0 if kind == "Lung Opacity" else 0.0)
