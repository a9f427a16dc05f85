"""Operating points chosen on NIH validation films and reported on NIH test films; the verdict rule; the card."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil

import numpy as np
import pytest

from xai_core.__main__ import main
from xai_core.card import read_card, read_card_json, update_card
from xai_core.errors import XRayError
from xai_core.explanation import explain
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES
from xai_core.model import default_card
from xai_core.operating_points import (
    HIGH_SENSITIVITY,
    HIGH_SPECIFICITY,
    MIN_CASES_FOR_RATE,
    POINT_NAMES,
    TARGET_RATE,
    in_words,
    operating_points_section,
    scored,
)
from xai_core.report import explanation_record
from xai_core.verdict import NOT_SHOWN, TOO_FEW, WEAK, WORKS, verdict

NIH_SPLITS = ("val", "test")


# --- the verdict rule: each edge ------------------------------------------------------------------------


@pytest.mark.parametrize(("auroc", "interval", "positives", "kind"), [
    (0.81, (0.70, 0.88), 47, WORKS),  # the lower bound at 0.70 exactly: works
    (0.81, (0.69, 0.88), 47, WEAK),  # one step under it, as printed: weak
    (0.81, (0.6951, 0.88), 47, WORKS),  # printed as 0.70: read as printed
    (0.60, (0.51, 0.70), 22, WEAK),  # the lower bound one step above chance: weak
    (0.60, (0.50, 0.70), 22, NOT_SHOWN),  # chance inside the interval: not shown to work
    (0.60, (0.5049, 0.70), 22, NOT_SHOWN),  # printed as 0.50: not shown to work, never "weak (0.60, 0.50–...)"
    (0.45, (0.35, 0.56), 35, NOT_SHOWN),  # worse than chance
    (0.95, (0.90, 0.99), 10, WORKS),  # ten test positives are enough
    (0.95, (0.90, 0.99), 9, TOO_FEW),  # nine are not, however high the AUROC
    (math.nan, (math.nan, math.nan), 0, TOO_FEW),  # no positives: no AUROC
    (math.nan, (math.nan, math.nan), 40, TOO_FEW),  # no interval (e.g. every film positive)
])
def test_the_verdict_rule_at_its_edges(auroc, interval, positives, kind):
    judged = verdict(auroc, interval, positives)
    assert judged.kind == kind
    assert judged.words.startswith(kind)


def test_the_verdict_in_words():
    assert verdict(0.8123, (0.7401, 0.8812), 47).words == "works (0.81, 0.74–0.88, 47 cases)"
    assert verdict(0.9, (0.83, 0.98), 3).words == "too few cases to tell (3 test cases; at least 10 needed)"


# --- choosing on real validation predictions, reporting on test --------------------------------------------


@pytest.fixture(scope="module")
def nih(labelled_outputs) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(truth, calibrated probabilities) of the NIH val and test films under the checkpoint the viewer loads."""
    return {split: scored(labelled_outputs("nih", split)) for split in NIH_SPLITS}


@pytest.fixture(scope="module")
def section(model, nih) -> dict:
    return operating_points_section(model.card, nih["val"], nih["test"], chosen_on="val", reported_on="test")


def _sensitivity(truth, probabilities, cut):
    return float((probabilities[truth == 1] >= cut).mean())


def _specificity(truth, probabilities, cut):
    return float((probabilities[truth == 0] < cut).mean())


def test_each_point_meets_its_target_on_validation_and_is_the_extreme_one(nih, section):
    truth, probabilities = nih["val"]
    chosen = 0
    for index, label in enumerate(PATHOLOGIES):
        y, p = truth[:, index], probabilities[:, index]
        scores = np.unique(p)
        entry = section["labels"][label]
        if entry[HIGH_SENSITIVITY]:
            cut = entry[HIGH_SENSITIVITY]["threshold"]
            assert _sensitivity(y, p, cut) >= TARGET_RATE, label
            higher = scores[scores > p[p >= cut].min()]  # a cut above the lowest film flagged flags fewer: too few
            assert higher.size == 0 or _sensitivity(y, p, higher[0]) < TARGET_RATE, label
            assert entry[HIGH_SENSITIVITY]["validation"]["sensitivity"] == pytest.approx(_sensitivity(y, p, cut), abs=1e-4)
            chosen += 1
        if entry[HIGH_SPECIFICITY]:
            cut = entry[HIGH_SPECIFICITY]["threshold"]
            assert _specificity(y, p, cut) >= TARGET_RATE, label
            lower = scores[scores < cut]  # a cut at the highest film left unflagged flags it: too many
            assert lower.size == 0 or _specificity(y, p, lower[-1]) < TARGET_RATE, label
            chosen += 1
    assert chosen >= 14  # every label has at least its high-specificity point on 188 validation films


