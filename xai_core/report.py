"""The JSON record of one explained image (what the viewer downloads and the CLI writes), and the findings as
the command line prints them; both from `findings.findings`, as the page's table and summary line are."""

from __future__ import annotations

from typing import Any

from .card import ModelCard
from .explanation import Explanation
from .findings import Finding, by_probability, findings
from .imaging import XRay
from .model import XRayModel
from .operating_points import HIGH_SPECIFICITY, POINT_NAMES

DISCLAIMER = "Research and education use only. Not for diagnosis or treatment decisions."


def explanation_record(model: XRayModel, xray: XRay, explanation: Explanation, settings: dict[str, Any],
                       point: str = HIGH_SPECIFICITY) -> dict[str, Any]:
    """Per label its probability, verdict and flags at both of the card's operating points (null where the card has
    no such point), and the finding at `point`, the one the reader flags at; the model and the image's identity.

    The image is identified by the sha256 of its bytes and its de-identified
    technical metadata only; no patient tag is ever part of an XRay.
    """
    card = model.card
    at_point = {name: findings(explanation, card, name) for name in POINT_NAMES}
    records = [
        {
            "label": chosen.label,
            "name": chosen.name,
            "probability": round(chosen.probability, 6),
            "logit": round(float(logit), 6),
            "verdict": chosen.verdict_words,
            "flagged": {name: found[index].flagged for name, found in at_point.items()},
            "cuts": {name: found[index].cut for name, found in at_point.items()},
            "at_flagged_point": chosen.as_dict(),
            "attention_strength": round(explanation.strength(chosen.label), 6),
        }
        for index, (chosen, logit) in enumerate(zip(at_point[point], explanation.logits, strict=True))
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
        "flagged_at": point,
        "findings": records,
        "settings": settings,
    }


def _calibration(card: ModelCard) -> str | None:
    """How the probabilities relate to the logits: the card's calibration, or None for the plain sigmoid."""
    section = card.calibration
    return None if section is None else f"{section.method}; fitted on {section.data}, {section.images} images"


def findings_report(found: tuple[Finding, ...]) -> str:
    """The findings as the command line prints them, most probable first: probability, flag, evidence."""
    point = POINT_NAMES[found[0].point] if found else ""
    lines = [f"{'pathology':<20}{'probability':>12}  flag at the {point} point; evidence on test films"]
    lines += [f"{finding.name:<20}{finding.probability:>12.3f}  {finding.flag_words()}; {finding.verdict_words}"
              for finding in by_probability(found)]
    return "\n".join(lines)

