"""The model's outputs on labelled films, one forward pass each: what evaluation, calibration and operating points
are computed from. One pass gives the probabilities and every label's Grad-CAM++ map (explanation.py), so a data
set predicted once serves all three."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from .data import Case
from .errors import XRayError
from .explanation import explain
from .imaging import read_xray
from .model import XRayModel


@dataclass(frozen=True, eq=False)
class LabelledOutputs:
    """Rows are the readable films among the cases, in order; the unreadable ones are named with their error."""

    cases: tuple[Case, ...]  # the readable cases
    truth: np.ndarray  # (n, 14) float32: 1, 0 or NaN (unknown)
    logits: np.ndarray  # (n, 14) float32, raw
    probabilities: np.ndarray  # (n, 14) float32, after the card's calibration: what the page shows
    raw_cams: np.ndarray  # (n, 14, h, w) float32: each label's Grad-CAM++ map at the feature grid (Explanation.raw_cams)
    image_shapes: tuple[tuple[int, int], ...]  # (H, W) of each film, what its maps are resized to
    unreadable: tuple[str, ...]  # "file name: why" of each case left out


def outputs_on(model: XRayModel, cases: list[Case], description: str) -> LabelledOutputs:
    """Run the model on each case's film (a progress bar named by description); XRayError if none is readable."""
    readable, unreadable, logits, probabilities, cams, shapes = [], [], [], [], [], []
    for case in tqdm(cases, desc=description, unit="image"):
        try:
            explanation = explain(model, read_xray(case.image))
        except XRayError as error:
            unreadable.append(f"{case.image.name}: {error}")
            continue
        readable.append(case)
        logits.append(explanation.logits)
        probabilities.append(explanation.probabilities)
        cams.append(explanation.raw_cams)
        shapes.append(explanation.image_shape)
    if not readable:
        raise XRayError(f"None of the films could be read ({len(cases)} tried): " + "; ".join(unreadable[:3]))
    return LabelledOutputs(cases=tuple(readable), truth=np.stack([case.labels for case in readable]),
                           logits=np.stack(logits), probabilities=np.stack(probabilities), raw_cams=np.stack(cams),
                           image_shapes=tuple(shapes), unreadable=tuple(unreadable))
