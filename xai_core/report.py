"""The JSON record of one explained image: what the viewer downloads and the CLI writes."""

from __future__ import annotations

from typing import Any

from .card import ModelCard
from .explanation import Explanation
from .imaging import XRay
from .model import XRayModel
from .operating_points import POINT_NAMES, flagged, verdict_words

DISCLAIMER = "Research and education use only. Not for diagnosis or treatment decisions."


def explanation_record(model: XRayModel, xray: XRay, explanation: Explanation, settings: dict[str, Any]) -> dict[str, Any]:
    """Per label its probability, verdict and flags at the card's operating points (null where the card has no
    such point); the model and the image's identity.

    The image is identified by the sha256 of its bytes and its de-identified
    technical metadata only; no patient tag is ever part of an XRay.
    """
    card = model.card
    findings = [
        {
            "label": label,
            "probability": round(float(probability), 6),
            "logit": round(float(logit), 6),
            "verdict": verdict_words(card, label),
            "flagged": {point: flagged(card, label, float(probability), point) for point in POINT_NAMES},
            "cuts": {point: None if card.operating_point(label, point) is None
                     else card.operating_point(label, point).threshold for point in POINT_NAMES},
            "attention_strength": round(explanation.strength(label), 6),
        }
        for label, probability, logit in zip(explanation.labels, explanation.probabilities, explanation.logits,
                                             strict=True)
    ]
    return {
        "disclaimer": DISCLAIMER,
        "model": {
            "version": model.version,
            "weights_sha256": model.card.weights_sha256,
            "architecture": model.card.architecture,
            "input_size": model.input_spec.size,
            "probability_calibration": _calibration(model.card),
            "operating_points": None if card.operating_points is None else {
                "chosen_on": card.operating_points.chosen_on, "reported_on": card.operating_points.reported_on},
        },
        "image": {"sha256": xray.sha256, "metadata": xray.metadata.as_dict(), "notices": list(xray.notices)},
        "out_of_distribution": None if explanation.ood is None else explanation.ood.as_dict(),
        "findings": findings,
        "settings": settings,
    }


def _calibration(card: ModelCard) -> str | None:
    """How the probabilities relate to the logits: the card's calibration, or None for the plain sigmoid."""
    section = card.calibration
    return None if section is None else f"{section.method}; fitted on {section.data}, {section.images} images"
