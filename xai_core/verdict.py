"""The verdict: the one rule that turns a label's AUROC, its 95% interval and its positive cases into words.

Used by the card's operating points, the evaluate report, the page and the JSON record alike:
  too few cases to tell   fewer than 10 positives (MIN_POSITIVES), or no AUROC
  works                   the interval's lower bound is at least 0.70 (acceptable discrimination even at worst)
  weak                    the lower bound is above 0.50 (better than chance, but perhaps not by much)
  not shown to work       the lower bound is 0.50 or below (chance is inside the interval)
The bound is read as the words print it, to two decimals: "weak (0.60, 0.50–0.70, ...)" would contradict itself.
"""

from __future__ import annotations

import math

from .card import Verdict

MIN_POSITIVES = 10  # below this the AUROC's interval is too wide to mean anything
WORKS, WEAK, NOT_SHOWN, TOO_FEW = "works", "weak", "not shown to work", "too few cases to tell"
WORKS_LOWER_BOUND, CHANCE = 0.70, 0.50


def verdict(auroc_value: float, auroc_ci95: tuple[float, float] | list[float], positives: int) -> Verdict:
    """The trust verdict of one label from its AUROC, the AUROC's 95% interval and its positive cases."""
    low, high = (float(bound) for bound in auroc_ci95)
    if positives < MIN_POSITIVES or not all(math.isfinite(v) for v in (auroc_value, low, high)):
        return Verdict(kind=TOO_FEW, words=f"{TOO_FEW} ({positives} test cases; at least {MIN_POSITIVES} "
                                           "needed)", auroc=auroc_value, auroc_ci95=(low, high), positives=positives)
    shown = float(f"{low:.2f}")  # the bound as the words print it: a verdict never contradicts its own figures
    kind = WORKS if shown >= WORKS_LOWER_BOUND else WEAK if shown > CHANCE else NOT_SHOWN
    return Verdict(kind=kind, words=f"{kind} ({auroc_value:.2f}, {low:.2f}–{high:.2f}, {positives} cases)",
                   auroc=auroc_value, auroc_ci95=(low, high), positives=positives)
