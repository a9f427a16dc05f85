import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xai_core.stats import (
    fit_platt,
    auroc,
    bootstrap_auroc_ci,
    choose_threshold,
    expected_calibration_error,
    sensitivity_specificity,
)


def brute_force_auroc(labels, scores) -> float:
    positives = [s for y, s in zip(labels, scores) if y == 1]
    negatives = [s for y, s in zip(labels, scores) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


cases = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(cases)
def test_auroc_equals_pairwise_count_with_ties(pairs):
    labels = [y for y, _ in pairs]
    scores = [s / 5 for _, s in pairs]  # few distinct values: many ties
    if len(set(labels)) < 2:
        assert math.isnan(auroc(labels, scores))
    else:
        assert auroc(labels, scores) == pytest.approx(brute_force_auroc(labels, scores), abs=1e-12)


def test_auroc_on_larger_random_data_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.random(400) < 0.3
    scores = np.round(rng.normal(size=400) + labels, 1)
    assert auroc(labels, scores) == pytest.approx(brute_force_auroc(labels.astype(int), scores), abs=1e-12)


def test_perfect_inverted_and_uninformative_scores():
    labels = [0, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.8, 0.9]
    assert auroc(labels, scores) == 1.0
    assert auroc(labels, [-s for s in scores]) == 0.0
    assert auroc(labels, [0.5] * 5) == 0.5


def test_nan_labels_are_left_out_with_their_scores():
    labels = np.array([0, 1, np.nan, 0, 1, np.nan, 1, 0])
    probs = np.array([0.1, 0.9, np.nan, 0.4, 0.35, 0.99, 0.8, 0.3])
    known = ~np.isnan(labels)
    assert auroc(labels, probs) == auroc(labels[known], probs[known])
    assert expected_calibration_error(labels, probs) == expected_calibration_error(labels[known], probs[known])
    assert choose_threshold(labels, probs) == choose_threshold(labels[known], probs[known])
    assert sensitivity_specificity(labels, probs, 0.5) == sensitivity_specificity(labels[known], probs[known], 0.5)
    assert bootstrap_auroc_ci(labels, probs, n_boot=200) == bootstrap_auroc_ci(
        labels[known], probs[known], n_boot=200
    )


def test_invalid_labels_and_scores_raise():
    with pytest.raises(ValueError):
        auroc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        auroc([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError):
        auroc([0, 1], [0.1, 0.2, 0.3])


def _synthetic(n: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    return labels, rng.normal(size=n) + 1.2 * labels


def test_bootstrap_interval_contains_estimate_and_narrows_with_more_data():
    small = _synthetic(80, 0)
    large = _synthetic(3000, 0)
    low_s, high_s = bootstrap_auroc_ci(*small)
    low_l, high_l = bootstrap_auroc_ci(*large)
    assert low_s <= auroc(*small) <= high_s
    assert low_l <= auroc(*large) <= high_l
    assert high_l - low_l < (high_s - low_s) / 3


def test_bootstrap_is_deterministic_and_level_widens_it():
    labels, scores = _synthetic(300, 1)
    assert bootstrap_auroc_ci(labels, scores, seed=7) == bootstrap_auroc_ci(labels, scores, seed=7)
    assert bootstrap_auroc_ci(labels, scores, seed=7) != bootstrap_auroc_ci(labels, scores, seed=8)
    low90, high90 = bootstrap_auroc_ci(labels, scores, level=0.90)
    low99, high99 = bootstrap_auroc_ci(labels, scores, level=0.99)
    assert low99 < low90 and high90 < high99


def test_bootstrap_with_one_class_or_rare_positives():
    assert all(math.isnan(v) for v in bootstrap_auroc_ci([1, 1, 1], [0.1, 0.2, 0.3]))
    # One positive in 20: about a third of resamples miss it and are skipped.
    labels = [1] + [0] * 19
    scores = [0.9] + list(np.linspace(0.0, 0.95, 19))
    low, high = bootstrap_auroc_ci(labels, scores, n_boot=300)
    assert 0.0 <= low <= auroc(labels, scores) <= high <= 1.0


def test_bootstrap_of_a_few_thousand_cases_is_fast():
    labels, scores = _synthetic(3000, 2)
    start = time.perf_counter()
    bootstrap_auroc_ci(labels, np.round(scores, 2), n_boot=1000)
    assert time.perf_counter() - start < 1.0


def test_ece_is_zero_when_each_bin_is_calibrated():
    labels = [1, 0, 0, 0, 1, 1, 1, 0]
    probs = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_known_value_weights_bins_by_count():
    # Bin [0.1, 0.2): 2 cases at 0.15, rate 0.5 -> gap 0.35, weight 2/6.
    # Last bin: 4 cases at 1.0 (1.0 belongs to the last bin), rate 0.75 -> gap 0.25, weight 4/6.
    labels = [0, 1, 1, 1, 1, 0]
    probs = [0.15, 0.15, 1.0, 1.0, 1.0, 1.0]
    expected = 2 / 6 * 0.35 + 4 / 6 * 0.25
    assert expected_calibration_error(labels, probs) == pytest.approx(expected)
    assert expected_calibration_error([0, 1, 0, 1], [0.25] * 4) == pytest.approx(0.25)
    # 0.85 and 1.0 fall in different bins (gaps 0.15 and 1.0), not one (gap |1 - 1.85| / 2).
    assert expected_calibration_error([1, 0], [0.85, 1.0]) == pytest.approx((0.15 + 1.0) / 2)


def test_ece_rejects_probabilities_outside_unit_interval():
    with pytest.raises(ValueError):
        expected_calibration_error([0, 1], [0.2, 1.2])


def test_youden_threshold_separates_a_separable_set_halfway():
    labels = [0, 0, 0, 1, 1, 1]
    probs = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    threshold = choose_threshold(labels, probs)
    assert threshold == pytest.approx(0.5)
    assert sensitivity_specificity(labels, probs, threshold) == (1.0, 1.0)


def test_youden_ties_take_the_lowest_cut():
    # Cuts at 0.2 (sens 1, spec 0.5) and 0.4 (sens 0.5, spec 1) both give J = 0.5.
    labels = [0, 1, 0, 1]
    probs = [0.1, 0.2, 0.3, 0.4]
    threshold = choose_threshold(labels, probs)
    assert threshold == pytest.approx(0.15)
    assert sensitivity_specificity(labels, probs, threshold) == (1.0, 0.5)


def test_youden_threshold_reproduces_the_best_j_on_noisy_data():
    labels, scores = _synthetic(500, 4)
    probs = 1 / (1 + np.exp(-scores))
    threshold = choose_threshold(labels, probs)
    sens, spec = sensitivity_specificity(labels, probs, threshold)
    best_j = max(sum(sensitivity_specificity(labels, probs, t)) - 1 for t in np.unique(probs))
    assert sens + spec - 1 == pytest.approx(best_j)


def test_youden_threshold_needs_both_classes():
    assert math.isnan(choose_threshold([1, 1], [0.2, 0.9]))
    assert all(math.isnan(v) for v in sensitivity_specificity([0, 1], [0.2, 0.9], float("nan")))


def test_sensitivity_specificity_counts_threshold_as_positive():
    labels = [1, 1, 0, 0, 0]
    probs = [0.5, 0.4, 0.5, 0.1, 0.2]
    assert sensitivity_specificity(labels, probs, 0.5) == (0.5, pytest.approx(2 / 3))
    sens, spec = sensitivity_specificity([0, 0], [0.1, 0.9], 0.5)
    assert math.isnan(sens) and spec == 0.5


def test_platt_scaling_recovers_the_scale_and_shift_that_generated_the_labels():
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 2.0, 20_000)
    labels = (rng.random(logits.size) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))).astype(float)
    scale, shift = fit_platt(labels, logits, strength=0.0)
    assert scale == pytest.approx(0.5, abs=0.03) and shift == pytest.approx(-1.0, abs=0.05)
    labels[:100] = np.nan  # unknown labels are left out with their logits
    assert fit_platt(labels, logits, strength=0.0) == pytest.approx((scale, shift), abs=0.02)


def test_platt_scaling_keeps_rankings_or_falls_back_to_the_identity():
    logits = np.linspace(-3, 3, 200)
    assert fit_platt(np.zeros(200), logits) == (1.0, 0.0)  # one class only
    assert fit_platt((logits < 0).astype(float), logits) == (1.0, 0.0)  # would reverse the ranking
    few = np.zeros(200)
    few[[150, 199]] = 1.0  # two positives: the penalty keeps the scale near 1, the shift moves down
    scale, shift = fit_platt(few, logits)
    assert scale > 0 and shift < 0
