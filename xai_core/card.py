"""The model card, read once into typed, frozen records; the only module that knows its JSON keys.

A card is the JSON file beside a checkpoint's weights (model.py): what the network predicts and in
which order, how an image becomes its input, the operating thresholds and points, the probability calibration,
the out-of-distribution statistics, the evaluation reports and the
training record. `read_card` checks it and fails with a message a user can act on; `update_card`
sets sections and writes it back, leaving everything else as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import XRayError
from .labels import PATHOLOGIES
from .preprocessing import InputSpec

CARD_FORMAT = "cxr-xai-model-card/1"

# The input size over the map's: 32 is torchvision's ResNet-50 (a 10 x 10 map at 320 px); 16 dilates layer4
# instead of striding it (20 x 20 at 320 px, the same weights, about 4 times layer4's cost; model.build_network).
OUTPUT_STRIDES = (32, 16)


@dataclass(frozen=True)
class LabelCalibration:
    """Platt scaling of one label: p = sigmoid(scale * logit + shift)."""

    scale: float
    shift: float


@dataclass(frozen=True)
class Calibration:
    """The card's `calibration` section (python -m xai_core calibrate): how, on what, and each label's scaling."""

    method: str
    images: int
    data: str
    labels: Mapping[str, LabelCalibration]


OOD_FORMAT = "frontal-chest-appearance/1"


@dataclass(frozen=True)
class TypicalFilms:
    """The training films' range of what the mild warning names (ood.differences)."""

    brightness: tuple[float, float]  # mean grey level
    contrast: tuple[float, float]  # grey-level standard deviation
    short_side: int  # pixels: the smallest training film's short side


@dataclass(frozen=True)
class OutOfDistribution:
    """The two-level warning's statistics (ood.py; fitted by `python -m xai_core fit-ood`, fitting.py)."""

    method: str
    layout_mean: tuple[float, ...]  # of the training films' rank-normalised layout thumbnails
    layout_components: tuple[tuple[float, ...], ...]  # their principal directions, one row each
    layout_variances: tuple[float, ...]
    feature_names: tuple[str, ...]  # the logistic score's inputs, in order
    feature_mean: tuple[float, ...]
    feature_scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    strong_threshold: float  # score at or above it: "not a frontal chest radiograph"
    mild_threshold: float  # score at or above it (below strong): "differs from the training films"
    typical: TypicalFilms
    threshold_rule: str = ""
    fitted_on: Mapping[str, int] = field(default_factory=dict)  # images per source


def out_of_distribution_json(section: OutOfDistribution) -> dict[str, Any]:
    """The card's JSON of the section (fitting.py writes it with update_card)."""
    def numbers(values: Any) -> list:
        return [numbers(value) if isinstance(value, (list, tuple)) else float(f"{value:.6g}") for value in values]

    typical = section.typical
    return {"format": OOD_FORMAT, "method": section.method, "threshold_rule": section.threshold_rule,
            "strong_threshold": section.strong_threshold, "mild_threshold": section.mild_threshold,
            "typical_films": {"brightness": numbers(typical.brightness), "contrast": numbers(typical.contrast),
                              "short_side_px": typical.short_side},
            "fitted_on": dict(section.fitted_on), "feature_names": list(section.feature_names),
            "feature_mean": numbers(section.feature_mean), "feature_scale": numbers(section.feature_scale),
            "weights": numbers(section.weights), "bias": float(f"{section.bias:.6g}"),
            "layout_mean": numbers(section.layout_mean), "layout_components": numbers(section.layout_components),
            "layout_variances": numbers(section.layout_variances)}


