"""The shipped model card's figures are reproduced by the evaluate command's engine on the same data."""

from __future__ import annotations

import pytest

from xai_core.card import read_card
from xai_core.evaluate import evaluate_dataset, evaluation_report
from xai_core.model import DEFAULT_CARD

CARD = read_card(DEFAULT_CARD)


def _assert_same(recorded, measured, path="report"):
    if isinstance(recorded, dict):
        assert set(recorded) == set(measured), path
        for key in recorded:
            _assert_same(recorded[key], measured[key], f"{path}.{key}")
    elif isinstance(recorded, list):
        assert len(recorded) == len(measured), path
        for index, (a, b) in enumerate(zip(recorded, measured)):
            _assert_same(a, b, f"{path}[{index}]")
    elif isinstance(recorded, float):
        assert measured == pytest.approx(recorded, abs=2e-3), path
    else:
        assert recorded == measured, path


def _report(shared_data, model, labelled_outputs, folder: str, split: str, boxes: str | None = None) -> dict:
    """The evaluate command's report on a split, from the session's one prediction of it (conftest.py)."""
    root = shared_data / folder
    return evaluation_report(model, labelled_outputs(folder, split), images=root / "images",
                             labels_csv=root / "labels.csv", boxes_csv=boxes and root / boxes, split=split)


@pytest.fixture(scope="module")
def nih_test_report(shared_data, model, labelled_outputs):
    return _report(shared_data, model, labelled_outputs, "nih", "test", "boxes.csv")


def test_nih_test_figures_are_reproduced(nih_test_report):
    recorded = CARD.report("nih_test")
    assert recorded["weights_sha256"] == CARD.weights_sha256
    _assert_same(recorded["labels"], nih_test_report["labels"], "labels")
    _assert_same(recorded["alignment"]["all"], nih_test_report["alignment"]["all"], "alignment")
    _assert_same(recorded["alignment"]["per_finding"], nih_test_report["alignment"]["per_finding"], "per_finding")
    _assert_same(recorded["map_resemblance"], nih_test_report["map_resemblance"], "map_resemblance")
    assert recorded["data"]["n"] == nih_test_report["data"]["n"] == 318
    assert recorded["alignment"]["all"]["model"]["n"] == 60


def test_pediatric_val_figures_are_reproduced(shared_data):
    """End to end through `evaluate_dataset`, the evaluate command's engine, as the command runs it."""
    root = shared_data / "pediatric_pneumonia"
    report = evaluate_dataset(images=root / "images", labels_csv=root / "labels.csv", card_path=DEFAULT_CARD,
                              split="val", device="cpu")
    _assert_same(CARD.report("pediatric_val")["labels"]["Pneumonia"], report["labels"]["Pneumonia"], "Pneumonia")


def test_the_test_report_and_the_operating_points_give_each_label_the_same_verdict():
    """One rule (verdict.py): the evaluate report's words and the operating points' verdict agree, and a label
    with fewer than 10 test positives is never judged."""
    report = CARD.report("nih_test")["labels"]
    for label in CARD.labels:
        assert report[label]["verdict"] == CARD.verdict(label).words, label
    assert report["Hernia"]["verdict"].startswith("too few cases to tell")  # 3 test positives


def test_operating_thresholds_were_chosen_on_validation_data():
    assert CARD.training["command"].startswith("python -m xai_core train")
    assert "test" not in CARD.training["command"]
    chosen = CARD.validation_during_training["per_source"]
    assert "nih" in chosen and "pediatric" in chosen


@pytest.mark.parametrize(("name", "folder", "boxes"), [("nih_boxed_val", "nih_boxed", "boxes.csv"),
                                                       ("jsrt_val", "jsrt", "boxes.csv")])
def test_box_set_figures_are_reproduced(shared_data, model, labelled_outputs, name, folder, boxes):
    """The card's figures on the other radiologist box sets (validation splits; training used train splits only)."""
    report = _report(shared_data, model, labelled_outputs, folder, "val", boxes)
    recorded = CARD.report(name)
    _assert_same(recorded["alignment"], report["alignment"], "alignment")
    _assert_same(recorded["labels"], report["labels"], "labels")
    assert recorded["data"]["n"] == report["data"]["n"]
