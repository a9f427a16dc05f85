"""Probabilities that read as rates: Platt scaling per label, fitted on validation films.

Training weights the rare findings up (`train.positive_weights`), so the plain
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
from typing import Any

import numpy as np
from tqdm import tqdm

from .data import Case
from .errors import XRayError
from .imaging import read_xray
from .labels import PATHOLOGIES
from .stats import fit_platt


def fit(model, cases: list[Case]) -> dict[str, Any]:
    """The card's `calibration` section: (scale, shift) per label from the raw logits of these labelled films."""
    from .explain import explain  # explain imports model, which imports this module

    logits, truth = [], []
    for case in tqdm(cases, desc="calibration logits", unit="image"):
        try:
            logits.append(explain(model, read_xray(case.image)).logits)
        except XRayError:
            continue
        truth.append(case.labels)
    if not logits:
        raise XRayError("No readable labelled images to calibrate on.")
    logits, truth = np.stack(logits), np.stack(truth)
    labels = {}
    for index, label in enumerate(PATHOLOGIES):
        scale, shift = fit_platt(truth[:, index], logits[:, index])
        labels[label] = {"scale": round(scale, 6), "shift": round(shift, 6),
                         "positives": int(np.nansum(truth[:, index]))}
    return {"method": "Platt scaling per label: p = sigmoid(scale * logit + shift), log loss with a small "
                      "penalty towards the identity (stats.fit_platt)",
            "images": len(logits), "labels": labels}


def probabilities(card: dict[str, Any], logits: np.ndarray) -> np.ndarray:
    """(..., 14) raw logits -> probabilities, calibrated where the card holds a calibration."""
    scale, shift = _parameters(card)
    return (1.0 / (1.0 + np.exp(-(scale * np.asarray(logits, dtype=np.float64) + shift)))).astype(np.float32)


def threshold(card: dict[str, Any], label: str, raw: float) -> float:
    """An operating threshold chosen on raw probabilities, mapped to the calibrated scale (same decisions)."""
    entry = card.get("calibration", {}).get("labels", {}).get(label)
    if entry is None or not 0.0 < raw < 1.0:
        return raw  # uncalibrated: the threshold exactly as the card gives it
    return 1.0 / (1.0 + math.exp(-(entry["scale"] * math.log(raw / (1.0 - raw)) + entry["shift"])))


def _parameters(card: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    given = card.get("calibration", {}).get("labels", {})
    scale = np.array([given.get(label, {}).get("scale", 1.0) for label in PATHOLOGIES])
    shift = np.array([given.get(label, {}).get("shift", 0.0) for label in PATHOLOGIES])
    return scale, shift