def _out_of_distribution(section: Any, name: str) -> OutOfDistribution | None:
    if not section:
        return None
    if section.get("format") != OOD_FORMAT:
        raise XRayError(
            f"The out-of-distribution section of the model card {name} is in an older or unknown format "
            f"({section.get('format') or 'feature statistics in a separate file'}; this viewer reads "
            f"'{OOD_FORMAT}'). Refit it: python -m xai_core fit-ood --data ../shared/data --weights {name}")

    def floats(values: Any) -> tuple[float, ...]:
        return tuple(float(value) for value in values)

    typical = section["typical_films"]
    record = OutOfDistribution(
        method=str(section["method"]), threshold_rule=str(section.get("threshold_rule", "")),
        layout_mean=floats(section["layout_mean"]),
        layout_components=tuple(floats(row) for row in section["layout_components"]),
        layout_variances=floats(section["layout_variances"]), feature_names=tuple(section["feature_names"]),
        feature_mean=floats(section["feature_mean"]), feature_scale=floats(section["feature_scale"]),
        weights=floats(section["weights"]), bias=float(section["bias"]),
        strong_threshold=float(section["strong_threshold"]), mild_threshold=float(section["mild_threshold"]),
        typical=TypicalFilms(brightness=floats(typical["brightness"]), contrast=floats(typical["contrast"]),
                             short_side=int(typical["short_side_px"])),
        fitted_on={str(key): int(value) for key, value in section.get("fitted_on", {}).items()})
    lengths = {len(record.feature_names), len(record.feature_mean), len(record.feature_scale), len(record.weights)}
    if len(lengths) != 1 or any(len(row) != len(record.layout_mean) for row in record.layout_components) \
            or len(record.layout_components) != len(record.layout_variances):
        raise ValueError("out_of_distribution: its arrays' lengths do not match one another")
    return record


@dataclass(frozen=True)
class Verdict:
    """How far to trust a label, from its test AUROC's 95% interval and test positives (verdict.py)."""

    kind: str  # "works", "weak", "not shown to work" or "too few cases to tell"
    words: str  # e.g. "works (0.81, 0.74–0.88, 47 cases)"
    auroc: float
    auroc_ci95: tuple[float, float]
    positives: int


@dataclass(frozen=True)
class TestRates:
    """A point's figures on the test films: rates (None without films to measure them on), intervals, counts."""

    sensitivity: float | None
    sensitivity_ci95: tuple[float, float] | None
    specificity: float | None
    specificity_ci95: tuple[float, float] | None
    ppv: float | None
    ppv_ci95: tuple[float, float] | None
    true_positives: int
    positives: int
    false_alarms: int
    negatives: int
    films: int


@dataclass(frozen=True)
class OperatingPoint:
    """A cut on the (calibrated) probability, chosen on validation; flagged when probability >= threshold."""

    threshold: float
    validation_sensitivity: float | None  # None: no validation positive (a point chosen on negatives alone)
    validation_specificity: float | None  # None: no validation negative
    test: TestRates


@dataclass(frozen=True)
class LabelOperatingPoints:
    """One label's verdict on the test films and its two points; a point the validation films could not support
    is None, with the reason in `missing`."""

    verdict: Verdict
    high_sensitivity: OperatingPoint | None
    high_specificity: OperatingPoint | None
    missing: tuple[str, ...] = ()  # why a point is absent, e.g. "no high sensitivity point: 5 validation positives ..."


@dataclass(frozen=True)
class OperatingPoints:
    """The card's `operating_points` section (python -m xai_core operating-points)."""

    method: str
    chosen_on: str
    reported_on: str
    labels: Mapping[str, LabelOperatingPoints]


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
    operating_points: OperatingPoints | None = None  # None too where they were cut for other weights or calibration
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # evaluation reports by name
    training: Mapping[str, Any] = field(default_factory=dict)  # the training record, as the run wrote it
    validation_during_training: Mapping[str, Any] = field(default_factory=dict)  # the selected checkpoint's
    output_stride: int = 32  # input size over map size (OUTPUT_STRIDES)
    limitations: tuple[str, ...] = ()

    def threshold(self, label: str) -> float:
        """The label's operating threshold on the raw sigmoid, as chosen on validation; 0.5 where none."""
        return float(self.thresholds.get(label, 0.5))

    @property
    def map_grid(self) -> int:
        """The side of the maps Grad-CAM++ reads (the last block's output) at the card's input size."""
        return self.input.size // self.output_stride

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

    def operating_point(self, label: str, point: str) -> OperatingPoint | None:
        """The label's "high_sensitivity" or "high_specificity" point; None where the card has none."""
        entry = None if self.operating_points is None else self.operating_points.labels.get(label)
        return None if entry is None else getattr(entry, point)

    def verdict(self, label: str) -> Verdict | None:
        entry = None if self.operating_points is None else self.operating_points.labels.get(label)
        return None if entry is None else entry.verdict


def probability_scale(calibration: Calibration | None) -> str:
    """A digest of the calibration's parameters: the probabilities the operating points' cuts are on."""
    given = {} if calibration is None else {label: [entry.scale, entry.shift]
                                            for label, entry in sorted(calibration.labels.items())}
    return hashlib.sha256(json.dumps(given, sort_keys=True).encode()).hexdigest()


