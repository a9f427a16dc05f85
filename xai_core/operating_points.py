"""Operating points chosen on validation films, their figures on test films, and a verdict in words.

Per label two points on the probabilities the page shows (after the card's calibration):
  high sensitivity   the highest cut that still finds at least 90% of the validation positives
  high specificity   the lowest cut that leaves at least 90% of the validation negatives unflagged
Each cut is placed halfway between the two adjacent validation scores that bracket it, so it makes the same
decisions on validation while a new film close to the boundary is not decided by one validation film's exact
score (as `stats.choose_threshold` does). A rate of 90% means something only on at least ten films of the class
it is measured on: with fewer, "at least 90%" means "all of them", set by a single film. So the high-sensitivity
point needs ten validation positives, the high-specificity point ten validation negatives; a label short of them
gets no point and says why. The test split is never used to choose: it only reports, at each point, the
sensitivity, specificity and PPV (bootstrap 95% intervals) with the counts behind them.

The verdict in words beside each label's points follows `verdict.py`, the one rule for it.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from .card import ModelCard, OperatingPoint, TestRates, probability_scale
from .data import Case
from .labelled_outputs import LabelledOutputs, outputs_on
from .labels import PATHOLOGIES
from .model import XRayModel
from .stats import auroc, bootstrap_auroc_ci, bootstrap_mean_ci
from .verdict import CHANCE, MIN_POSITIVES, WORKS_LOWER_BOUND, verdict

TARGET_RATE = 0.90  # the sensitivity, or specificity, each point keeps on validation
MIN_CASES_FOR_RATE = 10  # validation films of the class a point's rate is measured on
HIGH_SENSITIVITY, HIGH_SPECIFICITY = "high_sensitivity", "high_specificity"
POINT_NAMES = {HIGH_SPECIFICITY: "high specificity", HIGH_SENSITIVITY: "high sensitivity"}  # the page's default first
NO_POINTS = ("no verdict and no operating points: this card has none for its weights and calibration "
             "(python -m xai_core operating-points)")


def choose_cut(truth: np.ndarray, probabilities: np.ndarray, point: str) -> float | None:
    """The validation cut of a point (a film is flagged when its probability >= cut); None below ten films of the
    class the point's rate is measured on. Unknown (NaN) labels are left out."""
    known = ~np.isnan(truth)
    positive, scores = truth[known] == 1.0, probabilities[known].astype(np.float64)
    measured = positive if point == HIGH_SENSITIVITY else ~positive
    if measured.sum() < MIN_CASES_FOR_RATE:  # the other class plays no part in the cut
        return None
    cuts = np.append(np.unique(scores), np.inf)  # candidate k flags scores >= cuts[k]; the last flags none
    if point == HIGH_SENSITIVITY:
        found = positive.sum() - np.searchsorted(np.sort(scores[positive]), cuts, side="left")
        chosen = int(np.flatnonzero(found >= TARGET_RATE * positive.sum())[-1])  # sensitivity falls as the cut rises
    else:
        cleared = np.searchsorted(np.sort(scores[~positive]), cuts, side="left")
        chosen = int(np.flatnonzero(cleared >= TARGET_RATE * (~positive).sum())[0])  # specificity rises with the cut
    if chosen == 0:
        return float(cuts[0])
    if chosen == cuts.size - 1:  # nothing flagged: just above the highest score
        return float(np.nextafter(cuts[-2], np.inf))
    midpoint = (cuts[chosen - 1] + cuts[chosen]) / 2.0
    return float(midpoint if midpoint > cuts[chosen - 1] else cuts[chosen])


def _share(flags: np.ndarray) -> float | None:
    """The share of True among flags, rounded; None without a film (a point chosen on the other class alone)."""
    return round(float(flags.mean()), 4) if flags.size else None


def rates_at(truth: np.ndarray, probabilities: np.ndarray, cut: float, seed: int = 0) -> TestRates:
    """Sensitivity, specificity and PPV at a cut with percentile-bootstrap 95% intervals, and their counts."""
    known = ~np.isnan(truth)
    positive, flagged = truth[known] == 1.0, probabilities[known] >= cut

    def rate(values: np.ndarray) -> tuple[float | None, tuple[float, float] | None]:
        if values.size == 0:
            return None, None
        low, high = bootstrap_mean_ci(values.astype(np.float64), seed=seed)
        return round(float(values.mean()), 4), (round(low, 4), round(high, 4))

    sensitivity, sensitivity_ci = rate(flagged[positive])
    specificity, specificity_ci = rate(~flagged[~positive])
    ppv, ppv_ci = rate(positive[flagged])
    return TestRates(sensitivity=sensitivity, sensitivity_ci95=sensitivity_ci, specificity=specificity,
                     specificity_ci95=specificity_ci, ppv=ppv, ppv_ci95=ppv_ci,
                     true_positives=int((flagged & positive).sum()), positives=int(positive.sum()),
                     false_alarms=int((flagged & ~positive).sum()), negatives=int((~positive).sum()),
                     films=int(positive.size))


def in_words(point: OperatingPoint) -> str:
    """What a point means, in the test films' counts."""
    test = point.test
    return (f"at this point the model found {test.true_positives} of {test.positives} test cases and raised "
            f"{test.false_alarms} false alarms in {test.negatives} films without the finding")