def test_the_test_films_never_choose_a_point(model, nih, section):
    """Shuffling the test labels changes every test figure but no cut: the cuts come from validation alone."""
    truth, probabilities = nih["test"]
    shuffled = np.random.default_rng(0).permutation(truth)
    other = operating_points_section(model.card, nih["val"], (shuffled, probabilities), chosen_on="val",
                                     reported_on="test")
    for label in PATHOLOGIES:
        for point in POINT_NAMES:
            mine, theirs = section["labels"][label][point], other["labels"][label][point]
            assert (mine is None) == (theirs is None)
            if mine:
                assert mine["threshold"] == theirs["threshold"]


def test_test_figures_are_the_test_films_counts_with_intervals(nih, section):
    truth, probabilities = nih["test"]
    for index, label in enumerate(PATHOLOGIES):
        y, p = truth[:, index], probabilities[:, index]
        for point in POINT_NAMES:
            entry = section["labels"][label][point]
            if not entry:
                continue
            test, flagged = entry["test"], p >= entry["threshold"]
            assert test["true_positives"] == int((flagged & (y == 1)).sum())
            assert test["false_alarms"] == int((flagged & (y == 0)).sum())
            assert (test["positives"], test["negatives"], test["films"]) == (int(y.sum()), int((y == 0).sum()), 318)
            assert test["sensitivity"] == pytest.approx(test["true_positives"] / test["positives"], abs=1e-4)
            assert test["specificity"] == pytest.approx(1 - test["false_alarms"] / test["negatives"], abs=1e-4)
            called = test["true_positives"] + test["false_alarms"]
            if called:
                assert test["ppv"] == pytest.approx(test["true_positives"] / called, abs=1e-4)
            for rate in ("sensitivity", "specificity", "ppv"):
                if test[rate] is not None:
                    low, high = test[f"{rate}_ci95"]
                    assert low <= test[rate] <= high


def test_labels_with_few_validation_positives_get_no_high_sensitivity_point_and_say_so(nih, section):
    truth = nih["val"][0]
    few = [label for index, label in enumerate(PATHOLOGIES) if truth[:, index].sum() < MIN_CASES_FOR_RATE]
    assert "Cardiomegaly" in few and "Hernia" in few  # 5 validation positives each in this subset
    for label in few:
        entry = section["labels"][label]
        assert entry[HIGH_SENSITIVITY] is None
        positives = int(truth[:, PATHOLOGIES.index(label)].sum())
        assert f"no high sensitivity point: {positives} validation positives (at least 10 needed)" in entry["missing"]


def test_the_verdict_reads_the_same_test_auroc_as_the_evaluate_report(model, section):
    """The verdict's AUROC and interval are the nih_test report's (evaluate.py, same bootstrap seed)."""
    report = model.card.report("nih_test")
    if report.get("weights_sha256") != model.card.weights_sha256:
        pytest.skip("this card's nih_test report is of other weights")
    for label in PATHOLOGIES:
        figures, judged = report["labels"][label], section["labels"][label]["verdict"]
        assert judged["positives"] == figures["positives"]
        assert judged["auroc"] == pytest.approx(figures["auroc"], abs=2e-3)
        assert judged["auroc_ci95"] == pytest.approx(figures["auroc_ci95"], abs=2e-3)


def test_the_cards_points_are_the_ones_its_command_chooses_now(section):
    """The card carries points for its own weights and calibration, and they are reproduced from the data."""
    card = read_card(default_card())
    assert card.operating_points is not None, "run: python -m xai_core operating-points --data ../shared/data/nih"
    for label in PATHOLOGIES:
        entry, expected = card.operating_points.labels[label], section["labels"][label]
        assert entry.verdict.kind == expected["verdict"]["kind"], label
        for point in POINT_NAMES:
            chosen = getattr(entry, point)
            assert (chosen is None) == (expected[point] is None), (label, point)
            if chosen:
                assert chosen.threshold == pytest.approx(expected[point]["threshold"], abs=1e-4), (label, point)
                assert chosen.test.true_positives == expected[point]["test"]["true_positives"], (label, point)
                assert chosen.test.false_alarms == expected[point]["test"]["false_alarms"], (label, point)


# --- the card: round trip, stale points, the command ---------------------------------------------------------


