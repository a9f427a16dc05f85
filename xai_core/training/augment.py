"""Augmentation on whole batches: one affine warp and intensity changes per film, boxes warped with their film."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import TrainConfig


def random_affine(n: int, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) affine matrices for F.affine_grid: random zoom, rotation and shift."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    zoom = uniform(*config.zoom)
    angle = uniform(-config.rotate_deg, config.rotate_deg) * math.pi / 180
    shift_x, shift_y = uniform(-config.shift, config.shift), uniform(-config.shift, config.shift)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([torch.stack([cos, -sin, shift_x * 2], 1), torch.stack([sin, cos, shift_y * 2], 1)], 1)


def warp(batch: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """(N, S, S) -> (N, size, size) through the affine matrices theta (edges repeated)."""
    grid = F.affine_grid(theta.to(batch.device), (batch.shape[0], 1, size, size), align_corners=False)
    return F.grid_sample(batch.unsqueeze(1), grid, mode="bilinear", padding_mode="border", align_corners=False).squeeze(1)


def augment(batch: torch.Tensor, theta: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """(N, S, S) in [0, 1] -> (N, size, size): the affine warp theta, then random intensity changes.

    No horizontal flip: chest anatomy is lateralised (heart on the left, liver on
    the right, the aortic knob), so a flipped film is not a plausible radiograph
    and flips would blur exactly the left-right cues that cardiomegaly and
    lateralised findings depend on.
    """
    n = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(n, generator=generator)).view(n, 1, 1).to(batch.device)

    warped = warp(batch, theta, config.image_size).clamp(1e-4, 1.0)
    gamma, contrast, brightness = torch.exp(uniform(-0.35, 0.35)), uniform(0.8, 1.2), uniform(-0.08, 0.08)
    noise = torch.randn(warped.shape, generator=generator).to(batch.device) * uniform(0, 0.03)
    out = (warped**gamma - 0.5) * contrast + 0.5 + brightness + noise
    return out.clamp(0.0, 1.0)


def box_masks(boxes: torch.Tensor, theta: torch.Tensor, size: int, grid: tuple[int, int]) -> torch.Tensor:
    """Where each box lies in its film's augmented view, as the share of each map cell it covers.

    boxes (P, 6): film position in the batch, target, x0, y0, x1, y1 (fractions of the film);
    theta (N, 2, 3) the batch's warps. The box is drawn at the input size and warped exactly
    like its film (warp), then averaged over the cells of the map grid (h, w): (P, h, w) in [0, 1].
    """
    if len(boxes) == 0:
        return torch.zeros((0, *grid), device=theta.device)
    centres = (torch.arange(size, dtype=torch.float32, device=theta.device) + 0.5) / size
    x0, y0, x1, y1 = (boxes[:, column].to(theta.device).view(-1, 1) for column in range(2, 6))
    columns = ((centres >= x0) & (centres < x1)).float()  # (P, S)
    rows = ((centres >= y0) & (centres < y1)).float()
    drawn = rows.unsqueeze(2) * columns.unsqueeze(1)  # (P, S, S)
    warped = F.grid_sample(drawn.unsqueeze(1), F.affine_grid(theta[boxes[:, 0].long()], (len(boxes), 1, size, size),
                                                            align_corners=False),
                           mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.adaptive_avg_pool2d(warped, grid).squeeze(1)