def predict(model: XRayModel, cases: list[Case], description: str) -> tuple[np.ndarray, np.ndarray]:
    """(truth, probabilities), both (n, 14) float64, of the readable films among cases; one forward pass each."""
    return scored(outputs_on(model, cases, description))


def scored(outputs: LabelledOutputs) -> tuple[np.ndarray, np.ndarray]:
    """(truth, probabilities), both (n, 14) float64: what points are chosen and reported on."""
    return outputs.truth.astype(np.float64), outputs.probabilities.astype(np.float64)


def operating_points_section(card: ModelCard, validation: tuple[np.ndarray, np.ndarray],
                             test: tuple[np.ndarray, np.ndarray], *, chosen_on: str, reported_on: str,
                             seed: int = 0) -> dict[str, Any]:
    """The card's `operating_points` section: per label its verdict and its two points, chosen on `validation`
    (truth, probabilities) and reported on `test`; the probabilities must be the card's own (calibrated)."""
    labels = {}
    for index, label in enumerate(PATHOLOGIES):
        val_truth, val_prob = validation[0][:, index], validation[1][:, index]
        test_truth, test_prob = test[0][:, index], test[1][:, index]
        known = ~np.isnan(test_truth)
        positives = int(test_truth[known].sum())
        value, interval = float("nan"), (float("nan"), float("nan"))
        if 0 < positives < known.sum():
            value = round(auroc(test_truth, test_prob), 4)
            interval = tuple(round(bound, 4) for bound in bootstrap_auroc_ci(test_truth, test_prob, seed=seed))
        judged = verdict(value, interval, positives)
        entry: dict[str, Any] = {"verdict": {"kind": judged.kind, "words": judged.words,
                                             "auroc": None if math.isnan(value) else value,
                                             "auroc_ci95": None if math.isnan(value) else list(interval),
                                             "positives": positives},
                                 "missing": []}
        for point in (HIGH_SENSITIVITY, HIGH_SPECIFICITY):
            cut = choose_cut(val_truth, val_prob, point)
            if cut is None:
                val_known = val_truth[~np.isnan(val_truth)]
                cases = int(val_known.sum()) if point == HIGH_SENSITIVITY else int((val_known == 0).sum())
                kind = "positives" if point == HIGH_SENSITIVITY else "negatives"
                entry[point] = None
                entry["missing"].append(f"no {POINT_NAMES[point]} point: {cases} validation {kind} "
                                        f"(at least {MIN_CASES_FOR_RATE} needed)")
                continue
            val_known = ~np.isnan(val_truth)
            val_positive, val_flagged = val_truth[val_known] == 1.0, val_prob[val_known] >= cut
            rates = rates_at(test_truth, test_prob, cut, seed)
            entry[point] = {
                "threshold": round(cut, 6),
                "validation": {"sensitivity": _share(val_flagged[val_positive]),
                               "specificity": _share(~val_flagged[~val_positive])},
                "test": {name: list(value) if isinstance(value, tuple) else value
                         for name, value in asdict(rates).items()},
            }
        labels[label] = entry
    return {
        "method": f"per label, on the calibrated probabilities: the highest cut with validation sensitivity >= "
                  f"{TARGET_RATE:.2f} (high sensitivity) and the lowest with validation specificity >= {TARGET_RATE:.2f} "
                  f"(high specificity), halfway between adjacent validation scores; a point needs at least "
                  f"{MIN_CASES_FOR_RATE} validation films of the class its rate is measured on. Test figures with "
                  "percentile-bootstrap 95% intervals; the verdict from the test AUROC's 95% interval "
                  f"(lower bound >= {WORKS_LOWER_BOUND:.2f}: works; > {CHANCE:.2f}: weak; else not shown to work) and "
                  f"at least {MIN_POSITIVES} test positives (else too few cases to tell)",
        "chosen_on": chosen_on,
        "reported_on": reported_on,
        "seed": seed,
        "weights_sha256": card.weights_sha256,
        "probability_scale": probability_scale(card.calibration),
        "labels": labels,
    }


def format_points(card: ModelCard) -> str:
    """The card's operating points as a table for the terminal."""
    section = card.operating_points
    if section is None:
        return NO_POINTS
    lines = [f"chosen on {section.chosen_on}; test figures on {section.reported_on}", "",
             f"{'label':<20}{'point':<18}{'cut':>8}{'sensitivity (95% CI)':>24}{'specificity (95% CI)':>24}"
             f"{'PPV (95% CI)':>24}  found / cases, false alarms / films without"]
    for label, entry in section.labels.items():
        lines.append(f"{label:<20}{entry.verdict.words}")
        for point, name in POINT_NAMES.items():
            chosen = getattr(entry, point)
            if chosen is None:
                continue
            test = chosen.test
            lines.append(f"{'':<20}{name:<18}{chosen.threshold:>8.3f}{_rate(test.sensitivity, test.sensitivity_ci95)}"
                         f"{_rate(test.specificity, test.specificity_ci95)}{_rate(test.ppv, test.ppv_ci95)}  "
                         f"{test.true_positives} / {test.positives}, {test.false_alarms} / {test.negatives}")
        lines += [f"{'':<20}{reason}" for reason in entry.missing]
    return "\n".join(lines)


def _rate(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None or interval is None:
        return f"{'-':>24}"
    return f"{value:.2f} ({interval[0]:.2f}–{interval[1]:.2f})".rjust(24)
