"""The model's outputs on labelled films, one forward pass each: what calibration and operating points are fitted on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from .data import Case
from .errors import XRayError
from .explanation import explain
from .imaging import read_xray
from .model import XRayModel


@dataclass(frozen=True)
class LabelledOutputs:
    """Rows are the readable films among the cases, in order; unreadable films are left out."""

    truth: np.ndarray  # (n, 14) float32: 1, 0 or NaN (unknown)
    logits: np.ndarray  # (n, 14) float32, raw
    probabilities: np.ndarray  # (n, 14) float32, after the card's calibration: what the page shows


def outputs_on(model: XRayModel, cases: list[Case], description: str) -> LabelledOutputs:
    """Run the model on each case's film (a progress bar named by description); XRayError if none is readable."""
    truth, logits, probabilities = [], [], []
    for case in tqdm(cases, desc=description, unit="image"):
        try:
            explanation = explain(model, read_xray(case.image))
        except XRayError:
            continue
        truth.append(case.labels)
        logits.append(explanation.logits)
        probabilities.append(explanation.probabilities)
    if not truth:
        raise XRayError(f"None of the {len(cases)} {description} films could be read.")
    return LabelledOutputs(truth=np.stack(truth), logits=np.stack(logits), probabilities=np.stack(probabilities))
