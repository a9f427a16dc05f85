"""Fitting what the model card carries from data: probability calibration and out-of-distribution statistics.

This sits above the model and the explanation (it runs the model over whole datasets); what the card
carries is applied at inference by calibration.py and ood.py, which import neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from . import ood
from .data import Case
from .errors import XRayError
from .explain import explain
from .imaging import read_xray
from .labels import PATHOLOGIES
from .card import update_card
from .model import XRayModel
from .stats import fit_platt


def fit_calibration(model: XRayModel, cases: list[Case]) -> dict[str, Any]:
    """The card's `calibration` section: (scale, shift) per label from the raw logits of these labelled films."""
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


def pooled_features(model: XRayModel, cases: list[Case], description: str) -> dict[str, np.ndarray]:
    """(N, K) pooled features per block, one forward pass per image."""
    rows = [explain(model, read_xray(case.image)).features for case in tqdm(cases, desc=description, unit="image")]
    return {name: np.stack([row[name] for row in rows]) for name in ood.BLOCKS}


def fit_ood(model: XRayModel, card_path: Path, train: list[Case], val: list[Case]) -> dict:
    """Fit on training images, set the threshold on validation images, record both in the model card."""
    distribution = ood.fit(pooled_features(model, train, "training features"))
    features = pooled_features(model, val, "validation features")
    distances = np.array([distribution.distance({name: block[index] for name, block in features.items()})
                          for index in range(len(val))])
    threshold = float(np.quantile(distances, 1 - ood.FALSE_ALARM_RATE))
    card_path = Path(card_path)
    stats_path = card_path.with_name(card_path.stem + "_ood.safetensors")
    section = {
        "method": f"root of the summed squared Mahalanobis distances of the unit-length pooled {' and '.join(ood.BLOCKS)} "
        f"features, each under a PPCA ({ood.COMPONENTS} components) of the training images' features",
        "blocks": list(ood.BLOCKS),
        "file": stats_path.name,
        "sha256": ood.save(distribution, stats_path),
        "threshold": round(threshold, 4),
        "threshold_rule": f"{100 * (1 - ood.FALSE_ALARM_RATE):.0f}th percentile of the validation images' distances",
        "fitted_on_images": len(train),
        "validation_images": len(val),
    }
    update_card(card_path, out_of_distribution=section)
    return section
