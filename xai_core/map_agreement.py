"""How far two maps of the same film and pathology agree: rank correlation and overlap of their strongest regions.

Used wherever two explanation methods are set side by side (the viewer's comparison, the
figures) and by the randomisation check (faithfulness.py), which asks how far a map still
resembles the original once the model's weights are re-drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr


@dataclass(frozen=True)
class MapAgreement:
    """How far two maps of the same film and pathology agree, in figures and in words."""

    rank_correlation: float  # Spearman's rho over pixels
    region_overlap: float  # IoU of the regions at or above the threshold of each normalised map
    threshold: float

    def in_words(self) -> str:
        rho = self.rank_correlation
        strength = "strongly" if rho >= 0.7 else "partly" if rho >= 0.3 else "hardly"
        return (f"The two maps {strength} agree: rank correlation {rho:.2f}; their strongest regions "
                f"(at or above {self.threshold:.0%} of each map's range) overlap {self.region_overlap:.0%} (IoU).")


def map_agreement(first: np.ndarray, second: np.ndarray, *, threshold: float = 0.5) -> MapAgreement:
    """Agreement of two normalised maps (H, W) in [0, 1] of the same film."""
    if first.shape != second.shape:
        raise ValueError(f"maps of one film must have one shape, got {first.shape} and {second.shape}")
    first_region, second_region = first >= threshold, second >= threshold
    union = np.logical_or(first_region, second_region).sum()
    overlap = float(np.logical_and(first_region, second_region).sum() / union) if union else 0.0
    return MapAgreement(rank_correlation(first, second), overlap, threshold)


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's rho over pixels; 0 when either map is flat (it ranks nothing, so agrees with nothing)."""
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return 0.0
    return float(spearmanr(np.ravel(first), np.ravel(second)).statistic)
