"""Which explanation method to trust, measured on radiologist boxes: `python -m xai_core evaluate --methods ...`.

For each method and every boxed finding: the pointing game, the energy inside the box
and the IoU of the thresholded region, beside the random-map and average-map controls
(the same figures and bootstrap intervals as evaluate.py's Grad-CAM++ report); the
deletion and insertion areas of the map beside a random ranking's; and the cascading
model-randomisation check on the first few films. A method whose maps survive
randomisation is marked as not explaining this model.

`method_track_record` turns the comparison recorded in the model card (`evaluate --methods ...
--record-in-card nih_test`) into the one line the viewer shows beside a method's map.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .alignment import align, random_control
from .card import ModelCard
from .data import Finding, read_boxes
from .errors import XRayError
from .evaluate import alignment_figures
from .explanation import normalized_cam
from .faithfulness import Faithfulness, RandomControls, SanityCheck, faithfulness, random_controls, sanity_check
from .imaging import XRay, read_xray
from .labels import SCORED_WITH, display_name
from .methods import METHODS, attribute, method_named
from .model import XRayModel
from .stats import bootstrap_mean_ci

AVERAGE_MAP_GRID = 32  # the average-map control is kept at this resolution, then drawn at each film's size
CURVE_STEPS = 10
SANITY_FILMS = 2
TRACK_RECORD_REPORT = "nih_test"  # the card's report whose method comparison the viewer quotes
VIEWER_METHOD = "grad_cam_plus_plus"  # the page's own map: `evaluate` scores it without --methods
MIN_BOXES = 10  # boxes of one finding before a method's pointing figure is quoted as evidence


def compare_methods(
    model: XRayModel,
    methods: Sequence[str],
    *,
    images: Path,
    boxes_csv: Path,
    outline_threshold: float = 0.5,
    seed: int = 0,
    curve_steps: int = CURVE_STEPS,
    sanity_films: int = SANITY_FILMS,
) -> dict[str, Any]:
    """Every method's alignment, faithfulness and sanity figures on the films of one box CSV."""
    for name in methods:
        method_named(name)  # an unknown method is refused before any film is read
    boxes = read_boxes(boxes_csv, other_findings=SCORED_WITH)
    if not boxes:
        raise XRayError(f"{Path(boxes_csv).name} holds no boxes to compare the methods on.")
    films, unreadable = _read_films(images, boxes)
    if not films:
        raise XRayError("None of the boxed images could be read: " + "; ".join(unreadable[:3]))
    controls = [
        [random_control(xray.pixels.shape, finding.box, threshold=outline_threshold, seed=seed + number,
                        grid=model.card.map_grid) for finding in findings]
        for number, (xray, findings) in enumerate(films)
    ]
    settings = {"threshold": outline_threshold, "seed": seed, "curve_steps": curve_steps, "sanity_films": sanity_films}
    shared: dict[tuple[int, str], RandomControls] = {}  # (film, label): every method's curves meet one control
    return {
        "boxes": Path(boxes_csv).name,
        "films": len(films),
        "unreadable": unreadable,
        "outline_threshold": outline_threshold,
        "settings": settings,
        "methods": {name: _method_report(model, name, films, controls, shared, **settings) for name in methods},
    }


def _read_films(images: Path, boxes: dict[str, list[Finding]]) -> tuple[list[tuple[XRay, list[Finding]]], list[str]]:
    films, unreadable = [], []
    for name, findings in sorted(boxes.items()):
        try:
            films.append((read_xray(Path(images) / name), findings))
        except XRayError as error:
            unreadable.append(f"{name}: {error}")
    return films, unreadable


