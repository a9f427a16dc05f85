"""Augmentation: range, no flips, whole-cell shifts, and boxes that move exactly with their film."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xai_core.training.attention import shifted_by_cells
from xai_core.training.augment import augment, box_masks, random_affine, warp
from xai_core.training.config import TrainConfig


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


def test_a_view_shifted_by_cells_moves_the_film_by_whole_cells_of_the_map():
    generator = torch.Generator().manual_seed(3)
    film = torch.rand(2, 224, 224, generator=generator)
    theta = torch.eye(2, 3).repeat(2, 1, 1)
    view = warp(film, theta, 224)
    right_down = warp(film, shifted_by_cells(theta, (1, 1), 7), 224)  # cell (x, y) shows the view's (x + 1, y + 1)
    assert torch.allclose(right_down[:, :-32, :-32], view[:, 32:, 32:], atol=1e-4)
    left = warp(film, shifted_by_cells(theta, (-1, 0), 7), 224)
    assert torch.allclose(left[:, :, 32:], view[:, :, :-32], atol=1e-4)


def test_a_box_moves_exactly_with_its_film_under_augmentation():
    size = 128
    config = TrainConfig(out=Path("unused.json"), work_dir=Path("unused"), image_size=size, rotate_deg=10, shift=0.08,
                         zoom=(1.0, 1.3))
    film = torch.zeros(3, size, size)
    film[:, 40:72, 20:60] = 1.0  # a bright finding: rows 40..71, columns 20..59
    boxes = torch.tensor([[float(index), 0.0, 20 / size, 40 / size, 60 / size, 72 / size] for index in range(3)])
    theta = random_affine(3, config, torch.Generator().manual_seed(5))
    seen = warp(film, theta, size)
    masks = box_masks(boxes, theta, size, (size, size))  # at the pixel grid: the warped box itself
    for view, mask in zip(seen, masks):
        ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
        centre = [float((view * axis).sum() / view.sum()) for axis in (ys, xs)]
        box_centre = [float((mask * axis).sum() / mask.sum()) for axis in (ys, xs)]
        assert centre == [pytest.approx(value, abs=0.5) for value in box_centre]
        overlap = float(((view > 0.5) & (mask > 0.5)).sum() / ((view > 0.5) | (mask > 0.5)).sum())
        assert overlap > 0.9
    cells = box_masks(boxes, theta, size, (4, 4))  # averaged over a 4 x 4 map: each cell's share of the box
    assert cells.shape == (3, 4, 4) and float(cells.max()) <= 1.0
    assert torch.allclose(cells.sum((1, 2)) * (size // 4) ** 2, masks.sum((1, 2)), rtol=1e-4)
