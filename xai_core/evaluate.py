"""Dataset-level report: AUROC with bootstrap CIs, calibration, operating points and box alignment.

One forward pass per image (`explain`) gives both the probabilities and the
Grad-CAM++ maps, so the alignment with radiologist boxes costs nothing extra.

Each box's figures stand beside two controls: a random smooth map (chance),
and the model's average map for that label over every image evaluated (what it
shows whatever the image). A model whose maps sit on the same spot of every
film (say the middle of one lung) beats the random control by position alone;
only figures above the average map's say it found this image's finding.

Without boxes (any split, validation included) the report still says how far
the maps follow the image: each map's resemblance to that average map
(Pearson correlation over the feature grid; 1 = the same map on every film).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .alignment import align, random_control, summarise
from .card import read_card, update_card
from .data import read_boxes, read_label_csv
from .errors import XRayError
from .explanation import normalized_cam
from .labelled_outputs import LabelledOutputs, outputs_on
from .labels import PATHOLOGIES, SCORED_WITH
from .model import XRayModel, load_model
from .stats import auroc, bootstrap_auroc_ci, bootstrap_mean_ci, expected_calibration_error
from .verdict import MIN_POSITIVES, verdict


def label_metrics(truth: np.ndarray, probabilities: np.ndarray, seed: int) -> dict:
    """Per label: n, positives, AUROC and its 95% CI, ECE, and the verdict in words (verdict.py) on these films.
    Sensitivity, specificity and PPV belong to an operating point: the card's `operating_points` section."""
    metrics = {}
    for index, label in enumerate(PATHOLOGIES):
        known = ~np.isnan(truth[:, index])
        y, p = truth[known, index], probabilities[known, index]
        positives = int(y.sum())
        entry: dict[str, Any] = {"n": int(known.sum()), "positives": positives}
        if 0 < positives < len(y):
            low, high = bootstrap_auroc_ci(y, p, seed=seed)
            entry |= {
                "auroc": round(float(auroc(y, p)), 4),
                "auroc_ci95": [round(float(low), 4), round(float(high), 4)],
                "ece": round(float(expected_calibration_error(y, p)), 4),
            }
        judged = verdict(entry.get("auroc", math.nan), entry.get("auroc_ci95", (math.nan, math.nan)), positives)
        entry["verdict"] = judged.words
        metrics[label] = entry
    return metrics


def _rounded(summary: dict[str, Any]) -> dict[str, Any]:
    def rnd(value):
        if isinstance(value, dict):
            return {str(key): rnd(item) for key, item in value.items()}
        if isinstance(value, tuple):
            return [rnd(item) for item in value]
        return value if isinstance(value, int) or value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)

    return {key: rnd(value) for key, value in summary.items()}


