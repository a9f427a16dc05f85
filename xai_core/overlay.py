"""Drawing attention maps over a radiograph: colour maps, legend bands, outlines, PNG export.

Pure numpy/PIL (plus contourpy for outlines and matplotlib's colour tables), so it
can be used and tested without torch or streamlit.

Coordinates: polygons use continuous image coordinates, the same frame as the
radiologist boxes in ``alignment.Box``: the image spans [0, W] x [0, H] and the
centre of pixel (row r, column c) is at (c + 0.5, r + 0.5).

Maps passed in are expected to be normalised to [0, 1] (see ``normalize``) and are
clipped to that range; 1 means "the most attention in this map", not a probability.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import contourpy
import numpy as np
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

# Perceptually uniform maps first (lightness rises monotonically with the value,
# readable in greyscale and by most colour-blind readers), then "hot" and the
# classic "jet" that many Grad-CAM figures use, for comparison with the literature.
COLORMAPS: tuple[str, ...] = ("inferno", "magma", "viridis", "hot", "jet")
DEFAULT_COLORMAP = "inferno"


@dataclass(frozen=True)
class AttentionLevel:
    """A legend band of the normalised map: lower <= value < upper (the top band includes 1)."""

    name: str
    lower: float
    upper: float


# Ordered low to high; attention_level_image returns indices into this tuple.
ATTENTION_LEVELS: tuple[AttentionLevel, ...] = (
    AttentionLevel("low", 0.0, 0.33),
    AttentionLevel("medium", 0.33, 0.66),
    AttentionLevel("high", 0.66, 1.0),
)


@cache
def _lut(colormap: str) -> np.ndarray:
    """The 256x3 uint8 lookup table of one of COLORMAPS.

    Taken from matplotlib rather than hand-copied tables: matplotlib is a pinned
    runtime dependency already (requirements.txt; grad-cam needs it too), its tables
    are the reference definitions of these maps, and importing it here (lazily, once
    per process, about 0.3 s; no pyplot, so no GUI backend) costs less than
    maintaining 5 x 768 copied numbers.
    """
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {COLORMAPS}")
    from matplotlib import colormaps

    rgba = colormaps[colormap](np.linspace(0.0, 1.0, 256))
    lut = np.round(rgba[:, :3] * 255.0).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def normalize(attention: np.ndarray) -> np.ndarray:
    """Min-max scale to float32 [0, 1]; a constant map becomes zeros.

    Non-finite values are left out of the min and max and become 0.
    """
    values = np.asarray(attention, dtype=np.float64)
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    if all_finite:
        low, high = values.min(), values.max()
    elif finite.any():
        low, high = values[finite].min(), values[finite].max()
    else:
        return np.zeros(values.shape, dtype=np.float32)
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    scaled = values - low
    scaled /= high - low
    if not all_finite:
        scaled[~finite] = 0.0
    return np.clip(scaled, 0.0, 1.0, out=scaled).astype(np.float32)


def _unit(map01: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(np.asarray(map01, dtype=np.float32), nan=0.0), 0.0, 1.0)


def _lut_index(unit_map: np.ndarray) -> np.ndarray:
    return (unit_map * 255.0 + 0.5).astype(np.uint8)


def colorize(map01: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """uint8 (H, W, 3) colours of a [0, 1] map."""
    return np.take(_lut(colormap), _lut_index(_unit(map01)), axis=0)


def attention_level_image(map01: np.ndarray) -> np.ndarray:
    """uint8 (H, W) index into ATTENTION_LEVELS of each pixel: 0 low, 1 medium, 2 high."""
    lower_bounds = [level.lower for level in ATTENTION_LEVELS[1:]]
    return np.digitize(_unit(map01), lower_bounds).astype(np.uint8)


def legend_entries(colormap: str = DEFAULT_COLORMAP) -> list[tuple[str, str, str]]:
    """(name, range text, "#rrggbb") per band, high first as on a colour bar.

    The colour is the colormap at the band's midpoint. Ranges are fractions of this
    map's own maximum, not probabilities of disease.
    """
    lut = _lut(colormap)
    entries = []
    for index, level in reversed(list(enumerate(ATTENTION_LEVELS))):
        if index == len(ATTENTION_LEVELS) - 1:
            text = f"≥ {level.lower:.2f}"
        elif index == 0:
            text = f"< {level.upper:.2f}"
        else:
            text = f"{level.lower:.2f}–{level.upper:.2f}"
        red, green, blue = (int(v) for v in lut[round((level.lower + level.upper) / 2 * 255)])
        entries.append((level.name, text, f"#{red:02x}{green:02x}{blue:02x}"))
    return entries


def threshold_mask(map01: np.ndarray, threshold: float) -> np.ndarray:
    """bool (H, W): where the map reaches the threshold."""
    return _unit(map01) >= threshold


def _shoelace_area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


MIN_OUTLINE_AREA_PX = 16.0  # contours enclosing less are specks of an upsampled map


def outline_polygons(
    map01: np.ndarray, threshold: float, *, min_area_px: float = MIN_OUTLINE_AREA_PX
) -> list[np.ndarray]:
    """Closed contours of the region map01 >= threshold, as (N, 2) float (x, y) arrays.

    Each polygon's last point repeats its first. Holes in a region give their own
    contours. Contours enclosing less than min_area_px square pixels are dropped
    (specks of an upsampled map, not regions a reader should look at). The map is
    padded with one pixel of zeros so that regions touching the border close along
    the image edge.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"outline threshold must be in (0, 1], got {threshold}")
    padded = np.pad(_unit(map01).astype(np.float64), 1, constant_values=0.0)
    generator = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate)
    # Padded index (i + 1) is pixel i, whose centre is at i + 0.5: shift by -0.5.
    polygons = [np.asarray(line, dtype=np.float64) - 0.5 for line in generator.lines(threshold)]
    return [polygon for polygon in polygons if _shoelace_area(polygon) >= min_area_px]


