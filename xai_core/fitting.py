"""Fitting what the model card carries from data: probability calibration and out-of-distribution statistics.

This sits above the model and the explanation (it runs the model over whole datasets); what the card
carries is applied at inference by calibration.py and ood.py, which import neither.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.optimize import minimize
from tqdm import tqdm

from . import ood
from .card import OutOfDistribution, TypicalFilms, out_of_distribution_json, update_card
from .data import Case, read_images
from .imaging import read_xray
from .labelled_outputs import outputs_on
from .labels import PATHOLOGIES
from .model import XRayModel
from .non_chest import NonChestImage, non_chest_images
from .stats import fit_platt


def fit_calibration(model: XRayModel, cases: list[Case]) -> dict[str, Any]:
    """The card's `calibration` section: (scale, shift) per label from the raw logits of these labelled films."""
    outputs = outputs_on(model, cases, "calibration logits")
    logits, truth = outputs.logits, outputs.truth
    labels = {}
    for index, label in enumerate(PATHOLOGIES):
        scale, shift = fit_platt(truth[:, index], logits[:, index])
        labels[label] = {"scale": round(scale, 6), "shift": round(shift, 6),
                         "positives": int(np.nansum(truth[:, index]))}
    return {"method": "Platt scaling per label: p = sigmoid(scale * logit + shift), log loss with a small "
                      "penalty towards the identity (stats.fit_platt)",
            "images": len(logits), "labels": labels}


# (folder, split, adults only): the frontal chest films the warning is fitted on; the same folders' "val"
# splits set the mild threshold. Neither the NIH test split nor JSRT is used: they only report (ood_table).
CHEST_FOLDERS = (("nih", True), ("nih_boxed", True), ("rsna", True), ("pediatric_pneumonia", False))
LAYOUT_COMPONENTS = 12
NON_CHEST_COPIES = 5  # flipped and cropped copies of each fitting-side non-chest image
MILD_QUANTILE = 0.99  # of each source's validation films' scores: the highest of them sets the mild threshold
REGULARISATION = 1e-2


def chest_films(data: Path, split: str, limit: int | None = None) -> dict[str, list[Path]]:
    """Frontal chest films of one split per source ("nih train" ...), adults only where the folder has both."""
    films = {}
    for folder, adults_only in CHEST_FOLDERS:
        paths = read_images(data / folder, [split], adults_only=adults_only)
        films[f"{folder} {split}"] = paths[:limit] if limit else paths
    return films


def appearances(paths: list[Path], description: str, copies: int = 0, seed: int = 0) -> list[ood.Appearance]:
    """Each film's appearance, then `copies` shifted, zoomed, rotated, re-exposed or bordered copies of it."""
    rng = np.random.default_rng(seed)
    seen = []
    for path in tqdm(paths, desc=description, unit="image"):
        pixels = read_xray(path).pixels
        original = ood.appearance(pixels)
        seen.append(original)
        small = np.asarray(Image.fromarray(pixels, mode="F").resize((256, 256), Image.BOX))
        seen += [replace(ood.appearance(_reframed(small, rng)), short_side=original.short_side)
                 for _ in range(copies)]
    return seen