def evaluate_dataset(
    *,
    images: Path,
    labels_csv: Path,
    boxes_csv: Path | None = None,
    card_path: Path | None = None,
    split: str | None = None,
    device: str | None = None,
    outline_threshold: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """The report of the card's model on the labelled films of images (one split, or all): `evaluation_report` of
    one forward pass per film."""
    model = load_model(card_path, device=device)
    cases = read_label_csv(labels_csv, images, splits=None if split is None else [split])
    if not cases:
        raise XRayError("No images to evaluate (check --split and the labels CSV).")
    return evaluation_report(model, outputs_on(model, cases, "evaluating"), images=images, labels_csv=labels_csv,
                             boxes_csv=boxes_csv, split=split, outline_threshold=outline_threshold, seed=seed)


def evaluation_report(
    model: XRayModel,
    outputs: LabelledOutputs,
    *,
    images: Path,
    labels_csv: Path,
    boxes_csv: Path | None = None,
    split: str | None = None,
    outline_threshold: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """AUROC per label, the maps' resemblance to their average and, with boxes, the maps' alignment with each box
    beside the random and average-map controls; from the model's outputs on the films (labelled_outputs.py)."""
    boxes = read_boxes(boxes_csv, other_findings=SCORED_WITH) if boxes_csv else {}
    feature_grid = model.card.map_grid
    alignments: dict[str, list] = {}
    controls: dict[str, list] = {}
    boxed: list[tuple[str, Any, tuple[int, int]]] = []  # (label, box, image shape) for the average-map control
    for row, (case, cams, shape) in enumerate(zip(outputs.cases, outputs.raw_cams, outputs.image_shapes)):
        for finding in boxes.get(case.image.name, []):
            heatmap = normalized_cam(cams[PATHOLOGIES.index(SCORED_WITH.get(finding.label, finding.label))], shape)
            alignments.setdefault(finding.label, []).append(align(heatmap, finding.box, threshold=outline_threshold))
            controls.setdefault(finding.label, []).append(
                random_control(heatmap.shape, finding.box, threshold=outline_threshold, seed=seed + row, grid=feature_grid)
            )
            boxed.append((finding.label, finding.box, heatmap.shape))
    image_maps = np.asarray([[normalized_cam(cam, (feature_grid, feature_grid)) for cam in cams]
                             for cams in outputs.raw_cams])  # (films, 14, grid, grid)
    average_maps = image_maps.mean(axis=0)
    averages: dict[str, list] = {}
    for label, box, shape in boxed:
        averages.setdefault(label, []).append(
            align(normalized_cam(average_maps[PATHOLOGIES.index(SCORED_WITH.get(label, label))], shape), box,
                  threshold=outline_threshold))
    metrics = label_metrics(outputs.truth, outputs.probabilities, seed)
    enough = [m["auroc"] for m in metrics.values() if "auroc" in m and m["positives"] >= MIN_POSITIVES]
    report: dict[str, Any] = {
        "model_version": model.version,
        "weights_sha256": model.card.weights_sha256,
        "data": {"images": str(images), "labels": Path(labels_csv).name, "split": split, "n": len(outputs.cases),
                 "unreadable": list(outputs.unreadable)},
        "labels": metrics,
        "mean_auroc": round(float(np.mean(enough)), 4) if enough else None,  # over labels with >= MIN_POSITIVES
        "mean_auroc_labels": len(enough),
        "map_resemblance": map_resemblance(image_maps, average_maps),
    }
    opacity = np.array([case.opacity for case in outputs.cases])
    if (~np.isnan(opacity)).any():
        report["lung_opacity"] = _opacity_metrics(opacity, outputs.probabilities, seed)
    if boxes:
        every = [a for found in alignments.values() for a in found]
        every_control = [c for found in controls.values() for c in found]
        every_average = [a for found in averages.values() for a in found]
        report["alignment"] = {
            "outline_threshold": outline_threshold,
            "boxes": Path(boxes_csv).name,
            "scored_with": {finding: label for finding, label in SCORED_WITH.items() if finding in alignments},
            "all": alignment_figures(every, every_control, every_average, seed),
            "per_finding": {label: alignment_figures(alignments[label], controls[label], averages[label], seed)
                            for label in sorted(alignments)},
        }
    return report


def alignment_figures(model: list, chance: list, average: list, seed: int) -> dict[str, Any]:
    """Means of the model's, the random and the average-map figures, with bootstrap 95% intervals of the
    model's pointing and energy inside the box, and of its paired pointing margin over the average map."""
    hits = np.array([a.pointing_hit for a in model])
    margin = hits - np.array([a.pointing_hit for a in average])
    intervals = {
        "pointing_ci95": bootstrap_mean_ci(hits, seed=seed),
        "energy_inside_ci95": bootstrap_mean_ci([a.energy_inside for a in model], seed=seed),
        "pointing_margin_over_average_map": float(margin.mean()) if margin.size else float("nan"),
        "pointing_margin_ci95": bootstrap_mean_ci(margin, seed=seed),
    }
    return {"model": _rounded({**summarise(model), **intervals}), "random": _rounded(summarise(chance)),
            "average_map": _rounded(summarise(average))}


def _opacity_metrics(opacity: np.ndarray, probabilities: np.ndarray, seed: int) -> dict[str, Any]:
    """RSNA's "Lung Opacity" read with the output of the label its boxes are scored with (labels.SCORED_WITH)."""
    label = SCORED_WITH["Lung Opacity"]
    known = ~np.isnan(opacity)
    y, p = opacity[known], probabilities[known, PATHOLOGIES.index(label)]
    entry: dict[str, Any] = {"scored_with": label, "n": int(known.sum()), "positives": int(y.sum())}
    if 0 < y.sum() < len(y):
        low, high = bootstrap_auroc_ci(y, p, seed=seed)
        entry |= {"auroc": round(float(auroc(y, p)), 4), "auroc_ci95": [round(low, 4), round(high, 4)]}
    return entry


def map_resemblance(image_maps: np.ndarray, average_maps: np.ndarray) -> dict[str, Any]:
    """How much each image's map resembles the model's average map of the same label over the same images.

    image_maps (n, 14, h, w), average_maps (14, h, w), both normalised. Pearson
    correlation over the grid for every image and label; the medians per label
    and over all pairs. Near 1: the map is where the model looks on every film,
    not something this film shows. Needs no boxes, so it can be read on `val`.
    """
    centred = image_maps - image_maps.mean(axis=(2, 3), keepdims=True)
    typical = average_maps - average_maps.mean(axis=(1, 2), keepdims=True)
    spread = np.sqrt((centred**2).sum(axis=(2, 3)) * (typical**2).sum(axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where(spread > 0, (centred * typical).sum(axis=(2, 3)) / spread, np.nan)  # (n, 14); flat maps: NaN
    return {
        "method": "Pearson correlation over the feature grid between each image's normalised map and the model's "
                  "average map of the same label over the images evaluated; medians",
        "median": round(float(np.nanmedian(correlation)), 4),
        "per_label": {label: round(float(np.nanmedian(correlation[:, index])), 4)
                      for index, label in enumerate(PATHOLOGIES)},
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [f"model {report['model_version']}  images {report['data']['n']}  split {report['data']['split']}", ""]
    lines.append(f"{'label':<20}{'n':>6}{'pos':>6}{'AUROC':>8}  {'95% CI':<15}{'ECE':>7}  verdict")
    for label, m in report["labels"].items():
        if "auroc" in m:
            ci = f"{m['auroc_ci95'][0]:.3f}-{m['auroc_ci95'][1]:.3f}"
            lines.append(f"{label:<20}{m['n']:>6}{m['positives']:>6}{m['auroc']:>8.3f}  {ci:<15}{m['ece']:>7.3f}  "
                         f"{m['verdict']}")
        else:
            lines.append(f"{label:<20}{m['n']:>6}{m['positives']:>6}{'-':>8}  {'':<15}{'':>7}  {m['verdict']}")
    if report.get("mean_auroc") is not None:
        lines.append(f"\nmean AUROC over the {report['mean_auroc_labels']} labels with at least {MIN_POSITIVES} "
                     f"positives: {report['mean_auroc']:.3f}")
    lines.append("sensitivity, specificity and PPV at the card's operating points: python -m xai_core operating-points")
    resemblance = report["map_resemblance"]
    lines += ["", f"maps' resemblance to the model's average map (median Pearson r; 1 = the same map on every film): "
                  f"{resemblance['median']:.2f} over all labels, per label "
                  f"{min(resemblance['per_label'].values()):.2f}-{max(resemblance['per_label'].values()):.2f}"]
    if "alignment" in report:
        lines += ["", "pointing game and energy inside the box: the model's maps (95% CI) | a random map | the model's "
                      "average map; margin = model - average map (paired, 95% CI)",
                  f"{'finding':<20}{'boxes':>6}{'pointing':>10}{'95% CI':>14}{'random':>8}{'average':>8}"
                  f"{'margin':>8}{'95% CI':>16}{'energy':>8}{'95% CI':>14}{'random':>8}{'average':>8}"]
        rows = {**report["alignment"]["per_finding"], "all": report["alignment"]["all"]}
        for finding, figures in rows.items():
            model, chance, average = figures["model"], figures["random"], figures["average_map"]
            lines.append(f"{finding:<20}{model['n']:>6}{model['pointing_hit']:>10.3f}{_interval(model['pointing_ci95'])}"
                         f"{chance['pointing_hit']:>8.3f}{average['pointing_hit']:>8.3f}"
                         f"{model['pointing_margin_over_average_map']:>8.3f}{_interval(model['pointing_margin_ci95'], 16)}"
                         f"{model['energy_inside']:>8.3f}{_interval(model['energy_inside_ci95'])}"
                         f"{chance['energy_inside']:>8.3f}{average['energy_inside']:>8.3f}")
        for finding, label in report["alignment"].get("scored_with", {}).items():
            lines.append(f"({finding} boxes are scored with the {label} map)")
    if "lung_opacity" in report:
        opacity = report["lung_opacity"]
        if "auroc" in opacity:
            lines.append(f"\nLung Opacity (RSNA) read by the {opacity['scored_with']} output: AUROC {opacity['auroc']:.3f} "
                         f"({_interval(opacity['auroc_ci95'], 0).strip()}), {opacity['positives']} of {opacity['n']} films")
    return "\n".join(lines)


def _interval(bounds: list[float], width: int = 14) -> str:
    return f"{bounds[0]:.3f}-{bounds[1]:.3f}".rjust(width)


def record_in_card(card_path: Path, name: str, report: dict[str, Any]) -> None:
    """Store a report in the model card's `metrics` under name. A method comparison joins the one already recorded
    there when both come from the same weights, films, boxes and settings, so that slow methods can be run one at a
    time; any other recorded comparison is replaced."""
    metrics = read_card(card_path).metrics
    comparison = joined_comparison(metrics.get(name), report)
    recorded = report if comparison is None else {**report, "methods": comparison}
    update_card(card_path, metrics={**metrics, name: recorded})


def joined_comparison(recorded: dict[str, Any] | None, report: dict[str, Any]) -> dict[str, Any] | None:
    """The method comparison to record with report: its own, joined with the recorded one's methods where both
    compare the same weights on the same films, boxes and settings (the new figures win)."""
    new, old = report.get("methods"), (recorded or {}).get("methods")
    if old is None or any((recorded or {}).get(key) != report.get(key) for key in ("weights_sha256", "data")):
        return new
    if new is None:
        return old  # the same weights and films evaluated again without --methods: the comparison still holds
    same = ("boxes", "films", "unreadable", "outline_threshold", "settings")
    if any(old.get(key) != new.get(key) for key in same):
        return new
    return {**new, "methods": {**old["methods"], **new["methods"]}}
