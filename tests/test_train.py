"""Training: a two-process DDP run on the CPU (gloo) ends with identical weights, and a loadable checkpoint."""

from __future__ import annotations

import csv
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xai_core.model import load_model
from xai_core.labels import PATHOLOGIES
from xai_core.model import DEFAULT_CARD, read_card
from xai_core.train import (
    ImageBank, TrainConfig, anatomical_priors, augment, evidence_on_negatives, evidence_outside, map_equivariance,
    masked_bce, random_affine, rank_order, shifted_by_cells, thorax_prior, warp,
)


def _subset_csv(shared_data: Path, path: Path, split: str, count: int) -> Path:
    with open(shared_data / "nih" / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split][:count]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_ddp_training_ends_with_identical_weights(shared_data, tmp_path):
    images = shared_data / "nih" / "images"
    train_csv = _subset_csv(shared_data, tmp_path / "train.csv", "train", 8)
    val_csv = _subset_csv(shared_data, tmp_path / "val.csv", "val", 12)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "xai_core", "train", "--out", str(tmp_path / "out" / "m.json"), "--work-dir", str(tmp_path / "work"),
        "--csv", str(train_csv), str(images), "--val-csv", str(val_csv), str(images),
        "--image-size", "64", "--batch-size", "4", "--steps", "3", "--warmup-steps", "1",
        "--validate-every", "3", "--attention-prior", "1.0", "--device", "cpu",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", **_env()})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    digests = dict(re.findall(r"rank (\d) final weights digest ([0-9a-f]{64})", result.stdout + result.stderr))
    assert set(digests) == {"0", "1"}
    assert digests["0"] == digests["1"]
    model = load_model(tmp_path / "out" / "m.json", device="cpu")
    assert model.card["training"]["command"].startswith("python -m xai_core train")
    assert model.card["training"]["steps"] == 3
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
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shipped = read_card(DEFAULT_CARD)
    tuned = load_model(tmp_path / "out" / "m.json", device="cpu")
    start = tuned.card["training"]["initialisation"]
    assert start["weights_sha256"] == shipped["weights_sha256"]
    assert start["training_command"] == shipped["training"]["command"]
    # With a learning rate of 0 the weights stay the shipped ones (BatchNorm statistics still move in train mode).
    reference = load_model(DEFAULT_CARD, device="cpu").network
    assert torch.equal(tuned.network.fc.weight, reference.fc.weight)
    assert torch.equal(tuned.network.conv1.weight, reference.conv1.weight)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_augmentation_keeps_range_and_size_and_never_flips():
    config = TrainConfig(out=Path("unused.json"), work_dir=Path("unused"), image_size=64, rotate_deg=0, shift=0,
                         zoom=(1.0, 1.0))
    generator = torch.Generator().manual_seed(0)
    batch = torch.zeros(2, 80, 80)
    batch[:, :, :20] = 1.0  # a bright left edge
    theta = random_affine(2, config, generator)
    out = augment(batch, theta, config, generator)
    assert out.shape == (2, 64, 64) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert float(out[:, :, :10].mean()) > float(out[:, :, -10:].mean()) + 0.3  # still on the left


def test_masked_loss_ignores_unknown_labels():
    logits = torch.tensor([[5.0, -5.0], [0.0, 0.0]])
    known = torch.tensor([[1.0, float("nan")], [float("nan"), float("nan")]])
    flipped = torch.tensor([[1.0, float("nan")], [float("nan"), float("nan")]])
    weight = torch.ones(2)
    assert masked_bce(logits, known, weight) == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-5.0))))
    assert masked_bce(logits, flipped, weight) == masked_bce(logits, known, weight)


def test_evidence_outside_the_thorax_is_measured_where_it_lies():
    head = torch.nn.Linear(2, 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, -1.0]]))
    inside = torch.from_numpy(np.pad(np.ones((3, 3), np.float32), 2))[None]  # 7 x 7, centre 3 x 3 inside
    features = torch.zeros(1, 2, 7, 7)
    features[0, 0, 0, 0] = 1.0  # positive evidence in a corner
    features[0, 1, 3, 3] = 5.0  # a negatively weighted channel does not count as evidence
    assert float(evidence_outside(features, head, inside, torch.ones(1, 1)).detach()) == pytest.approx(1.0, abs=1e-5)
    features[0, 0, 3, 3] = 3.0
    assert float(evidence_outside(features, head, inside, torch.ones(1, 1)).detach()) == pytest.approx(0.25, abs=1e-5)
    prior = thorax_prior(224)
    assert float(prior[50:170, 40:184].min()) > 0.85  # the lung fields and the heart (soft edges)
    edges = torch.cat([prior[0], prior[-1], prior[:, 0], prior[:, -1]])
    assert float(edges.max()) < 0.15