def _method_report(
    model: XRayModel,
    method: str,
    films: list[tuple[XRay, list[Finding]]],
    controls: list[list[Any]],
    random_curves: dict[tuple[int, str], RandomControls],
    *,
    threshold: float,
    seed: int,
    curve_steps: int,
    sanity_films: int,
) -> dict[str, Any]:
    alignments: dict[str, list] = {}
    chance: dict[str, list] = {}
    curves: dict[str, list[Faithfulness]] = {}
    grids: dict[str, list[np.ndarray]] = {}
    boxed: list[tuple[str, Finding, tuple[int, int]]] = []
    seconds, checks = [], []
    for number, (xray, findings) in enumerate(tqdm(films, desc=METHODS[method].title, unit="film")):
        labels = sorted({_scored_label(finding) for finding in findings})
        attribution = attribute(model, xray, labels, method)
        seconds.append(attribution.seconds)
        for finding, control in zip(findings, controls[number]):
            scored = _scored_label(finding)
            heatmap = attribution.normalized_map(scored)
            alignments.setdefault(finding.label, []).append(align(heatmap, finding.box, threshold=threshold))
            chance.setdefault(finding.label, []).append(control)
            if (number, scored) not in random_curves:
                random_curves[number, scored] = random_controls(model, xray, scored, steps=curve_steps, seed=seed)
            curves.setdefault(finding.label, []).append(faithfulness(
                model, xray, scored, heatmap, steps=curve_steps, seed=seed, controls=random_curves[number, scored]))
            grids.setdefault(finding.label, []).append(
                attribution.normalized_map(scored, (AVERAGE_MAP_GRID, AVERAGE_MAP_GRID)))
            boxed.append((finding.label, finding, heatmap.shape))
        if number < sanity_films:
            checks.append(sanity_check(model, xray, labels[0], method, seed=seed))
    averages: dict[str, list] = {}
    for label, finding, shape in boxed:
        average = normalized_cam(np.mean(grids[label], axis=0), shape)
        averages.setdefault(label, []).append(align(average, finding.box, threshold=threshold))
    every = sorted(alignments)
    return {
        "title": METHODS[method].title,
        "seconds_per_film_median": round(float(np.median(seconds)), 3),
        "alignment": {
            "all": alignment_figures(*(_pooled(figures, every) for figures in (alignments, chance, averages)), seed),
            "per_finding": {label: alignment_figures(alignments[label], chance[label], averages[label], seed)
                            for label in every},
        },
        "faithfulness": {
            "all": _faithfulness_figures([curve for label in every for curve in curves[label]], seed),
            "per_finding": {label: _faithfulness_figures(curves[label], seed) for label in every},
        },
        "sanity": _sanity_figures(checks),
    }


def _scored_label(finding: Finding) -> str:
    return SCORED_WITH.get(finding.label, finding.label)


def _pooled(figures: dict[str, list], labels: list[str]) -> list:
    return [figure for label in labels for figure in figures[label]]


def _faithfulness_figures(curves: list[Faithfulness], seed: int) -> dict[str, Any]:
    """Mean areas with the paired margins over a random ranking (positive = better than random) and their CIs."""
    deletion_margin = [curve.random_deletion.area - curve.deletion.area for curve in curves]
    insertion_margin = [curve.insertion.area - curve.random_insertion.area for curve in curves]
    return {
        "n": len(curves),
        "deletion_auc": round(float(np.mean([curve.deletion.area for curve in curves])), 4),
        "random_deletion_auc": round(float(np.mean([curve.random_deletion.area for curve in curves])), 4),
        "insertion_auc": round(float(np.mean([curve.insertion.area for curve in curves])), 4),
        "random_insertion_auc": round(float(np.mean([curve.random_insertion.area for curve in curves])), 4),
        "deletion_margin_ci95": [round(bound, 4) for bound in bootstrap_mean_ci(deletion_margin, seed=seed)],
        "insertion_margin_ci95": [round(bound, 4) for bound in bootstrap_mean_ci(insertion_margin, seed=seed)],
        "beats_random_share": round(float(np.mean([curve.beats_random for curve in curves])), 4),
    }


def _sanity_figures(checks: list[SanityCheck]) -> dict[str, Any]:
    return {
        "passed": bool(checks) and all(check.passed for check in checks),
        "verdict": _verdict(checks),
        "checks": [
            {"label": check.label, "passed": check.passed,
             "steps": [{"block": step.block, "spearman": round(step.spearman, 4), "ssim": round(step.ssim, 4)}
                       for step in check.steps]}
            for check in checks
        ],
    }


def _verdict(checks: list[SanityCheck]) -> str:
    if not checks:
        return "not checked"
    if all(check.passed for check in checks):
        return "passed the randomisation check"
    return "maps survive model randomisation: not explaining this model"


