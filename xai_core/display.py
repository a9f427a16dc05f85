"""What the viewer's image pane is sent, and the overlay it offers for download: pictures at display size, the
colour table, the 14 raw maps, the line width and colours of the layers. All the pixel work the page asks for is
here; the page lays it out.
"""

from __future__ import annotations

import base64
from collections.abc import Collection

import numpy as np

from .explanation import Explanation
from .overlay import (
    MIN_OUTLINE_AREA_PX,
    colorize,
    display_shape,
    outline_width,
    render_overlay,
    resize_grey,
    to_png_bytes,
)

HEATMAP, SALIENCY, OUTLINE = "heatmap", "saliency", "outline"  # the layers, as app/image_pair/ names them
SALIENCY_RGB, OUTLINE_RGB = (0, 255, 0), (0, 255, 255)  # render_overlay's colours for them


def css_colour(rgb: tuple[int, int, int]) -> str:
    """"#rrggbb", for the legend beside the image pane."""
    return "#" + "".join(f"{channel:02x}" for channel in rgb)


def display_grey(pixels: np.ndarray) -> np.ndarray:
    """The radiograph at display size (longer side at most 1024 px, area-averaged), [0, 1]."""
    return resize_grey(pixels, display_shape(pixels.shape))


def radiograph_png(grey: np.ndarray) -> bytes:
    """The radiograph at display size as an 8-bit grey PNG."""
    return to_png_bytes(render_overlay(grey)[:, :, 0])


def saliency_png(gradients: np.ndarray, shape: tuple[int, int]) -> bytes:
    """Display-scaled gradient saliency ([0, 1]) resized to `shape` as an 8-bit grey PNG: the pane colours it."""
    return to_png_bytes(np.round(resize_grey(gradients, shape) * 255).astype(np.uint8))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def colour_table(colormap: str) -> str:
    """The colour map's 256 RGB entries (uint8, base64): the pane colours the normalised maps with it."""
    return base64.b64encode(colorize(np.linspace(0, 1, 256, dtype=np.float32), colormap).tobytes()).decode()


def raw_map_grids(explanation: Explanation) -> dict[str, dict]:
    """Every label's raw (unnormalised) map as the model made it: its grid size and little-endian float32 values
    (base64); the pane scales, resizes and colours them itself."""
    rows, cols = explanation.raw_cams.shape[1:]
    return {label: {"rows": rows, "cols": cols, "raw": base64.b64encode(cam.astype("<f4").tobytes()).decode()}
            for label, cam in zip(explanation.labels, explanation.raw_cams, strict=True)}


def pane_overlay(shape: tuple[int, int], colormap: str) -> dict:
    """How the pane draws the layers over a picture of `shape`: colour table, outline width and colours."""
    return {"colormap": colormap, "lut": colour_table(colormap), "outline_colour": list(OUTLINE_RGB),
            "outline_width": outline_width(shape), "outline_min_area": MIN_OUTLINE_AREA_PX,
            "saliency_colour": list(SALIENCY_RGB)}


def explanation_overlay(grey: np.ndarray, explanation: Explanation, label: str, layers: Collection[str], *,
                        saliency: np.ndarray | None = None, opacity: float, colormap: str,
                        threshold: float) -> np.ndarray:
    """uint8 (H, W, 3): `grey` with the label's `layers` (HEATMAP, SALIENCY, OUTLINE) drawn at its size; saliency is
    the display-scaled gradients (overlay.saliency_for_display) at any size, needed when SALIENCY is drawn."""
    attention = explanation.normalized_map(label, grey.shape)
    return render_overlay(
        grey,
        heatmap=attention if HEATMAP in layers else None,
        saliency=resize_grey(saliency, grey.shape) if SALIENCY in layers and saliency is not None else None,
        outline_map=attention if OUTLINE in layers else None,
        opacity=opacity,
        colormap=colormap,
        threshold=threshold,
        outline_color=OUTLINE_RGB,
        saliency_color=SALIENCY_RGB,
    )
