"""Validation during training: AUROC per source, localisation on every boxed source, and the selection score.

Localisation is read as the public API reads it (alignment.pointing_game on the normalised Grad-CAM++
map at the image's grid, here the stored input size), beside two controls: the model's own average map
of that label over the same source's films (what it shows whatever the film) and a random point (the
box's share of the image). The selection score rewards only the margin over the average map.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..alignment import Box, pointing_game
from ..explanation import captured_output, normalized_cam, pooled_linear_cams
from ..labels import PATHOLOGIES, SCORED_WITH
from ..preprocessing import InputSpec
from ..stats import auroc, choose_threshold
from .bank import OPACITY, TARGETS, ImageBank

# Labels with fewer known positives than this in the validation data get no
# tuned threshold and no say in checkpoint selection.
MIN_VAL_POSITIVES = 5


@torch.no_grad()
def predict(network: nn.Module, head_weight: torch.Tensor, head_bias: torch.Tensor, bank: ImageBank,
            spec: InputSpec, device: torch.device, autocast, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, T) of every target (the 14 and the training-only ones) and their Grad-CAM++ maps
    normalised at the feature grid (N, T, h, w), for a bank stored at exactly the input size."""
    network.eval()
    probabilities, maps = [], []
    for start in range(0, len(bank.sources), batch_size):
        pixels = bank.pixels[start : start + batch_size].to(device).float() / 255.0
        with autocast(device), captured_output(network.layer4) as features:
            network(spec.normalise(pixels).contiguous(memory_format=torch.channels_last))
        activations = features[-1].float()
        logits = activations.mean((2, 3)) @ head_weight.float().T + head_bias.float()
        probabilities.append(torch.sigmoid(logits).cpu())
        cams = pooled_linear_cams(activations, head_weight).cpu().numpy()
        grid = cams.shape[-2:]
        maps.append(np.stack([[normalized_cam(cam, grid) for cam in film] for film in cams]))
    if not probabilities:
        return np.empty((0, len(TARGETS))), np.empty((0, len(TARGETS), 1, 1))
    return torch.cat(probabilities).numpy(), np.concatenate(maps)


def classification_report(probabilities: np.ndarray, bank: ImageBank) -> dict:
    """Per source, per label AUROC and positive counts (labels with enough positives), and the mean."""
    labels = np.concatenate([bank.labels.numpy(), bank.opacity.numpy()[:, None]], axis=1)
    sources = np.array(bank.sources)
    per_source: dict = {}
    scores = []
    for source in sorted(set(bank.sources)):
        rows = sources == source
        per_label = {}
        for index, target in enumerate(TARGETS):
            known = ~np.isnan(labels[rows, index])
            positives = int(np.nansum(labels[rows, index]))
            if positives >= MIN_VAL_POSITIVES and positives < known.sum():
                truth = labels[rows, index][known]
                value = auroc(truth, probabilities[rows, index][known])
                per_label[target] = {"auroc": round(float(value), 4), "positives": positives, "n": int(known.sum())}
                if target == OPACITY:
                    # The shipped model answers RSNA's opacity with its Pneumonia output: that is the figure
                    # ("auroc") the score and a reader use; the training-only output's is kept apart by name.
                    scored = auroc(truth, probabilities[rows, PATHOLOGIES.index(SCORED_WITH[OPACITY])][known])
                    per_label[target].update(auroc=round(float(scored), 4), scored_with=SCORED_WITH[OPACITY],
                                             auroc_of_training_only_output=round(float(value), 4))
                    value = scored
                scores.append(value)
        per_source[source] = per_label
    return {"per_source": per_source, "mean_auroc": float(np.mean(scores)) if scores else float("nan")}


def localisation_report(maps: np.ndarray, bank: ImageBank) -> dict:
    """Per boxed source: pointing of the model's maps, of its average map over the source's films, and of a
    random point, over every (film, box) pair. A box of a finding outside the 14 is scored with the map
    labels.SCORED_WITH names (the training-only opacity output is not in the shipped model)."""
    size = bank.pixels.shape[-1]
    sources = np.array(bank.sources)
    report = {}
    rows = bank.boxes.tolist()
    # An opacity box also supervises the Pneumonia map (bank.BOX_TARGETS): score it once, as the opacity box.
    opacity_boxes = {(row[0], *row[2:]) for row in rows if TARGETS[int(row[1])] == OPACITY}
    scored = [row for row in rows if TARGETS[int(row[1])] == OPACITY or (row[0], *row[2:]) not in opacity_boxes]
    for source in sorted({bank.sources[int(row[0])] for row in scored}):
        average = maps[sources == source].mean(axis=0)
        hits, controls, randoms = [], [], []
        for film, target, x0, y0, x1, y1 in scored:
            if bank.sources[int(film)] != source:
                continue
            index = TARGETS.index(SCORED_WITH.get(TARGETS[int(target)], TARGETS[int(target)]))
            box = Box(x0 * size, y0 * size, (x1 - x0) * size, (y1 - y0) * size)
            hits.append(pointing_game(normalized_cam(maps[int(film), index], (size, size)), box))
            controls.append(pointing_game(normalized_cam(average[index], (size, size)), box))
            randoms.append(box.area_fraction((size, size)))
        report[source] = {"boxes": len(hits), "pointing": round(float(np.mean(hits)), 4),
                          "average_map": round(float(np.mean(controls)), 4), "random": round(float(np.mean(randoms)), 4),
                          "margin": round(float(np.mean(hits) - np.mean(controls)), 4)}
    return report


def validation_report(probabilities: np.ndarray, maps: np.ndarray, bank: ImageBank, localisation_weight: float) -> dict:
    """Classification and localisation, and the checkpoint's score: mean AUROC over (source, label) pairs
    with enough positives + localisation_weight x the pointing margin over all boxed sources' boxes pooled
    (each source's margin weighted by its boxes: no small box set decides alone)."""
    report = classification_report(probabilities, bank)
    report["localisation"] = localisation_report(maps, bank)
    entries = list(report["localisation"].values())
    boxes = sum(entry["boxes"] for entry in entries)
    report["pooled_margin"] = sum(entry["margin"] * entry["boxes"] for entry in entries) / boxes if boxes else 0.0
    report["score"] = (report["mean_auroc"] + localisation_weight * report["pooled_margin"]
                       if not math.isnan(report["mean_auroc"]) else float("nan"))
    return report


def val_thresholds(probabilities: np.ndarray, bank: ImageBank) -> dict[str, float]:
    """Operating thresholds chosen on validation data (Youden's J); 0.5 where too few positives."""
    labels = bank.labels.numpy()
    chosen = {}
    for index, label in enumerate(PATHOLOGIES):
        known = ~np.isnan(labels[:, index])
        positives = int(np.nansum(labels[:, index]))
        if positives >= MIN_VAL_POSITIVES and positives < known.sum():
            chosen[label] = round(float(choose_threshold(labels[known, index], probabilities[known, index])), 4)
        else:
            chosen[label] = 0.5
    return chosen
