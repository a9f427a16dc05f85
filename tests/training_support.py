"""Short `python -m xai_core train` runs on a few real nih_boxed films with their radiologist boxes, for the
training tests (test_training_loop.py, test_training_feature_bank.py)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from xai_core.model import DEFAULT_CARD


def nih_boxed_subset(shared_data: Path, path: Path, split: str, count: int) -> Path:
    """The first `count` films of a split of nih_boxed that have boxes, as a labels CSV."""
    with open(shared_data / "nih_boxed" / "boxes.csv", newline="") as handle:
        boxed = {row["image"] for row in csv.DictReader(handle)}
    with open(shared_data / "nih_boxed" / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split and row["image"] in boxed][:count]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def train_on_boxed_films(shared_data: Path, tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    """Fine-tuning of the shipped checkpoint on 4 boxed nih_boxed train films (validated on the 47 val films), at
    96 px, 4 films a batch, box loss 2.0, on the CPU, plus `options` (steps, learning rate, what is frozen, ...);
    the card goes to tmp_path/out/m.json, the log and checkpoints to tmp_path/work."""
    boxed = shared_data / "nih_boxed"
    command = [
        sys.executable, "-m", "xai_core", "train", "--out", str(tmp_path / "out" / "m.json"),
        "--work-dir", str(tmp_path / "work"),
        "--csv", str(nih_boxed_subset(shared_data, tmp_path / "train.csv", "train", 4)), str(boxed / "images"),
        "--val-csv", str(nih_boxed_subset(shared_data, tmp_path / "val.csv", "val", 47)), str(boxed / "images"),
        "--boxes", str(boxed / "boxes.csv"), str(boxed / "images"), "--init-from", str(DEFAULT_CARD),
        "--image-size", "96", "--batch-size", "4", "--warmup-steps", "1", "--box-loss", "2.0", "--device", "cpu",
        *options,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
