"""One findings record per pathology (xai_core/findings.py), and the page's table and summary line, the command
line's report and the JSON record all showing it: the sample film on the shipped checkpoint, at both points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from xai_core.errors import XRayError
from xai_core.explanation import explain
from xai_core.findings import by_probability, findings
from xai_core.imaging import read_xray
from xai_core.labels import PATHOLOGIES, display_name
from xai_core.operating_points import HIGH_SENSITIVITY, HIGH_SPECIFICITY, POINT_NAMES
from xai_core.report import explanation_record, findings_report

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
POINTS = (HIGH_SPECIFICITY, HIGH_SENSITIVITY)


@pytest.fixture(scope="module")
def sample(model, chest_dicom):
    xray = read_xray(chest_dicom)
    return xray, explain(model, xray)


@pytest.fixture(scope="module")
def card(model):
    if model.card.operating_points is None:
        pytest.skip("this checkpoint's card has no operating points")
    return model.card


@pytest.mark.parametrize("point", POINTS)
def test_a_finding_holds_the_cards_point_and_verdict_for_the_films_probability(sample, card, point):
    _, explanation = sample
    found = findings(explanation, card, point)
    assert [finding.label for finding in found] == list(PATHOLOGIES)
    for finding in found:
        label, chosen, judged = finding.label, card.operating_point(finding.label, point), card.verdict(finding.label)
        assert finding.name == display_name(label) and finding.point == point
        assert finding.probability == explanation.probability(label)
        assert finding.verdict == judged and finding.verdict_words == judged.words
        assert finding.evidence == judged.kind and finding.trusted == (judged.kind == "works")
        if chosen is None:
            assert finding.cut is finding.flagged is finding.test is None
            assert finding.point_meaning.startswith(f"no {POINT_NAMES[point]} point")  # the card's reason
            assert finding.flag_words() == f"not flagged: {finding.point_meaning}"
            continue
        assert finding.cut == chosen.threshold and finding.test == chosen.test
        assert finding.flagged == (explanation.probability(label) >= chosen.threshold)
        test = chosen.test
        assert finding.point_meaning == (
            f"at this point the model found {test.true_positives} of {test.positives} test cases and raised "
            f"{test.false_alarms} false alarms in {test.negatives} films without the finding")
        side = "flagged" if finding.flagged else "not flagged"
        assert finding.flag_words() == f"{side} at the {POINT_NAMES[point]} point ({chosen.threshold:.3f})"
        assert f"sensitivity {test.sensitivity:.2f}" in finding.rates_words()
    flags = [finding.flagged for finding in found]
    assert True in flags or False in flags  # the card holds points for this film's labels


def test_an_unknown_point_is_refused(sample, card):
    with pytest.raises(XRayError, match="Unknown operating point 'youden': choose high_specificity or"):
        findings(sample[1], card, "youden")


def test_the_json_record_and_the_printed_report_show_the_same_findings(model, sample, card):
    xray, explanation = sample
    both = {point: findings(explanation, card, point) for point in POINTS}
    for point, found in both.items():
        record = explanation_record(model, xray, explanation, {}, point)
        assert record["flagged_at"] == point
        for finding, entry in zip(found, record["findings"], strict=True):
            assert entry["label"] == finding.label and entry["verdict"] == finding.verdict_words
            assert entry["at_flagged_point"]["flagged"] == finding.flagged == entry["flagged"][point]
            assert entry["at_flagged_point"]["meaning"] == finding.point_meaning
            assert entry["cuts"] == {name: both[name][PATHOLOGIES.index(finding.label)].cut for name in POINTS}
        report = findings_report(found).splitlines()
        assert f"the {POINT_NAMES[point]} point" in report[0]
        for line, finding in zip(report[1:], by_probability(found), strict=True):
            assert line.startswith(finding.name) and f"{finding.probability:.3f}" in line
            assert line.endswith(f"{finding.flag_words()}; {finding.verdict_words}")


def test_the_command_line_prints_and_writes_the_findings_at_its_point(model, sample, card, chest_dicom, tmp_path):
    result = subprocess.run([sys.executable, "-m", "xai_core", "explain", str(chest_dicom), "--out", str(tmp_path),
                             "--labels", "Effusion", "--flag-at", HIGH_SENSITIVITY, "--device", "cpu"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    found = findings(sample[1], card, HIGH_SENSITIVITY)
    assert findings_report(found) in result.stdout
    record = json.loads((tmp_path / f"{chest_dicom.stem}.json").read_text())
    assert record["flagged_at"] == HIGH_SENSITIVITY
    assert [entry["at_flagged_point"]["flagged"] for entry in record["findings"]] == [f.flagged for f in found]


def test_the_pages_table_and_summary_show_the_findings(sample, card):
    _, explanation = sample
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    next(button for button in at.button if button.label == "Open sample").click().run()
    assert not at.exception and not at.error
    for point in POINTS:
        at.radio(key="operating_point").set_value(point).run()
        assert not at.exception
        found = by_probability(findings(explanation, card, point))
        table = next(element for element in at.get("bidi_component")
                     if element.proto.component_name == "chest_xray_viewer.pathology_table")
        rows = json.loads(table.proto.json)["rows"]
        assert [row["label"] for row in rows] == [finding.label for finding in found]
        for row, finding in zip(rows, found, strict=True):
            assert row["probability"] == pytest.approx(finding.probability, abs=1e-6)
            assert (row["flagged"], row["evidence"], row["trusted"]) == (finding.flagged, finding.evidence,
                                                                         finding.trusted)
            assert (row["flag_help"], row["evidence_help"]) == (finding.point_words(), finding.verdict_words)
        shown = next(finding for finding in found if finding.label == at.session_state["pathology"])
        summary = next(element.value for element in at.markdown if "Evidence on NIH test films" in element.value)
        assert shown.flag_words() in summary and shown.verdict_words in summary