def _reframed(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A film as another hospital might frame and expose it: shifted, rotated, zoomed in or out (with a black,
    white or grey border), another gamma."""
    side = pixels.shape[0]
    fill = float(rng.choice([0.0, 1.0, float(pixels.mean())]))
    image = Image.fromarray(pixels, mode="F").rotate(
        float(rng.uniform(-7, 7)), resample=Image.BILINEAR, translate=tuple(rng.uniform(-0.08, 0.08, 2) * side),
        fillcolor=fill)
    zoom = rng.uniform(0.8, 1.2)
    width = int(side / zoom)
    if zoom > 1:
        offset = (side - width) // 2
        image = image.crop((offset, offset, offset + width, offset + width)).resize((side, side), Image.BILINEAR)
    else:
        canvas = Image.new("F", (width, width), fill)
        canvas.paste(image, ((width - side) // 2, (width - side) // 2))
        image = canvas.resize((side, side), Image.BOX)
    return (np.clip(np.asarray(image), 0, 1) ** rng.uniform(0.6, 1.6)).astype(np.float32)


def _non_chest_copies(image: NonChestImage, rng: np.random.Generator) -> list[ood.Appearance]:
    """The image, and flipped and cropped copies of it."""
    seen = [ood.appearance(image.xray.pixels)]
    for _ in range(NON_CHEST_COPIES):
        picture = Image.fromarray(image.xray.pixels, mode="F")
        if rng.random() < 0.5:
            picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        width, height = picture.size
        share = rng.uniform(0.6, 1.0)
        w, h = max(int(width * share), 1), max(int(height * share), 1)
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        seen.append(ood.appearance(np.asarray(picture.crop((x, y, x + w, y + h)))))
    return seen


def _logistic(features: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Class-balanced L2 logistic regression on standardised features: (mean, scale, weights, bias)."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
    standardised = (features - mean) / scale
    weight = np.where(truth == 1, 0.5 / truth.mean(), 0.5 / (1 - truth.mean()))
    weight = weight / weight.sum()

    def loss(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        logit = standardised @ parameters[:-1] + parameters[-1]
        residual = weight * (1 / (1 + np.exp(-logit)) - truth)
        value = float(weight @ (np.logaddexp(0, logit) - truth * logit)) + REGULARISATION / 2 * parameters[:-1] @ parameters[:-1]
        return value, np.r_[standardised.T @ residual + REGULARISATION * parameters[:-1], residual.sum()]

    parameters = minimize(loss, np.zeros(features.shape[1] + 1), jac=True, method="L-BFGS-B").x
    return mean, scale, parameters[:-1], float(parameters[-1])


def fit_ood(card_path: Path, data: Path, *, limit: int | None = None, seed: int = 0) -> OutOfDistribution:
    """Fit the two-level warning (ood.py) on the training films and the fitting-side non-chest images, set
    the mild threshold on the validation films, and record it in the model card."""
    training = chest_films(data, "train", limit)
    seen_twice = [seen for index, (name, paths) in enumerate(training.items())
                  for seen in appearances(paths, name, copies=1, seed=seed + index)]
    films, reframed = seen_twice[0::2], seen_twice[1::2]
    layouts = np.stack([seen.layout for seen in films])
    centre = layouts.mean(axis=0)
    _, singular, directions = np.linalg.svd(layouts - centre, full_matrices=False)
    variances = singular[:LAYOUT_COMPONENTS] ** 2 / (len(layouts) - 1)
    draft = OutOfDistribution(
        method="", layout_mean=tuple(centre), layout_components=tuple(map(tuple, directions[:LAYOUT_COMPONENTS])),
        layout_variances=tuple(variances), feature_names=ood.feature_names(LAYOUT_COMPONENTS), feature_mean=(),
        feature_scale=(), weights=(), bias=0.0, strong_threshold=0.5, mild_threshold=0.5,
        typical=TypicalFilms(brightness=_span(films, "brightness"), contrast=_span(films, "contrast"),
                             short_side=min(seen.short_side for seen in films)))
    rng = np.random.default_rng(seed)
    others = [image for image in non_chest_images() if not image.held_out]
    non_chest = [seen for image in others for seen in _non_chest_copies(image, rng)]
    features = np.stack([ood.feature_vector(seen, draft) for seen in films + reframed + non_chest])
    truth = np.r_[np.zeros(len(films) + len(reframed)), np.ones(len(non_chest))]
    mean, scale, weights, bias = _logistic(features, truth)
    draft = replace(draft, feature_mean=tuple(mean), feature_scale=tuple(scale), weights=tuple(weights), bias=bias)
    validation = chest_films(data, "val", limit)
    scores = {name: [ood.score(seen, draft) for seen in appearances(paths, name)] for name, paths in validation.items()}
    mild = max(float(np.quantile(values, MILD_QUANTILE)) for values in scores.values())
    section = replace(
        draft, mild_threshold=min(mild, draft.strong_threshold),
        method=f"logistic score (L2, classes balanced) on a {ood.LAYOUT_SIDE} x {ood.LAYOUT_SIDE} rank-normalised "
        f"layout thumbnail's {LAYOUT_COMPONENTS} principal coordinates and residual, left-right symmetry, texture "
        f"and grey histogram; frontal chest training films and one reframed copy each against "
        f"{len(others)} non-chest images (non_chest.py, fitting side) and {NON_CHEST_COPIES} cropped copies each",
        threshold_rule=f"strong at score 0.5 (the balanced decision boundary); mild from the highest of the "
        f"validation sources' {100 * MILD_QUANTILE:.0f}th percentiles of their films' scores "
        f"({', '.join(f'{name} {len(values)}' for name, values in scores.items())}), or a film "
        "smaller than every training film (its exposure and contrast are then named where unusual)",
        fitted_on={**{name: len(paths) for name, paths in training.items()}, "non-chest images": len(others)})
    update_card(card_path, out_of_distribution=out_of_distribution_json(section))
    return section


def _span(films: list[ood.Appearance], name: str) -> tuple[float, float]:
    values = [getattr(seen, name) for seen in films]
    return float(min(values)), float(max(values))