def _card_copy(tmp_path):
    """A copy of the viewer's card beside links to its weights and statistics (never copied, never changed)."""
    shipped = default_card()
    for source in shipped.parent.glob(f"{shipped.stem}*"):
        target = tmp_path / source.name
        if source.suffix == ".json":
            shutil.copy(source, target)
        else:
            target.symlink_to(source)
    return tmp_path / shipped.name


def test_the_section_round_trips_through_the_card_and_is_dropped_for_other_weights(tmp_path):
    data = read_card_json(default_card())
    if "operating_points" not in data:
        pytest.skip("the viewer's card has no operating points yet")
    path = _card_copy(tmp_path)
    section = data["operating_points"]
    card = update_card(path, operating_points=section)
    assert card == read_card(default_card())  # frozen records, equal field by field
    for label, entry in section["labels"].items():
        for point in POINT_NAMES:
            chosen = card.operating_point(label, point)
            assert (chosen is None) == (entry[point] is None)
            if chosen:
                assert chosen.threshold == entry[point]["threshold"]
                assert chosen.test.ppv_ci95 == (None if entry[point]["test"]["ppv_ci95"] is None
                                                else tuple(entry[point]["test"]["ppv_ci95"]))
        assert card.verdict(label).words == entry["verdict"]["words"]
    stale = update_card(path, operating_points={**section, "weights_sha256": "0" * 64})
    assert stale.operating_points is None and stale.verdict("Edema") is None  # cut for other weights: not used
    recalibrated = json.loads(path.read_text())
    recalibrated["calibration"]["labels"]["Edema"]["shift"] += 0.1
    path.write_text(json.dumps({**recalibrated, "operating_points": section}))
    assert read_card(path).operating_points is None  # cut on other probabilities: not used
    broken = {**section, "labels": {**section["labels"], "Edema": {"verdict": {}}}}
    (tmp_path / "again").mkdir()
    with pytest.raises(XRayError, match="incomplete or damaged"):
        update_card(_card_copy(tmp_path / "again"), operating_points=broken)


def test_the_command_writes_the_points_into_the_card_it_is_given(shared_data, tmp_path):
    """`python -m xai_core operating-points` on a few NIH films: val chooses, test reports, only that card changes."""
    nih = shared_data / "nih"
    with open(nih / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for row in rows if row["split"] == "val"][:14] + [row for row in rows if row["split"] == "test"][:12]
    folder = tmp_path / "nih"
    folder.mkdir()
    (folder / "images").symlink_to(nih / "images")
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    card_path = _card_copy(tmp_path)
    shipped = hashlib.sha256(default_card().read_bytes()).hexdigest()
    main(["operating-points", "--weights", str(card_path), "--data", str(folder), "--device", "cpu"])
    assert hashlib.sha256(default_card().read_bytes()).hexdigest() == shipped
    points = read_card(card_path).operating_points
    assert points.chosen_on == "nih labels.csv, split val" and points.reported_on == "nih labels.csv, split test"
    # strict JSON: a point chosen on negatives alone (no validation positive) has no sensitivity, never NaN
    json.loads(card_path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the card"))
    assert any(entry.high_specificity and entry.high_specificity.validation_sensitivity is None
               for entry in points.labels.values())
    for label, entry in points.labels.items():
        if entry.high_sensitivity is None:  # fewer than 10 positives in 14 validation films: says so
            assert any("validation positives (at least 10 needed)" in reason for reason in entry.missing), label
        assert (entry.verdict.kind == TOO_FEW) == (entry.verdict.positives < 10), label
        for point in (entry.high_sensitivity, entry.high_specificity):
            assert point is None or point.test.films == 12
    assert sum(entry.high_sensitivity is None for entry in points.labels.values()) >= 12


# --- the JSON record: the same verdict and the same flags as the page ---------------------------------------


def test_the_json_record_flags_at_both_points_with_the_verdict(model, chest_dicom):
    xray = read_xray(chest_dicom)
    record = explanation_record(model, xray, explain(model, xray), {})
    card = model.card
    for finding in record["findings"]:
        label = finding["label"]
        for point in POINT_NAMES:
            chosen = card.operating_point(label, point)
            assert finding["flagged"][point] == (None if chosen is None else finding["probability"] >= chosen.threshold)
        if card.operating_points is not None:
            assert finding["verdict"] == card.verdict(label).words
            if card.operating_point(label, HIGH_SPECIFICITY):
                assert in_words(card.operating_point(label, HIGH_SPECIFICITY)).startswith("at this point the model found")
