"""The JSON record of one explained image: what the viewer downloads and the CLI writes."""

from __future__ import annotations

from typing import Any

from .card import ModelCard
from .explain import Explanation
from .imaging import XRay
from .model import XRayModel

DISCLAIMER = "Research and education use only. Not for diagnosis or treatment decisions."


def explanation_record(model: XRayModel, xray: XRay, explanation: Explanation, settings: dict[str, Any]) -> dict[str, Any]:
    """Probabilities, thresholds and validation status per label, the model and the image's identity.

    The image is identified by the sha256 of its bytes and its de-identified
    technical metadata only; no patient tag is ever part of an XRay.
    """
    thresholds = model.thresholds()
    status = model.validation_status()
    findings = [
        {
            "label": label,
            "probability": round(float(probability), 6),
            "logit": round(float(logit), 6),
            "threshold": thresholds[label],
            "above_threshold": bool(probability >= thresholds[label]),
            "validation": status[label],
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
        },
        "image": {"sha256": xray.sha256, "metadata": xray.metadata.as_dict(), "notices": list(xray.notices)},
        "out_of_distribution": {
            "flagged": explanation.out_of_distribution,
            "distance": None if explanation.ood_distance is None else round(explanation.ood_distance, 4),
            "threshold": explanation.ood_threshold,
        },
        "findings": findings,
        "settings": settings,
    }


def _calibration(card: ModelCard) -> str | None:
    """How the probabilities relate to the logits: the card's calibration, or None for the plain sigmoid."""
    section = card.calibration
    return None if section is None else f"{section.method}; fitted on {section.data}, {section.images} images"