def _interval(bounds: Any) -> tuple[float, float] | None:
    return None if bounds is None else (float(bounds[0]), float(bounds[1]))


def _rate(value: Any) -> float | None:
    return None if value is None else float(value)


def _operating_points(data: dict[str, Any], calibration: Calibration | None) -> OperatingPoints | None:
    """The section, or None where it is absent or was cut for other weights or another calibration."""
    section = data.get("operating_points")
    if not section or section.get("weights_sha256") != data["weights_sha256"] \
            or section.get("probability_scale") != probability_scale(calibration):
        return None

    def point(entry: Mapping[str, Any] | None) -> OperatingPoint | None:
        if entry is None:
            return None
        test = entry["test"]
        return OperatingPoint(
            threshold=float(entry["threshold"]), validation_sensitivity=_rate(entry["validation"]["sensitivity"]),
            validation_specificity=_rate(entry["validation"]["specificity"]),
            test=TestRates(**{name: _interval(value) if name.endswith("_ci95") else value
                              for name, value in test.items()}))

    def verdict(entry: Mapping[str, Any]) -> Verdict:
        auroc = entry.get("auroc")
        return Verdict(kind=str(entry["kind"]), words=str(entry["words"]),
                       auroc=math.nan if auroc is None else float(auroc),
                       auroc_ci95=_interval(entry.get("auroc_ci95")) or (math.nan, math.nan),
                       positives=int(entry["positives"]))

    return OperatingPoints(
        method=str(section.get("method", "")), chosen_on=str(section["chosen_on"]),
        reported_on=str(section["reported_on"]),
        labels={label: LabelOperatingPoints(verdict=verdict(entry["verdict"]),
                                            high_sensitivity=point(entry.get("high_sensitivity")),
                                            high_specificity=point(entry.get("high_specificity")),
                                            missing=tuple(entry.get("missing", ())))
                for label, entry in section["labels"].items()})


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
        scaling = None if not calibration else Calibration(
            method=str(calibration.get("method", "")), images=int(calibration.get("images", 0)),
            data=str(calibration.get("data", "")),
            labels={label: LabelCalibration(scale=float(entry["scale"]), shift=float(entry["shift"]))
                    for label, entry in calibration["labels"].items()})
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
            calibration=scaling,
            out_of_distribution=_out_of_distribution(ood, name),
            operating_points=_operating_points(data, scaling),
            metrics=data.get("metrics", {}),
            training=data.get("training", {}),
            validation_during_training=data.get("validation_during_training", {}),
            limitations=tuple(data.get("limitations", ())),
            output_stride=_output_stride(data, name),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise XRayError(f"The model card {name} is incomplete or damaged ({type(error).__name__}: {error}); "
                        "re-create it with the training command or restore it from the release.") from error


def _output_stride(data: dict[str, Any], name: str) -> int:
    stride = int(data.get("output_stride", 32))
    if stride not in OUTPUT_STRIDES:
        raise XRayError(f"The checkpoint {name} needs a network with output stride {stride}; this version of the viewer "
                        f"builds {' or '.join(map(str, OUTPUT_STRIDES))}.")
    return stride


def read_card_json(card_path: str | os.PathLike, *, check: bool = True) -> dict[str, Any]:
    """The card's JSON as written, checked to be a card of this project (for writing sections back); without
    check, only that it is JSON (update_card checks the card once its sections are replaced)."""
    path = Path(card_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise XRayError(f"Model card not found: {path.name}. A checkpoint is a .json card beside its .safetensors weights.") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise XRayError(f"The model card {path.name} is not valid JSON; the checkpoint is damaged.") from error
    if check:
        card_from_json(data, path.name)
    return data


def read_card(card_path: str | os.PathLike) -> ModelCard:
    """Read and check a model card."""
    return card_from_json(read_card_json(card_path), Path(card_path).name)


def update_card(card_path: str | os.PathLike, **sections: Any) -> ModelCard:
    """Set top-level sections of a model card on disk (its weights and their digest untouched); return the card.
    The card is checked with its new sections, so that an outdated section can be replaced."""
    data = read_card_json(card_path, check=False)
    data.update(sections)
    card = card_from_json(data, Path(card_path).name)
    Path(card_path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return card


def write_card(card_path: str | os.PathLike, data: dict[str, Any]) -> ModelCard:
    """Write a new card (checked first); return it."""
    card = card_from_json(data, Path(card_path).name)
    Path(card_path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return card
