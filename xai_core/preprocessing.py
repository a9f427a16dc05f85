"""How an XRay's grey pixels become the network's input: defined once, named in the model card."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class InputSpec:
    """How an XRay's grey pixels in [0, 1] become the network's input.

    The whole image is resized (squashed, no padding: padding would add borders
    for the model to learn) to size x size, then normalised and repeated to 3 channels.
    """

    size: int = 224
    mean: float = 0.5
    std: float = 0.25

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mean": self.mean,
            "std": self.std,
            "channels": 3,
            "resize": "whole image to size x size, bilinear with antialiasing, aspect ratio not kept",
            "pixels": "grey in [0, 1] after windowing and MONOCHROME1 inversion, repeated to 3 channels",
        }

    def resize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(..., H, W) float in [0, 1] -> (..., size, size)."""
        lead = pixels.shape[:-2]
        flat = pixels.reshape(-1, 1, *pixels.shape[-2:]).float()
        out = F.interpolate(flat, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return out.clamp_(0.0, 1.0).reshape(*lead, self.size, self.size)

    def normalise(self, resized: torch.Tensor) -> torch.Tensor:
        """(N, S, S) in [0, 1] -> (N, 3, S, S) network input."""
        return ((resized - self.mean) / self.std).unsqueeze(1).expand(-1, 3, -1, -1)

    def prepare(self, pixels: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """One grey image (H, W) -> (1, 3, size, size) on device."""
        tensor = torch.tensor(np.asarray(pixels, dtype=np.float32), device=device)  # a copy: pixels may be read-only
        return self.normalise(self.resize(tensor).unsqueeze(0)).contiguous()