def test_evidence_on_negatives_counts_positive_evidence_where_the_label_is_known_absent():
    head = torch.nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 1.0]]))
    features = torch.zeros(2, 2, 4, 4)
    features[0, 0, 1, 1] = 8.0  # image 0: channel 0 in one of 16 cells
    features[1, 1] = 1.0  # image 1: channel 1 everywhere
    # evidence per (image, label), the map's mean: [[2*8/16, 0.5*8/16], [0, 1]] (negative weights do not count)
    targets = torch.tensor([[0.0, float("nan")], [1.0, 0.0]])  # known negatives: (0, label 0) and (1, label 1)
    assert evidence_on_negatives(features, head, targets).item() == pytest.approx((1.0 + 1.0) / 2)
    features.requires_grad_(True)
    evidence_on_negatives(features, head, torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]])).backward()
    assert float(features.grad.abs().sum()) == 0.0  # no known negative, nothing to push


def test_a_view_shifted_by_cells_moves_the_film_by_whole_cells_of_the_map():
    generator = torch.Generator().manual_seed(3)
    film = torch.rand(2, 224, 224, generator=generator)
    theta = torch.eye(2, 3).repeat(2, 1, 1)
    view = warp(film, theta, 224)
    right_down = warp(film, shifted_by_cells(theta, (1, 1), 7), 224)  # cell (x, y) shows the view's (x + 1, y + 1)
    assert torch.allclose(right_down[:, :-32, :-32], view[:, 32:, 32:], atol=1e-4)
    left = warp(film, shifted_by_cells(theta, (-1, 0), 7), 224)
    assert torch.allclose(left[:, :, 32:], view[:, :, :-32], atol=1e-4)


def test_map_equivariance_is_zero_for_maps_that_move_with_the_film_and_not_for_a_fixed_spot():
    head = torch.nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.5, -1.0], [0.0, 2.0, 1.0]]))
    generator = torch.Generator().manual_seed(0)
    content = torch.rand(4, 3, 8, 8, generator=generator)
    view, moved = content[:, :, :7, :7], content[:, :, 1:, 1:]  # the second view reads one cell right and down
    weights = torch.ones(4, 2)
    assert map_equivariance(view, moved, head, (1, 1), weights).item() == pytest.approx(0.0, abs=1e-6)
    fixed = torch.zeros(4, 3, 7, 7)
    fixed[:, 0, 3, 2] = 50.0  # the same bright spot on every view, whatever the film shows
    assert map_equivariance(fixed + view, fixed + moved, head, (1, 1), weights).item() > 0.2
    assert map_equivariance(fixed + view, fixed + moved, head, (1, 1), torch.zeros(4, 2)).item() == 0.0


def test_per_label_priors_keep_lung_findings_off_the_mediastinum_and_cardiomegaly_on_the_heart():
    size = 100
    priors = anatomical_priors(size)
    assert priors.shape == (len(PATHOLOGIES), size, size)
    pneumonia, heart = priors[PATHOLOGIES.index("Pneumonia")], priors[PATHOLOGIES.index("Cardiomegaly")]
    right_lung, left_lung, mediastinum = pneumonia[40, 25], pneumonia[40, 75], pneumonia[40, 50]
    assert float(min(right_lung, left_lung)) > 0.9 and float(mediastinum) < 0.1
    assert float(heart[65, 55]) > 0.9 and float(heart[25, 20]) < 0.1
    assert torch.equal(priors[PATHOLOGIES.index("Hernia")], thorax_prior(size))
    # Each label's evidence is judged against its own mask.
    head = torch.nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.fill_(1.0)
    features = torch.zeros(1, 1, size, size)
    features[0, 0, 65, 50] = 1.0  # evidence on the heart, behind the mediastinum
    inside = torch.stack([pneumonia, heart])[None]
    per_label = [float(evidence_outside(features, head, inside, torch.eye(2)[[label]]).detach()) for label in (0, 1)]
    assert per_label[0] > 0.9 and per_label[1] < 0.1


def test_each_epoch_is_a_balanced_shuffled_draw_split_between_processes():
    sources = ["nih"] * 100 + ["pediatric"] * 500
    bank = ImageBank(pixels=torch.zeros(600, 1, 1, dtype=torch.uint8), labels=torch.zeros(600, 14), sources=sources)
    config = TrainConfig(out=Path("unused.json"), work_dir=Path("unused"), nih_share=0.5)
    first, second = rank_order(bank, 0, config, 0, 2), rank_order(bank, 0, config, 1, 2)
    assert len(first) == len(second) == 300
    for part in (first[:100], first[100:200], second[:100]):  # NIH images spread through the epoch, not in a block
        assert 0.35 < float((part < 100).float().mean()) < 0.65
    assert not torch.equal(rank_order(bank, 1, config, 0, 2), first)  # a new draw each epoch
