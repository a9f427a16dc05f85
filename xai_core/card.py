"""The model card, read once into typed, frozen records; the only module that knows its JSON keys.

A card is the JSON file beside a checkpoint's weights (model.py): what the network predicts and in
which order, how an image becomes its input, the operating thresholds, the probability calibration,
the out-of-distribution statistics, the validation status per label, the evaluation reports and the
training record. `read_card` checks it and fails with a message a user can act on; `update_card`
sets sections and writes it back, leaving everything else as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import XRayError
from .labels import PATHOLOGIES
from .preprocessing import InputSpec

CARD_FORMAT = "cxr-xai-model-card/1"


@dataclass(frozen=True)
class LabelCalibration:
    """Platt scaling of one label: p = sigmoid(scale * logit + shift)."""

    scale: float
    shift: float


@dataclass(frozen=True)
class Calibration:
    method: str
    images: int
    data: str
    labels: Mapping[str, LabelCalibration]


@dataclass(frozen=True)
class OutOfDistribution:
    """Where the feature statistics are (beside the card), their digest, and the distance that warns."""

    file: str
    sha256: str
    threshold: float
    blocks: tuple[str, ...]  # () for cards fitted before 0.3.0: layer4 only, tensors named without the block
    method: str = ""
    threshold_rule: str = ""


@dataclass(frozen=True)
class LabelValidation:
    status: str  # e.g. "validated (35 test positives)"
    test_positives: int | None = None


@dataclass(frozen=True)
class ModelCard:
    labels: tuple[str, ...]
    model_version: str
    architecture: str
    target_layer: str
    input: InputSpec
    weights_file: str
    weights_sha256: str
    thresholds: Mapping[str, float] = field(default_factory=dict)
    calibration: Calibration | None = None
    out_of_distribution: OutOfDistribution | None = None
    validation: Mapping[str, LabelValidation] = field(default_factory=dict)
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # evaluation reports by name
    training: Mapping[str, Any] = field(default_factory=dict)  # the training record, as the run wrote it
    validation_during_training: Mapping[str, Any] = field(default_factory=dict)  # the selected checkpoint's
    limitations: tuple[str, ...] = ()

    def threshold(self, label: str) -> float:
        """The label's operating threshold on the raw sigmoid, as chosen on validation; 0.5 where none."""
        return float(self.thresholds.get(label, 0.5))

    def report(self, name: str) -> Mapping[str, Any]:
        """An evaluation report by name (e.g. "nih_test"); empty when the card has none."""
        return self.metrics.get(name, {})

    def test_figures(self, label: str) -> dict[str, Any]:
        """The card's NIH test figures for one label: n, positives, auroc, auroc_ci95, ..., "map_resemblance"
        (its maps' median correlation with its average map) and, where radiologists boxed the finding,
        "alignment" (model, random and average_map figures); {} if none."""
        report = self.report("nih_test")
        figures = dict(report.get("labels", {}).get(label, {}))
        alignment = report.get("alignment", {}).get("per_finding", {}).get(label)
        resemblance = report.get("map_resemblance", {}).get("per_label", {}).get(label)
        if figures and alignment:
            figures["alignment"] = alignment
        if figures and resemblance is not None:
            figures["map_resemblance"] = resemblance
        return figures

    def validation_status(self, label: str) -> str:
        entry = self.validation.get(label)
        return entry.status if entry else "not validated"


def card_from_json(data: Any, name: str) -> ModelCard:
    """A card's parsed JSON -> ModelCard; XRayError naming the file for a card of another project or version."""
    if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
        raise XRayError(f"{name} is not a model card of this project (expected format '{CARD_FORMAT}').")
    if list(data.get("labels", [])) != list(PATHOLOGIES):
        raise XRayError(
            f"The checkpoint {name} predicts a different label list or order than this version "
            f"of the viewer ({len(data.get('labels', []))} labels); it cannot be used."
        )
    try:
        spec = data.get("input", {})
        calibration = data.get("calibration")
        ood = data.get("out_of_distribution")
        return ModelCard(
            labels=tuple(data["labels"]),
            model_version=str(data.get("model_version", "unknown")),
            architecture=str(data.get("architecture", "")),
            target_layer=str(data.get("target_layer", "layer4")),
            input=InputSpec(size=int(spec.get("size", 224)), mean=float(spec.get("mean", 0.5)),
                            std=float(spec.get("std", 0.25))),
            weights_file=str(data["weights_file"]),
            weights_sha256=str(data["weights_sha256"]),
            thresholds={label: float(value) for label, value in data.get("thresholds", {}).items()},
            calibration=None if not calibration else Calibration(
                method=str(calibration.get("method", "")), images=int(calibration.get("images", 0)),
                data=str(calibration.get("data", "")),
                labels={label: LabelCalibration(scale=float(entry["scale"]), shift=float(entry["shift"]))
                        for label, entry in calibration["labels"].items()}),
            out_of_distribution=None if not ood else OutOfDistribution(
                file=str(ood["file"]), sha256=str(ood["sha256"]), threshold=float(ood["threshold"]),
                blocks=tuple(ood.get("blocks", ())), method=str(ood.get("method", "")),
                threshold_rule=str(ood.get("threshold_rule", ""))),
            validation={label: LabelValidation(status=str(entry.get("status", "not validated")),
                                               test_positives=entry.get("test_positives"))
                        for label, entry in data.get("validation", {}).items()},
            metrics=data.get("metrics", {}),
            training=data.get("training", {}),
            validation_during_training=data.get("validation_during_training", {}),
            limitations=tuple(data.get("limitations", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise XRayError(f"The model card {name} is incomplete or damaged ({type(error).__name__}: {error}); "
                        "re-create it with the training command or restore it from the release.") from error


def read_card_json(card_path: str | os.PathLike) -> dict[str, Any]:
    """The card's JSON as written, checked to be a card of this project (for writing sections back)."""
    path = Path(card_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise XRayError(f"Model card not found: {path.name}. A checkpoint is a .json card beside its .safetensors weights.") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise XRayError(f"The model card {path.name} is not valid JSON; the checkpoint is damaged.") from error
    card_from_json(data, path.name)
    return data


def read_card(card_path: str | os.PathLike) -> ModelCard:
    """Read and check a model card."""
    return card_from_json(read_card_json(card_path), Path(card_path).name)


def update_card(card_path: str | os.PathLike, **sections: Any) -> ModelCard:
    """Set top-level sections of a model card on disk (its weights and their digest untouched); return the card."""
    data = read_card_json(card_path)
    data.update(sections)
    card = card_from_json(data, Path(card_path).name)
    Path(card_path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return card


def write_card(card_path: str | os.PathLike, data: dict[str, Any]) -> ModelCard:
    """Write a new card (checked first); return it."""
    card = card_from_json(data, Path(card_path).name)
    Path(card_path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return card
