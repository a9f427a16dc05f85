"""The line the viewer shows beside a method's map (method_evaluation.method_track_record): what the card's NIH
test method comparison says, from a comparison run on real NIH test boxes and recorded in a copy of the real card."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from xai_core.labels import PATHOLOGIES, display_name
from xai_core.method_evaluation import (
    MIN_BOXES,
    TRACK_RECORD_REPORT,
    VIEWER_METHOD,
    compare_methods,
    method_track_record,
)
from xai_core.methods import METHODS
from xai_core.model import XRayModel
from xai_core.preprocessing import InputSpec

FEW = "Cardiomegaly"  # 4 NIH test boxes: too few to quote
MANY = "Pneumonia"  # 45 NIH test boxes; the comparison takes MIN_BOXES of them


@pytest.fixture(scope="module")
def small_model(model) -> XRayModel:
    """The real checkpoint reading a 64 x 64 film: the comparison's figures are real, and cheap."""
    return replace(model, input_spec=InputSpec(size=64, mean=model.input_spec.mean, std=model.input_spec.std))


@pytest.fixture(scope="module")
def comparison(small_model, shared_data, tmp_path_factory) -> dict:
    header, *rows = (shared_data / "nih" / "boxes.csv").read_text().splitlines()
    chosen = [row for row in rows if row.split(",")[1] == MANY][:MIN_BOXES]
    chosen += [row for row in rows if row.split(",")[1] == FEW]
    boxes_csv = tmp_path_factory.mktemp("boxes") / "boxes.csv"
    boxes_csv.write_text("\n".join([header, *chosen]) + "\n")
    return compare_methods(small_model, ["cam"], images=shared_data / "nih" / "images", boxes_csv=boxes_csv,
                           curve_steps=2, sanity_films=1)


def _recorded(model: XRayModel, comparison: dict):
    """The card as `evaluate --methods cam --record-in-card nih_test` would leave it."""
    report = {**model.card.report(TRACK_RECORD_REPORT), "methods": comparison}
    return replace(model.card, metrics={**model.card.metrics, TRACK_RECORD_REPORT: report})


def _without_comparison(model: XRayModel):
    """The card as `evaluate --record-in-card nih_test` leaves it without --methods: no method comparison."""
    report = {key: value for key, value in model.card.report(TRACK_RECORD_REPORT).items() if key != "methods"}
    return replace(model.card, metrics={**model.card.metrics, TRACK_RECORD_REPORT: report})


def _checked_maps(sanity: dict) -> str:
    """"its Pneumonia maps of 2 films": the pathologies whose maps the randomisation check re-drew, and on how many."""
    films = len(sanity["checks"])
    labels = " and ".join(dict.fromkeys(display_name(check["label"]) for check in sanity["checks"]))
    return f"its {labels} map{'' if films == 1 else 's'} of {films} film{'' if films == 1 else 's'}"


def _survived(sanity: dict) -> str:
    """"its Pneumonia map of 1 of 2 films survives": the maps still ranked as the original after randomisation."""
    survived = [check for check in sanity["checks"] if not check["passed"]]
    films, labels = len(sanity["checks"]), {display_name(check["label"]) for check in survived}
    assert len(labels) == 1 and survived
    count = f"{len(survived)} of {films}" if len(survived) < films else f"{films}"
    plural = len(survived) > 1
    return (f"its {labels.pop()} map{'s' if plural else ''} of {count} film{'s' if films > 1 else ''} "
            f"{'survive' if plural else 'survives'}")


def _expected_start(title: str, label: str, figures: dict) -> str:
    boxes = figures["model"]["n"]
    counted = f"On {boxes} NIH test box{'' if boxes == 1 else 'es'} for {display_name(label)}, {title} pointed inside"
    if boxes < MIN_BOXES:
        return f"{counted} the box {round(figures['model']['pointing_hit'] * boxes)} of {boxes} times"
    return f"{counted} the box {figures['model']['pointing_hit']:.2f} of the time"


def test_method_track_record_of_the_shipped_card_quotes_its_nih_test_comparison(model):
    """Every method the shipped card's NIH test comparison holds quotes its pointing and randomisation verdict,
    per pathology; a method it does not hold says it was never measured. The page's own map is among them, and
    the comparison scored the same maps on the same boxes as `evaluate`, whose figures the page's evidence line
    quotes (the controls may differ: the comparison's average map is over the boxed films alone)."""
    recorded = model.card.report(TRACK_RECORD_REPORT)
    compared = recorded["methods"]["methods"]
    assert VIEWER_METHOD in compared
    scored = compared[VIEWER_METHOD]["alignment"]["per_finding"]
    assert scored.keys() == recorded["alignment"]["per_finding"].keys()
    for label, figures in recorded["alignment"]["per_finding"].items():
        for figure in ("n", "pointing_hit", "pointing_ci95", "energy_inside", "energy_inside_ci95"):
            assert scored[label]["model"][figure] == figures["model"][figure], (label, figure)
    for method in METHODS:
        title = METHODS[method].title
        for label in PATHOLOGIES:
            line = method_track_record(model.card, method, label)
            if method not in compared:
                assert line == (f"{title} has not yet been measured on NIH test boxes for this model: "
                                "nothing says how far to trust it.")
                continue
            sanity = compared[method]["sanity"]
            assert len(sanity["checks"]) >= 1
            assert line.endswith(f"; {_survived(sanity)} model randomisation: it does not explain this model."
                                 if not sanity["passed"] else
                                 f"; passed the randomisation check on {_checked_maps(sanity)}.")
            figures = compared[method]["alignment"]["per_finding"].get(label)
            if figures is None:
                assert line.startswith(f"No NIH test boxes of {display_name(label)} in this model's method "
                                       f"comparison: where {title} points for it was never checked; ")
            else:
                assert line.startswith(_expected_start(title, label, figures))


