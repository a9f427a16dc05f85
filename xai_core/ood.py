"""Does this image look like a frontal chest radiograph, and like the films the model was trained on?

Two levels of warning, from the image's pixels alone (the same pixels the model sees, squashed to a square):

- **not a frontal chest radiograph** (strong): another body part, another modality, a photograph, a
  document. A logistic score on what a frontal chest film looks like at a glance: its layout (a 16 x 16
  thumbnail, rank-normalised so that exposure and the hospital's processing do not count, placed by a PCA of
  training films), its left-right symmetry, its fine texture and its grey-level histogram (not its shape:
  the training films are all square or landscape, other hospitals' often portrait). It is
  fitted on training chest films (NIH adults and the pediatric set, with shifted, zoomed, rotated,
  re-exposed and bordered copies standing for other hospitals' framing) against non-chest images from the
  viewer's own dependencies and generated ones (non_chest.py).
- **this chest film differs from the training films** (mild): the score is in a band below the strong
  threshold, or the film is smaller than any training film; the reasons are given in words, with its
  exposure or contrast where they lie outside the training films' range.

The earlier warning (a Mahalanobis distance of the network's pooled features, threshold at the 99th
percentile of NIH validation films) separated hospitals rather than chest films from other images; this
one is trained for what matters, and names a hospital's look (exposure, contrast) only as a reason.
Everything it needs lives in the model card's `out_of_distribution` section (card.py), fitted by
`python -m xai_core fit-ood` (fitting.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image
from scipy.stats import rankdata

from .card import OutOfDistribution
from .errors import XRayError

THUMBNAIL_SIDE = 64  # texture and histogram are read here
LAYOUT_SIDE = 16  # the layout thumbnail
HISTOGRAM_BINS = 8
FEATURE_NAMES_FIXED = ("layout residual", "symmetry", "texture") + tuple(
    f"grey histogram {index}" for index in range(HISTOGRAM_BINS))


class Level(str, Enum):
    """How far the image is from what the model was trained on."""

    FRONTAL_CHEST = "frontal_chest"
    DIFFERS = "differs_from_training"
    NOT_CHEST = "not_frontal_chest"


HEADLINES = {
    Level.FRONTAL_CHEST: "Looks like a frontal chest radiograph.",
    Level.DIFFERS: "This chest film differs from the films the model was trained on.",
    Level.NOT_CHEST: "This does not look like a frontal chest radiograph.",
}


@dataclass(frozen=True)
class Appearance:
    """What the warning reads from one image's pixels."""

    layout: np.ndarray  # (LAYOUT_SIDE**2,) ranks in [0, 1]
    symmetry: float  # correlation of the layout with its mirror image
    texture: float  # mean absolute difference of neighbouring pixels of the rank-normalised 64 x 64 thumbnail
    histogram: np.ndarray  # (HISTOGRAM_BINS,) share of the thumbnail's pixels per grey-level bin
    brightness: float  # mean grey level, [0, 1]
    contrast: float  # standard deviation of the grey levels
    short_side: int  # pixels


@dataclass(frozen=True)
class Assessment:
    level: Level
    score: float  # the fitted probability that the image is not a frontal chest radiograph
    reasons: tuple[str, ...] = ()  # what differs, in words (mild level)

    @property
    def headline(self) -> str:
        return HEADLINES[self.level]

    def as_dict(self) -> dict:
        return {"level": self.level.value, "headline": self.headline, "score": round(self.score, 4),
                "reasons": list(self.reasons)}


def appearance(pixels: np.ndarray) -> Appearance:
    """Read the warning's measurements from grey pixels in [0, 1] (H, W)."""
    pixels = np.asarray(pixels, dtype=np.float32)
    height, width = pixels.shape
    thumbnail = _resize(pixels, THUMBNAIL_SIDE)
    layout = _ranks(_resize(pixels, LAYOUT_SIDE).ravel())
    mirrored = _ranks(_resize(pixels[:, ::-1], LAYOUT_SIDE).ravel())
    symmetry = float(np.corrcoef(layout, mirrored)[0, 1]) if layout.std() > 0 else 0.0
    ranked = _ranks(thumbnail.ravel()).reshape(thumbnail.shape)
    texture = float((np.abs(np.diff(ranked, axis=0)).mean() + np.abs(np.diff(ranked, axis=1)).mean()) / 2)
    histogram = np.histogram(thumbnail, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0] / thumbnail.size
    return Appearance(layout=layout, symmetry=symmetry, texture=texture, histogram=histogram,
                      brightness=float(thumbnail.mean()), contrast=float(thumbnail.std()),
                      short_side=int(min(height, width)))