def _check_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, the image has {shape}")
    return array


def outline_width(shape: tuple[int, int]) -> int:
    """Line width in pixels: 2 on a 512 px image, growing so it stays visible when a
    2000 px image is shown scaled down on the page."""
    return max(2, round(max(shape) / 400))


def _blend_into(planes: np.ndarray, colours: Iterable, alpha: np.ndarray) -> None:
    """planes[c] <- planes[c] + alpha * (colours[c] - planes[c]), in place; a colour is
    an (H, W) array or a scalar."""
    for plane, colour in zip(planes, colours):
        delta = colour - plane
        delta *= alpha
        plane += delta


def render_overlay(
    grey01: np.ndarray,
    *,
    heatmap: np.ndarray | None = None,
    saliency: np.ndarray | None = None,
    outline_map: np.ndarray | None = None,
    opacity: float = 0.45,
    colormap: str = DEFAULT_COLORMAP,
    threshold: float = 0.5,
    outline_color: tuple[int, int, int] = (0, 255, 255),
    saliency_color: tuple[int, int, int] = (0, 255, 0),
) -> np.ndarray:
    """uint8 (H, W, 3): the grey radiograph with the requested layers, bottom to top.

    - heatmap: colormap colours blended with per-pixel alpha = opacity * value. A
      uniform alpha would tint the whole film and hide anatomy where the model does
      not look; scaling alpha by the value leaves zero-attention pixels exactly as
      the radiograph and encodes attention twice (hue and strength), as clinical
      overlays usually do.
    - saliency: one hue (saliency_color, default green, which inferno, magma and hot
      do not contain) blended the same way, so it can be shown with a heatmap.
    - outline_map: contour lines of outline_map >= threshold in outline_color,
      outline_width(shape) px wide.

    All maps must have the image's (H, W) and be normalised to [0, 1] (they are
    clipped). Shape mismatches raise ValueError: they are programming errors.
    """
    grey = np.asarray(grey01, dtype=np.float32)
    if grey.ndim != 2:
        raise ValueError(f"grey image must be 2-D (H, W), got shape {grey.shape}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    shape = grey.shape
    # Planar float32 (3, H, W) in 0..255, blended one channel at a time so that the
    # temporaries are (H, W): about twice as fast as (H, W, 3) arithmetic on 2000 px.
    planes = np.repeat((_unit(grey) * 255.0)[None], 3, axis=0)

    if heatmap is not None:
        attention = _unit(_check_shape("heatmap", heatmap, shape))
        indices, lut = _lut_index(attention), _lut(colormap)
        colours = (np.take(lut[:, channel], indices) for channel in range(3))
        _blend_into(planes, colours, opacity * attention)
    if saliency is not None:
        strength = _unit(_check_shape("saliency", saliency, shape))
        _blend_into(planes, saliency_color, opacity * strength)

    rgb = np.empty((*shape, 3), dtype=np.uint8)
    for channel, plane in enumerate(planes):
        rgb[:, :, channel] = plane + 0.5
    if outline_map is None:
        return rgb
    polygons = outline_polygons(_check_shape("outline_map", outline_map, shape), threshold)
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    width = outline_width(shape)
    for polygon in polygons:
        # PIL addresses pixel (c, r) by integer coordinates: undo the half-pixel offset.
        draw.line((polygon - 0.5).ravel().tolist(), fill=tuple(outline_color), width=width, joint="curve")
    return np.array(image)


def to_png_bytes(rgb: np.ndarray, *, text_metadata: dict[str, str] | None = None) -> bytes:
    """PNG of a uint8 (H, W, 3) or (H, W) image, carrying only the given text chunks."""
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"expected uint8 (H, W, 3) or (H, W), got {array.dtype} {array.shape}")
    info = PngInfo()
    for key, value in (text_metadata or {}).items():
        info.add_text(str(key), str(value))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def to_jpeg_bytes(rgb: np.ndarray, quality: int = 92) -> bytes:
    """JPEG of a uint8 (H, W, 3) image without chroma subsampling (thin coloured outlines stay sharp).

    For the screen only, where it is about 60 times faster to encode than PNG
    (a 1024 px overlay: 5 ms against 340 ms) and a sixth of the size; the
    downloads stay lossless PNG.
    """
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {array.dtype} {array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def display_shape(shape: tuple[int, int], max_side: int = 1024) -> tuple[int, int]:
    """(H, W) scaled down (never up) so that the longer side is at most max_side, aspect kept."""
    height, width = shape
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_grey(grey01: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A [0, 1] float image resized (area-averaged when shrinking) to (H, W), for display."""
    array = np.asarray(grey01, dtype=np.float32)
    if array.shape == tuple(shape):
        return array
    image = Image.fromarray(array, mode="F").resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32)


def saliency_for_display(saliency01: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Gradient saliency scaled so that it reads on a chest film: [0, 1] with its top (100 - percentile)% at 1.

    Min-max scaled gradients put a few extreme pixels at 1 and nearly everything else near 0, which
    vanishes under the blending alpha once the film is shrunk for the screen.
    """
    values = _unit(saliency01)
    top = float(np.percentile(values, percentile))
    return values if top <= 0 else np.minimum(values / np.float32(top), 1.0).astype(np.float32)
