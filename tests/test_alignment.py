import csv
import math
from pathlib import Path

import numpy as np
import pytest

from xai_core.alignment import (
    IOBB_THRESHOLDS,
    Alignment,
    Box,
    align,
    pointing_game,
    random_control,
    summarise,
)
from xai_core.errors import XRayError

NIH_BOXES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nih" / "boxes.csv"


def peak_at(shape, row, col):
    attention = np.zeros(shape)
    attention[row, col] = 1.0
    return attention


def test_box_mask_takes_pixels_whose_centres_are_inside():
    mask = Box(1.0, 1.0, 2.0, 2.0).mask((4, 5))
    expected = np.zeros((4, 5), dtype=bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(mask, expected)
    # Centre 0.5 lies outside [0.6, 0.8): no pixel, though the box overlaps pixel 0.
    assert not Box(0.6, 0.0, 0.2, 3.0).mask((3, 3)).any()
    assert Box(1.0, 1.0, 2.0, 2.0).area_fraction((4, 5)) == pytest.approx(4 / 20)


def test_box_needs_positive_size():
    with pytest.raises(XRayError):
        Box(0.0, 0.0, 0.0, 5.0)
    with pytest.raises(XRayError):
        Box(0.0, 0.0, 5.0, float("nan"))


def test_pointing_game_peak_inside_and_outside():
    box = Box(10.0, 10.0, 10.0, 10.0)  # pixels 10..19
    assert pointing_game(peak_at((40, 40), 15, 12), box)
    assert pointing_game(peak_at((40, 40), 19, 19), box)
    assert not pointing_game(peak_at((40, 40), 20, 15), box)
    assert not pointing_game(peak_at((40, 40), 30, 30), box)


def test_pointing_game_tolerance():
    box = Box(10.0, 10.0, 10.0, 10.0)
    outside = peak_at((40, 40), 15, 24)  # centre x 24.5, 4.5 px right of the box
    assert not pointing_game(outside, box)
    assert not pointing_game(outside, box, tolerance_px=4.0)
    assert pointing_game(outside, box, tolerance_px=4.5)
    with pytest.raises(ValueError):
        pointing_game(outside, box, tolerance_px=-1.0)


def test_pointing_game_ties_hit_only_when_all_maxima_are_inside():
    box = Box(10.0, 10.0, 10.0, 10.0)
    both_inside = peak_at((40, 40), 12, 12) + peak_at((40, 40), 18, 18)
    one_outside = peak_at((40, 40), 12, 12) + peak_at((40, 40), 30, 30)
    assert pointing_game(both_inside, box)
    assert not pointing_game(one_outside, box)
    assert not pointing_game(np.zeros((40, 40)), box)  # a flat map points nowhere
    assert pointing_game(np.zeros((40, 40)), Box(0.0, 0.0, 40.0, 40.0))


def test_align_on_a_hand_checked_rectangle():
    attention = np.zeros((10, 10))
    attention[2:6, 2:6] = 1.0  # region: 16 pixels, rows and columns 2..5
    box = Box(4.0, 4.0, 4.0, 4.0)  # 16 pixels, rows and columns 4..7; overlap 2 x 2
    result = align(attention, box)
    assert result.iou == pytest.approx(4 / (16 + 16 - 4))
    assert result.iobb == pytest.approx(4 / 16)
    assert result.box_coverage == pytest.approx(4 / 16)
    # Wang et al.: correct when IoBB > T, strictly; 0.25 is not > 0.25.
    assert result.iobb_hits == {0.1: 1.0, 0.25: 0.0, 0.5: 0.0}
    assert result.energy_inside == pytest.approx(4 / 16)
    assert result.pointing_hit == 0.0  # 16 tied maxima, 12 outside the box


def test_iobb_divides_by_the_detected_region_not_the_box():
    attention = np.zeros((20, 20))
    attention[5:7, 5:7] = 1.0  # 4 pixels inside a 10 x 10 box
    result = align(attention, Box(2.0, 2.0, 10.0, 10.0))
    assert result.iobb == 1.0
    assert result.iou == pytest.approx(4 / 100)
    assert result.box_coverage == pytest.approx(4 / 100)
    assert result.pointing_hit == 1.0


def test_region_figures_do_not_depend_on_map_scale():
    rng = np.random.default_rng(0)
    raw = rng.random((30, 30)) * 0.03
    box = Box(5.0, 8.0, 12.0, 9.0)
    a, b = align(raw, box, threshold=0.6), align(raw / raw.max(), box, threshold=0.6)
    assert (a.iou, a.iobb, a.box_coverage, a.pointing_hit) == (b.iou, b.iobb, b.box_coverage, b.pointing_hit)
    assert a.energy_inside == pytest.approx(b.energy_inside)


def test_threshold_sets_the_region():
    attention = np.tile(np.linspace(0.0, 1.0, 11), (5, 1))  # columns 0..10, value = column / 10
    right_half = Box(5.0, 0.0, 6.0, 5.0)
    assert align(attention, right_half, threshold=0.5).iou == 1.0
    assert align(attention, right_half, threshold=0.8).iobb == 1.0
    assert align(attention, right_half, threshold=0.8).box_coverage == pytest.approx(3 / 6)
    with pytest.raises(ValueError):
        align(attention, right_half, threshold=0.0)


def test_energy_of_a_uniform_map_is_the_box_area_fraction():
    box = Box(3.0, 7.0, 11.0, 5.0)
    for shape in [(20, 30), (13, 13)]:  # the second cuts the box at the image edge
        assert align(np.full(shape, 0.7), box).energy_inside == pytest.approx(box.area_fraction(shape))


def test_box_on_the_image_edge():
    box = Box(-5.0, -5.0, 10.0, 10.0)  # only pixels 0..4 in each direction are on the image
    assert box.area_fraction((20, 20)) == pytest.approx(25 / 400)
    result = align(peak_at((20, 20), 0, 0), box)
    assert result.pointing_hit == 1.0
    edge_region = np.zeros((20, 20))
    edge_region[0:5, 0:5] = 1.0
    assert align(edge_region, box).iou == 1.0
    with pytest.raises(XRayError):
        align(np.ones((20, 20)), Box(25.0, 0.0, 5.0, 5.0))


def test_random_control_pointing_is_the_exact_area_fraction():
    shape, box = (64, 48), Box(10.3, 20.0, 15.5, 9.2)
    control = random_control(shape, box, draws=5)
    assert control.pointing_hit == box.area_fraction(shape)
    widened = random_control(shape, box, draws=5, tolerance_px=3.0)
    assert widened.pointing_hit > control.pointing_hit


def test_random_control_is_deterministic_with_its_seed():
    shape, box = (48, 48), Box(8.0, 8.0, 16.0, 16.0)
    assert random_control(shape, box, draws=20, seed=3) == random_control(shape, box, draws=20, seed=3)
    assert random_control(shape, box, draws=20, seed=3) != random_control(shape, box, draws=20, seed=4)


def test_random_control_region_figures_are_at_chance_level():
    shape = (64, 64)
    small = Box(24.0, 24.0, 16.0, 16.0)  # 1/16 of the image
    half = Box(0.0, 0.0, 32.0, 64.0)
    for box in (small, half):
        control = random_control(shape, box, draws=200, seed=1)
        fraction = box.area_fraction(shape)
        # A map that ignores the image puts the box's share of its region and mass in the box.
        assert control.iobb == pytest.approx(fraction, abs=0.03)
        assert control.energy_inside == pytest.approx(fraction, abs=0.02)
        assert 0.0 < control.iou < 0.5
        assert 0.2 < control.box_coverage < 0.8
        assert all(0.0 <= v <= 1.0 for v in control.iobb_hits.values())
    assert random_control(shape, half, draws=100).iobb_hits[0.1] > 0.9


def test_summarise_means_and_count():
    a = Alignment(1.0, 0.2, 0.4, 0.3, {0.1: 1.0, 0.25: 1.0, 0.5: 0.0}, 0.5)
    b = Alignment(0.0, 0.4, 0.0, 0.1, {0.1: 0.0, 0.25: 0.0, 0.5: 0.0}, 0.1)
    summary = summarise([a, b])
    assert summary["n"] == 2
    assert summary["pointing_hit"] == 0.5
    assert summary["iou"] == pytest.approx(0.3)
    assert summary["iobb"] == pytest.approx(0.2)
    assert summary["box_coverage"] == pytest.approx(0.2)
    assert summary["energy_inside"] == pytest.approx(0.3)
    assert summary["iobb_hits"] == {0.1: 0.5, 0.25: 0.5, 0.5: 0.0}
    empty = summarise([])
    assert empty["n"] == 0 and math.isnan(empty["iou"])
    assert set(empty["iobb_hits"]) == set(IOBB_THRESHOLDS)


def test_nih_boxes_lie_on_their_512_px_images():
    if not NIH_BOXES.exists():
        pytest.skip(f"real NIH data not available at {NIH_BOXES}")
    with NIH_BOXES.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        box = Box(*(float(row[key]) for key in ("x", "y", "w", "h")))
        assert 0.0 < box.area_fraction((512, 512)) < 1.0
        cy, cx = int(box.y + box.h / 2), int(box.x + box.w / 2)
        assert align(peak_at((512, 512), cy, cx), box).pointing_hit == 1.0
