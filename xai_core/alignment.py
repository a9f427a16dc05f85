"""How well an attention map lines up with a radiologist's bounding box.

Figures per (map, box) pair, all computed on the image's pixel grid:

- pointing game (Zhang et al., ECCV 2016, "Top-down neural attention by
  excitation backprop"): is the map's maximum inside the box?
- IoU and IoBB of the thresholded region ``normalize(map) >= threshold`` with the
  box, and T(IoBB) hits as in Wang et al., CVPR 2017 (ChestX-ray8).
- box coverage (how much of the box the region covers) and energy inside (the
  share of the map's mass that falls in the box).

``random_control`` gives the same figures for maps that know nothing about the
image, the chance level each real figure must be read against.

Coordinates: the image spans [0, W] x [0, H] in pixels, (0, 0) is the top-left
corner of the top-left pixel, and pixel (row r, column c) has its centre at
(c + 0.5, r + 0.5). A pixel belongs to a box when its centre does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from .errors import XRayError
from .overlay import normalize

# Wang et al. report accuracy at T(IoBB) in {0.1, 0.25, 0.5, 0.75, 0.9}; with
# boxes drawn from a coarse CAM the upper ones are rarely met, so we keep the lower three.
IOBB_THRESHOLDS: tuple[float, ...] = (0.1, 0.25, 0.5)


@dataclass(frozen=True)
class Box:
    """A radiologist's box in the image's pixels: (x, y) is the top-left corner."""

    x: float
    y: float
    w: float
    h: float

    def __post_init__(self) -> None:
        values = (self.x, self.y, self.w, self.h)
        if not all(math.isfinite(v) for v in values) or self.w <= 0 or self.h <= 0:
            raise XRayError(
                "A finding box needs finite coordinates and a positive width and height "
                f"(got x={self.x}, y={self.y}, w={self.w}, h={self.h})."
            )

    def contains(self, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """Whether points lie in the box, half-open: x <= cx < x + w, y <= cy < y + h.

        Half-open so that boxes tiling the image claim each pixel once.
        """
        return (self.x <= cx) & (cx < self.x + self.w) & (self.y <= cy) & (cy < self.y + self.h)

    def distance(self, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """Euclidean distance from points to the (closed) box; 0 inside."""
        dx = np.maximum(np.maximum(self.x - cx, cx - (self.x + self.w)), 0.0)
        dy = np.maximum(np.maximum(self.y - cy, cy - (self.y + self.h)), 0.0)
        return np.hypot(dx, dy)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """bool (H, W): the pixels whose centres are inside the box."""
        cx, cy = _pixel_centres(shape)
        return self.contains(cx, cy)

    def area_fraction(self, shape: tuple[int, int]) -> float:
        """Share of the image's pixels inside the box (parts off the image do not count)."""
        return float(self.mask(shape).mean())


@dataclass(frozen=True)
class Alignment:
    """Agreement of one map with one box (or, from random_control, chance levels).

    pointing_hit: 1.0 if the map's maximum is in the box (within tolerance), else 0.0;
        a mean when averaged.
    iou: |region ∩ box| / |region ∪ box|.
    iobb: |region ∩ box| / |region|. Wang et al. divide the intersection by the
        area of the *detected* box (their "intersection over the detected B-Box",
        a precision); they draw boxes around the heatmap's thresholded blobs, here
        the thresholded region itself is the detection. An empty region scores 0.
    box_coverage: |region ∩ box| / |box| (a recall; high for a region flooding the image).
    iobb_hits: {T: 1.0 if iobb > T else 0.0} for T in IOBB_THRESHOLDS (Wang et al.
        count a localisation correct when IoBB > T(IoBB), strictly); means when averaged.
    energy_inside: share of the map's mass (negative values clipped) inside the box.
    """

    pointing_hit: float
    iou: float
    iobb: float
    box_coverage: float
    iobb_hits: dict[float, float]
    energy_inside: float