def _resize(pixels: np.ndarray, side: int) -> np.ndarray:
    """Squashed to side x side by area averaging, as the model's input is squashed."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels), mode="F").resize((side, side), Image.BOX))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Each value's rank in [0, 1] (ties share the mean rank): any monotone change of exposure leaves it."""
    return (rankdata(values) - 1) / max(values.size - 1, 1)


def layout_coordinates(layout: np.ndarray, section: OutOfDistribution) -> tuple[np.ndarray, float]:
    """The layout's whitened coordinates on the training films' principal directions, and the log of its
    remaining (off-plane) distance."""
    centred = layout - np.asarray(section.layout_mean)
    components = np.asarray(section.layout_components)
    projected = components @ centred
    residual = max(float(centred @ centred - projected @ projected), 1e-12)
    return projected / np.sqrt(np.asarray(section.layout_variances)), float(np.log(residual))


def feature_vector(seen: Appearance, section: OutOfDistribution) -> np.ndarray:
    """The score's inputs, in the order of `feature_names(section)`."""
    coordinates, residual = layout_coordinates(seen.layout, section)
    fixed = [residual, seen.symmetry, seen.texture, *seen.histogram]
    return np.r_[coordinates, fixed]


def feature_names(components: int) -> tuple[str, ...]:
    return tuple(f"layout {index}" for index in range(components)) + FEATURE_NAMES_FIXED


def score(seen: Appearance, section: OutOfDistribution) -> float:
    """The fitted probability that the image is not a frontal chest radiograph."""
    standardised = (feature_vector(seen, section) - np.asarray(section.feature_mean)) / np.asarray(section.feature_scale)
    logit = float(standardised @ np.asarray(section.weights) + section.bias)
    return float(1 / (1 + np.exp(-np.clip(logit, -50, 50))))


def assess(pixels: np.ndarray, section: OutOfDistribution) -> Assessment:
    """The warning level for one image, with what differs in words."""
    seen = appearance(pixels)
    probability = score(seen, section)
    if probability >= section.strong_threshold:
        return Assessment(Level.NOT_CHEST, probability)
    small = seen.short_side < section.typical.short_side
    if probability < section.mild_threshold and not small:
        return Assessment(Level.FRONTAL_CHEST, probability)
    edge = ("its layout and texture are at the edge of what the training films show",)
    return Assessment(Level.DIFFERS, probability, edge * (probability >= section.mild_threshold) + differences(seen, section))


def differences(seen: Appearance, section: OutOfDistribution) -> tuple[str, ...]:
    """What puts the film outside the training films' range, in words (empty when nothing does).

    Only size and the score raise the mild warning: other hospitals' films are often brighter, darker,
    flatter or another shape than these training films (all square, from two hospitals) and work, so
    exposure and contrast are named only once the warning is raised."""
    typical = section.typical
    reasons = []
    low, high = typical.brightness
    if not low <= seen.brightness <= high:
        reasons.append(f"it is {'darker' if seen.brightness < low else 'brighter'} overall than any training film "
                       f"(mean grey {seen.brightness:.2f}; training films {low:.2f}–{high:.2f})")
    low, high = typical.contrast
    if not low <= seen.contrast <= high:
        reasons.append(f"its contrast is {'flatter' if seen.contrast < low else 'harsher'} than the training films' "
                       f"(grey-level spread {seen.contrast:.2f}; training films {low:.2f}–{high:.2f})")
    if seen.short_side < typical.short_side:
        reasons.append(f"it is small ({seen.short_side} px on its short side; training films had at least "
                       f"{typical.short_side} px), so the model sees it enlarged")
    return tuple(reasons)


def check(section: OutOfDistribution | None) -> None:
    """Refuse statistics measured differently from how this viewer measures an image."""
    if section is None:
        return
    if section.feature_names != feature_names(len(section.layout_variances)) or len(section.layout_mean) != LAYOUT_SIDE**2:
        raise XRayError("The model card's out-of-distribution statistics were fitted on other measurements than "
                        "this viewer's; refit them with python -m xai_core fit-ood.")