def format_comparison(comparison: dict[str, Any]) -> str:
    """One line per method: pointing (95% CI) | random | average map, energy inside, deletion / insertion
    areas beside a random ranking's, and the randomisation verdict."""
    lines = [
        f"methods on {comparison['films']} films of {comparison['boxes']} "
        f"(threshold {comparison['outline_threshold']})",
        f"{'method':<26}{'boxes':>6}{'pointing':>10}{'95% CI':>14}{'random':>8}{'average':>8}{'energy':>8}"
        f"{'deletion':>10}{'random':>8}{'insertion':>11}{'random':>8}{'s/film':>8}  sanity",
    ]
    for report in comparison["methods"].values():
        aligned, faithful = report["alignment"]["all"]["model"], report["faithfulness"]["all"]
        chance, average = report["alignment"]["all"]["random"], report["alignment"]["all"]["average_map"]
        interval = aligned["pointing_ci95"]
        lines.append(
            f"{report['title']:<26}{aligned['n']:>6}{aligned['pointing_hit']:>10.3f}"
            f"{f'{interval[0]:.3f}-{interval[1]:.3f}':>14}{chance['pointing_hit']:>8.3f}{average['pointing_hit']:>8.3f}"
            f"{aligned['energy_inside']:>8.3f}{faithful['deletion_auc']:>10.3f}{faithful['random_deletion_auc']:>8.3f}"
            f"{faithful['insertion_auc']:>11.3f}{faithful['random_insertion_auc']:>8.3f}"
            f"{report['seconds_per_film_median']:>8.2f}  {report['sanity']['verdict']}"
        )
    return "\n".join(lines)


def method_track_record(card: ModelCard, method: str, label: str) -> str:
    """One line: what the card's NIH test method comparison says about this method's maps of this pathology.

    "On 47 NIH test boxes for Effusion, Grad-CAM++ pointed inside the box 0.62 of the time (95% CI ...; a random
    map 0.08, this model's average map 0.33); passed the randomisation check on its Effusion maps of 2 films."
    With fewer than MIN_BOXES boxes only the count of hits, as too few to judge; where nothing was measured, it
    says so. The randomisation check names the pathology whose maps it re-drew: not always the one shown.
    """
    title, finding = method_named(method).title, display_name(label)
    recorded = card.report(TRACK_RECORD_REPORT)
    report = recorded.get("methods", {}).get("methods", {}).get(method)
    if report is None and method == VIEWER_METHOD and "alignment" in recorded:
        # No method comparison, but `evaluate` scored the viewer's own maps on the same boxes: the page's
        # evidence line quotes those figures, so this line must not say the map was never measured.
        report = {"alignment": recorded["alignment"], "sanity": None}
    if report is None:
        return f"{title} has not yet been measured on NIH test boxes for this model: nothing says how far to trust it."
    sanity = _sanity_words(report["sanity"])
    figures = report["alignment"]["per_finding"].get(label)
    if figures is None:
        scored_in = "method comparison" if report["sanity"] is not None else "evaluation"
        return (f"No NIH test boxes of {finding} in this model's {scored_in}: where {title} points for it was never "
                f"checked; {sanity}.")
    model = figures["model"]
    boxes = model["n"]
    counted = f"On {boxes} NIH test box{'' if boxes == 1 else 'es'} for {finding}, {title} pointed inside the box"
    if boxes < MIN_BOXES:
        hits = round(model["pointing_hit"] * boxes)
        return f"{counted} {hits} of {boxes} times: too few boxes to judge (at least {MIN_BOXES} needed); {sanity}."
    low, high = model["pointing_ci95"]
    return (f"{counted} {model['pointing_hit']:.2f} of the time (95% CI {low:.2f}–{high:.2f}; a random map "
            f"{figures['random']['pointing_hit']:.2f}, this model's average map "
            f"{figures['average_map']['pointing_hit']:.2f}); {sanity}.")


def _sanity_words(sanity: dict[str, Any] | None) -> str:
    if sanity is None:
        return "no randomisation check in the model card"
    checks = sanity["checks"]
    if not checks:
        return "randomisation check not run"
    if sanity["passed"]:
        return f"passed the randomisation check on {_maps_of(checks, len(checks))}"
    survived = [check for check in checks if not check["passed"]] or checks
    verb = "survives" if len(survived) == 1 else "survive"
    return f"{_maps_of(survived, len(checks))} {verb} model randomisation: it does not explain this model"


def _maps_of(checks: list[dict[str, Any]], films: int) -> str:
    """'its Pneumonia maps of 2 films', 'its Pneumonia map of 1 of 2 films': which maps, on how many films."""
    labels = " and ".join(dict.fromkeys(display_name(check["label"]) for check in checks))
    count = f"{len(checks)} of {films}" if len(checks) < films else f"{films}"
    return f"its {labels} map{'' if len(checks) == 1 else 's'} of {count} film{'' if films == 1 else 's'}"
