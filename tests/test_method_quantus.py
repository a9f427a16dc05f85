"""Our pointing game (xai_core.alignment) against Quantus's PointingGame, the reference implementation of the
localisation metrics, on real maps of the shipped checkpoint over radiologists' boxes on NIH test films."""

from __future__ import annotations

import numpy as np
import pytest

from xai_core.alignment import align
from xai_core.data import read_boxes
from xai_core.explanation import explain
from xai_core.imaging import read_xray
from xai_core.labels import SCORED_WITH
from xai_core.methods import attribute

quantus = pytest.importorskip("quantus", reason="Quantus is a test requirement (requirements-test.txt)")

FILMS = 8  # NIH test films with boxes, in file-name order


def test_method_pointing_game_equals_quantus_pointing_game_on_real_maps(model, shared_data):
    boxes = read_boxes(shared_data / "nih" / "boxes.csv", other_findings=SCORED_WITH)
    ours, theirs, blank = [], [], []
    for image in sorted(boxes)[:FILMS]:
        xray = read_xray(shared_data / "nih" / "images" / image)
        explanation = explain(model, xray)
        for finding in boxes[image]:
            label = SCORED_WITH.get(finding.label, finding.label)
            for heatmap in (explanation.normalized_map(label),
                            attribute(model, xray, label, "grad_cam").normalized_map(label)):
                if not heatmap.any():  # a blank map (Grad-CAM when no position argues for the label) points
                    blank.append(align(heatmap, finding.box).pointing_hit)  # nowhere; Quantus refuses it
                    continue
                ours.append(align(heatmap, finding.box).pointing_hit)
                theirs.append(quantus.PointingGame(disable_warnings=True)(
                    model=None, x_batch=xray.pixels[None, None], y_batch=np.array([model.labels.index(label)]),
                    a_batch=heatmap[None, None], s_batch=finding.box.mask(heatmap.shape)[None, None].astype(float),
                    channel_first=True)[0])
    assert len(ours) >= FILMS and blank == [0.0] * len(blank)
    assert 0 < sum(ours) < len(ours)  # hits and misses both: the comparison can tell the two apart
    assert ours == [float(hit) for hit in theirs]
