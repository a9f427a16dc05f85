"""One finding per pathology at the operating point the reader flags at, built in one place (`findings`).

The page's findings table and summary line, the command line's report and the JSON record all show these
records, so a flag or a verdict cannot read one way on the page and another in a download.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .card import ModelCard, TestRates, Verdict
from .errors import XRayError
from .explanation import Explanation
from .labels import display_name
from .operating_points import NO_POINTS, POINT_NAMES, in_words
from .verdict import WORKS


@dataclass(frozen=True)
class Finding:
    """One pathology's probability against one operating point, and how far its evidence goes."""

    label: str
    name: str  # as the page shows it
    probability: float  # after the card's calibration
    point: str  # the operating point flagged at: a key of operating_points.POINT_NAMES
    cut: float | None  # the point's threshold; None where the card has no such point for this label
    flagged: bool | None  # probability >= cut; None without a point
    point_meaning: str  # what the point means in the test films' counts, or why there is no point
    test: TestRates | None  # the test counts and rates behind the point; None without a point
    verdict: Verdict | None  # the label's verdict (verdict.py), with the AUROC and positives behind it
    verdict_words: str  # the verdict in words, or why there is none

    @property
    def evidence(self) -> str:
        """The verdict's kind ("works", "weak", ...), or "none" where the card has no verdict."""
        return "none" if self.verdict is None else self.verdict.kind

    @property
    def trusted(self) -> bool:
        """Whether the verdict is "works": every other label is shown de-emphasised."""
        return self.evidence == WORKS

    def flag_words(self) -> str:
        """E.g. "flagged at the high specificity point (0.131)", or "not flagged: " and why there is no point."""
        if self.cut is None:
            return f"not flagged: {self.point_meaning}"
        side = "flagged" if self.flagged else "not flagged"
        return f"{side} at the {POINT_NAMES[self.point]} point ({self.cut:.3f})"

    def point_words(self) -> str:
        """The point's cut and what it means, e.g. "High specificity point 0.131: at this point the model found ..."."""
        if self.cut is None:
            return self.point_meaning
        return f"{POINT_NAMES[self.point].capitalize()} point {self.cut:.3f}: {self.point_meaning}"

    def rates_words(self) -> str:
        """The point's test sensitivity, specificity and PPV with their 95% intervals ("" without a point)."""
        if self.test is None:
            return ""
        test, parts = self.test, []
        for name, value, interval in (("sensitivity", test.sensitivity, test.sensitivity_ci95),
                                      ("specificity", test.specificity, test.specificity_ci95),
                                      ("PPV", test.ppv, test.ppv_ci95)):
            if value is not None and interval is not None:
                parts.append(f"{name} {value:.2f}, 95% CI {interval[0]:.2f}–{interval[1]:.2f}")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The finding at its point for the JSON record (the verdict as words and kind, the counts behind both)."""
        test = self.test
        return {
            "point": self.point, "cut": self.cut, "flagged": self.flagged, "meaning": self.point_meaning,
            "test_counts": None if test is None else {
                "true_positives": test.true_positives, "positives": test.positives,
                "false_alarms": test.false_alarms, "negatives": test.negatives},
            "evidence": self.evidence,
            "evidence_positives": None if self.verdict is None else self.verdict.positives,
        }


def findings(explanation: Explanation, card: ModelCard, point: str) -> tuple[Finding, ...]:
    """Every label of the explanation, in its order, against the card's `point` (a key of POINT_NAMES)."""
    if point not in POINT_NAMES:
        raise XRayError(f"Unknown operating point {point!r}: choose {' or '.join(POINT_NAMES)}.")
    return tuple(_finding(card, label, float(probability), point)
                 for label, probability in zip(explanation.labels, explanation.probabilities, strict=True))


def _finding(card: ModelCard, label: str, probability: float, point: str) -> Finding:
    chosen, judged = card.operating_point(label, point), card.verdict(label)
    if chosen is None:
        entry = card.operating_points.labels.get(label) if card.operating_points else None
        meaning = "; ".join(entry.missing) if entry and entry.missing else NO_POINTS
    else:
        meaning = in_words(chosen)
    return Finding(
        label=label, name=display_name(label), probability=probability, point=point,
        cut=None if chosen is None else chosen.threshold,
        flagged=None if chosen is None else bool(probability >= chosen.threshold),
        point_meaning=meaning, test=None if chosen is None else chosen.test,
        verdict=judged, verdict_words=NO_POINTS if judged is None else judged.words,
    )


def by_probability(found: tuple[Finding, ...]) -> list[Finding]:
    """Most probable first: the order the page's table and the command line's report list them in."""
    return sorted(found, key=lambda finding: finding.probability, reverse=True)
