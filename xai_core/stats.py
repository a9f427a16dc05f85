"""Dataset-level statistics of the classifier: AUROC with a bootstrap interval,
calibration, and an operating threshold. numpy only.

Every function takes array-likes of labels and scores. A NaN label means "unknown"
(e.g. the NIH findings of a pediatric image) and the case is left out, together
with its score, everywhere. Known labels must be 0 or 1 and their scores finite.
"""

from __future__ import annotations

import numpy as np

# Bootstrap resamples are drawn in chunks of about this many case indices, which
# bounds memory (~16 MB of int64) whatever n and n_boot are.
_BOOTSTRAP_CHUNK_CASES = 2_000_000


def _labelled(y_true, score) -> tuple[np.ndarray, np.ndarray]:
    """(bool positives, float64 scores) of the cases whose label is known."""
    labels = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(score, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"labels and scores must be 1-D and equally long, got {labels.shape} and {scores.shape}")
    known = ~np.isnan(labels)
    labels, scores = labels[known], scores[known]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0, 1 or NaN (unknown)")
    if not np.isfinite(scores).all():
        raise ValueError("scores of labelled cases must be finite")
    return labels == 1.0, scores


def _tie_groups(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Each case's tie group, numbered in ascending score order, and the number of groups."""
    unique, group = np.unique(scores, return_inverse=True)
    return group, unique.size


def _auroc_from_counts(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """AUROC per row of (rows, groups) case counts per tie group, groups by ascending score.

    This is the Mann-Whitney U with average ranks for ties, divided by n+ * n-: each
    positive scores one per negative ranked below it and one half per negative tied
    with it. Counting per tie group lets a bootstrap resample, which is just a count
    of each case, be scored without sorting it again. NaN where a row lacks a class.
    """
    negatives_below = np.cumsum(negatives, axis=1) - negatives
    wins = (positives * (negatives_below + 0.5 * negatives)).sum(axis=1)
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def auroc(y_true, score) -> float:
    """Area under the ROC curve (ties count one half); NaN unless both classes are present."""
    positive, scores = _labelled(y_true, score)
    group, n_groups = _tie_groups(scores)
    positives = np.bincount(group[positive], minlength=n_groups).astype(np.float64)
    negatives = np.bincount(group[~positive], minlength=n_groups).astype(np.float64)
    return float(_auroc_from_counts(positives[None], negatives[None])[0])


def bootstrap_auroc_ci(
    y_true, score, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC, resampling cases with replacement.

    Resamples that contain a single class are skipped, so slightly fewer than n_boot
    may be used when positives are rare. (NaN, NaN) when the data or every resample
    lack a class. Deterministic for a given seed.
    """
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    positive, scores = _labelled(y_true, score)
    n = scores.size
    if positive.all() or not positive.any():
        return (float("nan"), float("nan"))
    group, n_groups = _tie_groups(scores)
    # Bin index of a case in a resample: 2 * tie group + class.
    bins_of_case = 2 * group + positive
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_CASES // n)
    estimates = []
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        drawn = bins_of_case[rng.integers(0, n, size=(rows, n))]
        drawn += (2 * n_groups * np.arange(rows))[:, None]
        counts = np.bincount(drawn.ravel(), minlength=rows * 2 * n_groups)
        counts = counts.reshape(rows, n_groups, 2).astype(np.float64)
        estimates.append(_auroc_from_counts(counts[:, :, 1], counts[:, :, 0]))
    values = np.concatenate(estimates)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return (float(low), float(high))


def bootstrap_mean_ci(values, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (a hit rate, an energy share, a paired difference), resampling
    cases with replacement. (NaN, NaN) without cases. Deterministic for a given seed."""
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(low), float(high))


def expected_calibration_error(y_true, prob, *, bins: int = 10) -> float:
    """Sum over equal-width probability bins of (bin share of cases) * |observed rate - mean probability|.

    A probability of exactly 1 falls in the last bin. NaN with no labelled cases.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    positive, probs = _labelled(y_true, prob)
    if probs.size == 0:
        return float("nan")
    if ((probs < 0.0) | (probs > 1.0)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    index = np.minimum((probs * bins).astype(np.int64), bins - 1)
    # (n_b / n) * |sum_y / n_b - sum_p / n_b| = |sum_y - sum_p| / n
    observed = np.bincount(index, weights=positive.astype(np.float64), minlength=bins)
    predicted = np.bincount(index, weights=probs, minlength=bins)
    return float(np.abs(observed - predicted).sum() / probs.size)


def fit_platt(y_true, logits, *, strength: float = 0.01, iterations: int = 50) -> tuple[float, float]:
    """Platt scaling: (scale, shift) minimising the mean log loss of sigmoid(scale * logit + shift).

    A small penalty strength * ((scale - 1)^2 + shift^2) keeps a label with few
    positives near the identity. Newton's method with step halving (the loss is
    convex). The map must be increasing, so that every ranking (AUROC, a
    threshold's decisions) is kept: a fit with scale <= 0, or data with one
    class only, gives the identity (1, 0).
    """
    positive, z = _labelled(y_true, logits)
    if z.size == 0 or positive.all() or not positive.any():
        return 1.0, 0.0
    y = positive.astype(np.float64)
    features = np.stack([z, np.ones_like(z)], axis=1)
    prior = np.array([1.0, 0.0])

    def loss(params: np.ndarray) -> float:
        margin = features @ params
        return float(np.mean(np.logaddexp(0.0, margin) - y * margin) + strength * np.sum((params - prior) ** 2))

    params = prior.copy()
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(features @ params)))
        gradient = features.T @ (p - y) / z.size + 2 * strength * (params - prior)
        hessian = (features * (p * (1 - p))[:, None]).T @ features / z.size + 2 * strength * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        current, size = loss(params), 1.0
        while loss(params - size * step) > current and size > 1e-6:
            size /= 2
        params = params - size * step
        if np.abs(size * step).max() < 1e-10:
            break
    scale, shift = float(params[0]), float(params[1])
    return (scale, shift) if scale > 0 else (1.0, 0.0)


def choose_threshold(y_true, prob) -> float:
    """The probability cut maximising Youden's J = sensitivity + specificity - 1.

    Meant for the validation split only; reporting test metrics at a cut tuned on
    the test split would flatter them. The cut is placed halfway between the
    highest probability it classifies negative and the lowest it classifies
    positive, so the same data give the same J again while a new case close to
    the boundary is not decided by one validation case's exact score. When several
    cuts reach the same J the lowest is taken: it is the more sensitive, and for a
    finding a missed positive is the costlier error. NaN unless both classes are present.
    """
    positive, probs = _labelled(y_true, prob)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    cuts = np.unique(probs)  # candidate k: positive iff prob >= cuts[k]
    true_pos = n_pos - np.searchsorted(np.sort(probs[positive]), cuts, side="left")
    true_neg = np.searchsorted(np.sort(probs[~positive]), cuts, side="left")
    # J * n_pos * n_neg in integers, so that equal J values compare equal.
    youden = true_pos * n_neg + true_neg * n_pos - n_pos * n_neg
    best = int(np.argmax(youden))  # first maximum: the lowest cut
    if best == 0:
        return float(cuts[0])
    midpoint = (cuts[best - 1] + cuts[best]) / 2.0
    # Adjacent floats can round the midpoint down onto the negative side.
    return float(midpoint if midpoint > cuts[best - 1] else cuts[best])


def sensitivity_specificity(y_true, prob, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) calling prob >= threshold positive.

    Sensitivity is NaN without positives, specificity NaN without negatives, and
    both are NaN for a NaN threshold (e.g. from choose_threshold on one class).
    """
    positive, probs = _labelled(y_true, prob)
    if np.isnan(threshold):
        return (float("nan"), float("nan"))
    called = probs >= threshold
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    sensitivity = float((called & positive).sum() / n_pos) if n_pos else float("nan")
    specificity = float((~called & ~positive).sum() / n_neg) if n_neg else float("nan")
    return (sensitivity, specificity)
