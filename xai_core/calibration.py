"""Probabilities that read as rates: Platt scaling per label, fitted on validation films.

Training weights the rare findings up (`training.attention.positive_weights`), so the plain
sigmoid of a logit overstates them: model 0.3.1's expected calibration error on
NIH test was 0.11-0.35 per label. For each label, p = sigmoid(scale * logit +
shift) is fitted on the NIH `val` films (never on test) and kept in the model
card. The map is increasing, so AUROC and the decisions at each operating
threshold are unchanged (the thresholds are mapped with it), and the
Grad-CAM++ maps, computed on the raw logit as the reference library does, are
untouched. Calibration cannot carry across a change of prevalence: in this
subset Pneumonia is 26% of `val` and 51% of `test`.
"""

from __future__ import annotations

import math

import numpy as np

from .card import Calibration
from .labels import PATHOLOGIES


def probabilities(calibration: Calibration | None, logits: np.ndarray) -> np.ndarray:
    """(..., 14) raw logits -> probabilities, calibrated where the card holds a calibration."""
    scale, shift = _parameters(calibration)
    return (1.0 / (1.0 + np.exp(-(scale * np.asarray(logits, dtype=np.float64) + shift)))).astype(np.float32)


def threshold(calibration: Calibration | None, label: str, raw: float) -> float:
    """An operating threshold chosen on raw probabilities, mapped to the calibrated scale (same decisions)."""
    entry = None if calibration is None else calibration.labels.get(label)
    if entry is None or not 0.0 < raw < 1.0:
        return raw  # uncalibrated: the threshold exactly as the card gives it
    return 1.0 / (1.0 + math.exp(-(entry.scale * math.log(raw / (1.0 - raw)) + entry.shift)))


def _parameters(calibration: Calibration | None) -> tuple[np.ndarray, np.ndarray]:
    given = {} if calibration is None else calibration.labels
    scale = np.array([given[label].scale if label in given else 1.0 for label in PATHOLOGIES])
    shift = np.array([given[label].shift if label in given else 0.0 for label in PATHOLOGIES])
    return scale, shift