def _pixel_centres(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Broadcastable (1, W) x-centres and (H, 1) y-centres."""
    height, width = shape
    return (np.arange(width) + 0.5)[None, :], (np.arange(height) + 0.5)[:, None]


def _pointing_region(shape: tuple[int, int], box: Box, tolerance_px: float) -> np.ndarray:
    if tolerance_px < 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px}")
    cx, cy = _pixel_centres(shape)
    inside = box.contains(cx, cy)
    return inside | (box.distance(cx, cy) <= tolerance_px) if tolerance_px > 0 else inside


def _as_map(attention: np.ndarray) -> np.ndarray:
    values = np.asarray(attention, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a non-empty 2-D map, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("attention map contains NaN or infinite values")
    return values


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"region threshold must be in (0, 1], got {threshold}")


def _box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    mask = box.mask(shape)
    if not mask.any():
        raise XRayError(
            f"The finding box (x={box.x}, y={box.y}, w={box.w}, h={box.h}) lies outside the "
            f"{shape[1]}x{shape[0]} image; it probably belongs to another image or image size."
        )
    return mask


def pointing_game(attention: np.ndarray, box: Box, *, tolerance_px: float = 0.0) -> bool:
    """Whether the map's maximum lies in the box.

    tolerance_px: also a hit when the maximum's pixel centre is within this distance
    of the box. Zhang et al. use 15 px on 224 px inputs; the default 0 is strict.
    Ties: when several pixels share the maximum it is a hit only if all of them are
    in the (tolerance-widened) box, so a flat map, which singles out nothing, misses
    unless the box covers the whole image.
    """
    values = _as_map(attention)
    region = _pointing_region(values.shape, box, tolerance_px)
    return bool(region[values == values.max()].all())


def _figures(values: np.ndarray, box_mask: np.ndarray, hit_region: np.ndarray, threshold: float) -> Alignment:
    region = normalize(values) >= threshold
    intersection = int(np.count_nonzero(region & box_mask))
    region_area = int(np.count_nonzero(region))
    box_area = int(np.count_nonzero(box_mask))
    iobb = intersection / region_area if region_area else 0.0
    mass = np.maximum(values, 0.0)
    total = float(mass.sum())
    # A map without mass prefers no place: give it the uniform map's share.
    energy = float(mass[box_mask].sum()) / total if total > 0 else box_area / values.size
    return Alignment(
        pointing_hit=float(hit_region[values == values.max()].all()),
        iou=intersection / (region_area + box_area - intersection),
        iobb=iobb,
        box_coverage=intersection / box_area,
        iobb_hits={t: float(iobb > t) for t in IOBB_THRESHOLDS},
        energy_inside=energy,
    )


def align(
    attention: np.ndarray, box: Box, *, threshold: float = 0.5, tolerance_px: float = 0.0
) -> Alignment:
    """All figures for one map and one box.

    attention: raw or min-max normalised map of the image's (H, W). The region is
    normalize(attention) >= threshold either way. energy_inside uses the map as
    given, which for a CAM (non-negative, zero somewhere) is the same for both.
    Raises XRayError if the box does not overlap the image.
    """
    values = _as_map(attention)
    _check_threshold(threshold)
    box_mask = _box_mask(values.shape, box)
    hit_region = _pointing_region(values.shape, box, tolerance_px)
    return _figures(values, box_mask, hit_region, threshold)


def _upsample_weights(size: int, grid: int) -> np.ndarray:
    """(size, grid) bilinear weights with half-pixel centres, as torch's
    interpolate(align_corners=False) or cv2.resize upsample a CAM."""
    position = np.clip((np.arange(size) + 0.5) * grid / size - 0.5, 0.0, grid - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, grid - 1)
    weights = np.zeros((size, grid))
    rows = np.arange(size)
    np.add.at(weights, (rows, low), 1.0 - (position - low))
    np.add.at(weights, (rows, high), position - low)
    return weights


def _mean(alignments: list[Alignment]) -> Alignment:
    return Alignment(
        pointing_hit=float(np.mean([a.pointing_hit for a in alignments])),
        iou=float(np.mean([a.iou for a in alignments])),
        iobb=float(np.mean([a.iobb for a in alignments])),
        box_coverage=float(np.mean([a.box_coverage for a in alignments])),
        iobb_hits={t: float(np.mean([a.iobb_hits[t] for a in alignments])) for t in IOBB_THRESHOLDS},
        energy_inside=float(np.mean([a.energy_inside for a in alignments])),
    )


def random_control(
    shape: tuple[int, int],
    box: Box,
    *,
    threshold: float = 0.5,
    tolerance_px: float = 0.0,
    draws: int = 200,
    seed: int = 0,
    grid: int = 7,
) -> Alignment:
    """Chance levels of the figures for this box on an image of this shape.

    pointing_hit is exact: the share of pixels a uniformly random maximum could
    fall on and hit (the box's area fraction when tolerance_px is 0).
    The other figures are means over `draws` random smooth maps: uniform noise on a
    grid x grid lattice upsampled bilinearly to the image, like a CAM from a 7x7
    feature map (use the model's own grid: ModelCard.map_grid), so the random
    regions have blob sizes like real ones. Deterministic for a given seed.
    Cost grows with H x W x draws: about 1.5 s for 512 x 512 and 200 draws on two
    CPU cores; cache it per (shape, box) when showing it on a page.
    """
    if draws < 1 or grid < 1:
        raise ValueError(f"draws and grid must be >= 1, got draws={draws}, grid={grid}")
    _check_threshold(threshold)
    box_mask = _box_mask(shape, box)
    hit_region = _pointing_region(shape, box, tolerance_px)
    rows, cols = _upsample_weights(shape[0], grid), _upsample_weights(shape[1], grid)
    rng = np.random.default_rng(seed)
    samples = [
        _figures(rows @ rng.random((grid, grid)) @ cols.T, box_mask, hit_region, threshold)
        for _ in range(draws)
    ]
    return replace(_mean(samples), pointing_hit=float(hit_region.mean()))


def summarise(alignments: list[Alignment]) -> dict[str, object]:
    """Means of each figure over cases, with their count n, for a report table.

    {"n": int, "pointing_hit": float, "iou": ..., "iobb": ..., "box_coverage": ...,
    "energy_inside": ..., "iobb_hits": {T: share of cases with IoBB > T}}.
    With no cases n is 0 and every mean is NaN.
    """
    if not alignments:
        nan = float("nan")
        empty = Alignment(nan, nan, nan, nan, {t: nan for t in IOBB_THRESHOLDS}, nan)
        return {"n": 0, **asdict(empty)}
    return {"n": len(alignments), **asdict(_mean(alignments))}