def test_method_track_record_without_a_comparison_quotes_only_what_evaluate_measured(model):
    """A card without a method comparison: every method but the viewer's own says it was never measured, and
    Grad-CAM++ quotes the card's `evaluate` figures on NIH test boxes, as the page's evidence line does."""
    card = _without_comparison(model)
    for method in set(METHODS) - {VIEWER_METHOD}:
        for label in PATHOLOGIES:
            line = method_track_record(card, method, label)
            assert line == (f"{METHODS[method].title} has not yet been measured on NIH test boxes for this model: "
                            "nothing says how far to trust it.")
    per_finding = card.report(TRACK_RECORD_REPORT)["alignment"]["per_finding"]
    for label in PATHOLOGIES:
        line = method_track_record(card, VIEWER_METHOD, label)
        assert line.endswith("; no randomisation check in the model card.")
        figures = per_finding.get(label)
        if figures is None:
            assert line.startswith(f"No NIH test boxes of {display_name(label)} in this model's evaluation: ")
            continue
        assert line.startswith(_expected_start("Grad-CAM++", label, figures))


def test_method_track_record_quotes_the_recorded_comparison_with_its_controls(model, comparison):
    card = _recorded(model, comparison)
    figures = comparison["methods"]["cam"]["alignment"]["per_finding"][MANY]
    assert figures["model"]["n"] == MIN_BOXES
    low, high = figures["model"]["pointing_ci95"]
    line = method_track_record(card, "cam", MANY)
    assert line.startswith(f"On {MIN_BOXES} NIH test boxes for {MANY}, CAM pointed inside the box "
                           f"{figures['model']['pointing_hit']:.2f} of the time (95% CI {low:.2f}–{high:.2f}; ")
    assert f"a random map {figures['random']['pointing_hit']:.2f}" in line
    assert f"this model's average map {figures['average_map']['pointing_hit']:.2f})" in line
    sanity = comparison["methods"]["cam"]["sanity"]
    assert len(sanity["checks"]) == 1
    assert line.endswith(f"; passed the randomisation check on its {MANY} map of 1 film." if sanity["passed"] else
                         f"; its {MANY} map of 1 film survives model randomisation: it does not explain this model.")


def test_method_track_record_with_too_few_boxes_counts_hits_and_quotes_no_rate(model, comparison):
    card = _recorded(model, comparison)
    figures = comparison["methods"]["cam"]["alignment"]["per_finding"][FEW]["model"]
    assert 0 < figures["n"] < MIN_BOXES
    line = method_track_record(card, "cam", FEW)
    hits = round(figures["pointing_hit"] * figures["n"])
    assert line.startswith(f"On {figures['n']} NIH test boxes for {FEW}, CAM pointed inside the box {hits} of "
                           f"{figures['n']} times: too few boxes to judge (at least {MIN_BOXES} needed); ")
    assert not re.search(r"\d\.\d", line)  # no rate, no interval


def test_method_track_record_without_boxes_of_the_finding_or_a_measured_method_says_so(model, comparison):
    card = _recorded(model, comparison)
    assert "Hernia" not in comparison["methods"]["cam"]["alignment"]["per_finding"]
    assert method_track_record(card, "cam", "Hernia").startswith(
        "No NIH test boxes of Hernia in this model's method comparison: where CAM points for it was never checked; ")
    assert method_track_record(card, "grad_cam", MANY).startswith("Grad-CAM has not yet been measured")


def test_method_track_record_says_when_maps_survive_randomisation(model, comparison):
    cam = comparison["methods"]["cam"]
    failed = {**cam, "sanity": {**cam["sanity"], "passed": False,
                                "checks": [{**cam["sanity"]["checks"][0], "passed": False}]}}
    card = _recorded(model, {**comparison, "methods": {"cam": failed}})
    assert method_track_record(card, "cam", MANY).endswith(
        f"; its {MANY} map of 1 film survives model randomisation: it does not explain this model.")
    unchecked = {**cam, "sanity": {"passed": False, "verdict": "not checked", "checks": []}}
    card = _recorded(model, {**comparison, "methods": {"cam": unchecked}})
    assert method_track_record(card, "cam", FEW).endswith("; randomisation check not run.")
