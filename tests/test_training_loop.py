"""Training runs end to end on real films: DDP on the CPU (gloo), fine-tuning, box supervision."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from loopback import free_port
from training_support import train_on_boxed_films

from xai_core.card import read_card
from xai_core.model import DEFAULT_CARD, load_model


def _subset_csv(shared_data: Path, path: Path, split: str, count: int) -> Path:
    with open(shared_data / "nih" / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split][:count]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_two_process_ddp_training_ends_with_identical_weights(shared_data, tmp_path):
    images = shared_data / "nih" / "images"
    train_csv = _subset_csv(shared_data, tmp_path / "train.csv", "train", 8)
    val_csv = _subset_csv(shared_data, tmp_path / "val.csv", "val", 12)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
        "-m", "xai_core", "train", "--out", str(tmp_path / "out" / "m.json"), "--work-dir", str(tmp_path / "work"),
        "--csv", str(train_csv), str(images), "--val-csv", str(val_csv), str(images),
        "--image-size", "64", "--batch-size", "4", "--steps", "3", "--warmup-steps", "1",
        "--validate-every", "3", "--attention-prior", "1.0", "--device", "cpu",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={"OMP_NUM_THREADS": "1", **os.environ}, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    digests = dict(re.findall(r"rank (\d) final weights digest ([0-9a-f]{64})", result.stdout + result.stderr))
    assert set(digests) == {"0", "1"}
    assert digests["0"] == digests["1"]
    model = load_model(tmp_path / "out" / "m.json", device="cpu")
    assert model.card.training["command"].startswith("python -m xai_core train")
    assert model.card.training["steps"] == 3
    assert (tmp_path / "work" / "train.log").read_text().count("validation at step 3") == 1


def test_fine_tuning_starts_from_the_given_checkpoint_and_records_it(shared_data, tmp_path):
    images = shared_data / "nih" / "images"
    train_csv = _subset_csv(shared_data, tmp_path / "train.csv", "train", 4)
    val_csv = _subset_csv(shared_data, tmp_path / "val.csv", "val", 12)
    command = [
        sys.executable, "-m", "xai_core", "train", "--out", str(tmp_path / "out" / "m.json"), "--work-dir", str(tmp_path / "work"),
        "--csv", str(train_csv), str(images), "--val-csv", str(val_csv), str(images), "--init-from", str(DEFAULT_CARD),
        "--image-size", "64", "--batch-size", "4", "--steps", "1", "--warmup-steps", "1", "--lr", "0",
        "--validate-every", "1", "--attention-prior", "1.0", "--prior-regions", "per-label", "--device", "cpu",
        "--distil", "1.0", "--freeze-batchnorm",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The network is the starting one, so its outputs have not drifted from the reference's.
    drift = re.findall(r"outputs drifting from the start ([0-9.]+)", (tmp_path / "work" / "train.log").read_text())
    assert drift and float(drift[-1]) == 0.0
    shipped = read_card(DEFAULT_CARD)
    tuned = load_model(tmp_path / "out" / "m.json", device="cpu")
    start = tuned.card.training["initialisation"]
    assert start["weights_sha256"] == shipped.weights_sha256
    assert start["training_command"] == shipped.training["command"]
    assert tuned.card.training["box_supervision"]["batchnorm_statistics"] == "kept from the starting checkpoint"
    # With a learning rate of 0 and BatchNorm statistics kept, every weight and buffer stays the shipped one.
    reference = load_model(DEFAULT_CARD, device="cpu").network.state_dict()
    for name, tensor in tuned.network.state_dict().items():
        assert torch.equal(tensor, reference[name]), name


def test_two_steps_with_radiologist_boxes_train_the_maps_and_report_localisation(shared_data, tmp_path):
    result = train_on_boxed_films(shared_data, tmp_path, "--steps", "2", "--lr", "1e-4", "--validate-every", "2",
                                  "--freeze-through", "layer2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tmp_path / "work" / "train.log").read_text()
    outside = [float(value) for value in re.findall(r"box evidence outside ([0-9.]+)", log)]
    assert outside and 0 < outside[-1] <= 1  # the four films' boxes were seen and scored
    card = load_model(tmp_path / "out" / "m.json", device="cpu").card
    localisation = card.validation_during_training["localisation"]["val"]
    assert localisation["boxes"] >= 47 and 0 <= localisation["random"] < localisation["pointing"] + 1
    assert card.training["box_supervision"]["box_loss_weight"] == 2.0
    assert "before any test figure" in card.training["selection_rule"]
    # Every validated step is kept for evaluate, read at the size it was trained at.
    assert load_model(tmp_path / "work" / "step_2.json", device="cpu").input_spec.size == 96
    # The stem and the first two blocks were frozen: they are the starting checkpoint's exactly.
    reference = load_model(DEFAULT_CARD, device="cpu").network
    tuned = load_model(tmp_path / "out" / "m.json", device="cpu").network
    assert torch.equal(tuned.layer2[0].conv1.weight, reference.layer2[0].conv1.weight)
    assert not torch.equal(tuned.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)


def test_head_only_box_supervision_changes_the_head_and_nothing_else(shared_data, tmp_path):
    """--freeze-through layer4: the box loss can only re-weight the channels each map is made of."""
    result = train_on_boxed_films(shared_data, tmp_path, "--steps", "2", "--lr", "1e-3", "--validate-every", "2",
                                  "--freeze-through", "layer4")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reference = load_model(DEFAULT_CARD, device="cpu").network.state_dict()
    tuned = load_model(tmp_path / "out" / "m.json", device="cpu")
    assert tuned.card.training["box_supervision"]["frozen_through"] == "layer4"
    changed = {name for name, tensor in tuned.network.state_dict().items() if not torch.equal(tensor, reference[name])}
    assert changed and changed <= {"fc.weight", "fc.bias"}, changed
