"""Validation during training: the figures a checkpoint is selected by."""

from __future__ import annotations

import numpy as np
import torch

from xai_core.labels import PATHOLOGIES
from xai_core.training.bank import OPACITY, TARGETS, ImageBank
from xai_core.training.validation import classification_report


def test_rsna_opacity_is_reported_and_scored_through_the_pneumonia_output_the_model_ships():
    """The training-only opacity output is not shipped: a reader of the log (and the selection score) gets the
    Pneumonia output's AUROC under "auroc"; the training-only output's figure is named as such."""
    films = 20
    opacity = torch.tensor([1.0, 0.0] * (films // 2))
    bank = ImageBank(pixels=torch.zeros((films, 4, 4), dtype=torch.uint8),
                     labels=torch.full((films, len(PATHOLOGIES)), float("nan")), sources=["rsna"] * films,
                     opacity=opacity)
    probabilities = np.full((films, len(TARGETS)), 0.5)
    ranks = np.arange(films) / films
    probabilities[:, PATHOLOGIES.index("Pneumonia")] = np.where(opacity.numpy() == 1, 0.5 + ranks / 2, ranks / 2)
    probabilities[:, TARGETS.index(OPACITY)] = np.where(opacity.numpy() == 1, ranks / 2, 0.5 + ranks / 2)
    report = classification_report(probabilities, bank)
    figures = report["per_source"]["rsna"][OPACITY]
    assert figures["auroc"] == 1.0 and figures["scored_with"] == "Pneumonia"
    assert figures["auroc_of_training_only_output"] == 0.0
    assert figures["positives"] == films // 2 and figures["n"] == films
    assert report["mean_auroc"] == 1.0
