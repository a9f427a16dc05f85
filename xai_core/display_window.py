"""The display window: a viewing aid that changes what is drawn, never what the model sees.

The model reads `XRay.pixels`, the file's own rendering (its VOI LUT or window for a
DICOM, the stored pixels otherwise; see preprocessing.InputSpec). A reader who wants
another window gets it from `DisplayValues`: the image's values at display size, coded
as 16-bit integers, with the file's window and presets in the image's own units
(modality values for a greyscale DICOM, pixel values otherwise). The page's image pane
(app/image_pair/) applies a window to these codes in the browser, as `render` does here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .imaging import XRay
from .overlay import resize_grey

CODES = 65535  # the largest 16-bit code
# Radiographs carry no Hounsfield scale: each preset spans brightness percentiles of the film
# itself (0 = its darkest pixel, 100 = its brightest), so it is a starting point, not a calibrated window.
PRESET_PERCENTILES: dict[str, tuple[float, float]] = {
    "Lung": (2.0, 60.0),  # the darker part of the film: lung fields, with more contrast inside them
    "Mediastinum": (35.0, 99.5),  # the brighter part: heart, mediastinum, spine, below the diaphragm
    "Bone": (55.0, 99.9),  # the brightest part, narrow: ribs, clavicles, spine
    "Soft tissue": (0.5, 85.0),  # wide and low: chest wall, skin line, breasts
}


@dataclass(frozen=True)
class Window:
    """A linear window (DICOM LINEAR_EXACT): center - width/2 .. center + width/2 -> black .. white."""

    center: float
    width: float

    def as_list(self) -> list[float]:
        return [self.center, self.width]


@dataclass(frozen=True, eq=False)
class DisplayValues:
    """The image's values at display size, as 16-bit codes: value = low + code * (high - low) / CODES."""

    codes: np.ndarray  # uint16 (H, W)
    low: float
    high: float
    units: str  # "modality values" (greyscale DICOM) or "pixel values"
    inverted: bool  # MONOCHROME1: higher values are drawn darker
    file_window: Window | None  # the file's own linear window; None where the file's rendering is not one (VOI LUT)
    presets: dict[str, Window]

    @property
    def step(self) -> float:
        """The value of one code."""
        return (self.high - self.low) / CODES

    def values(self) -> np.ndarray:
        return self.low + self.codes.astype(np.float32) * np.float32(self.step)

    def render(self, window: Window, *, invert: bool = False) -> np.ndarray:
        """The display grey in [0, 1] with `window` (MONOCHROME1 films inverted, then the reader's invert)."""
        grey = np.clip((self.values() - window.center) / max(window.width, 1e-12) + 0.5, 0.0, 1.0)
        if self.inverted != invert:
            grey = 1.0 - grey
        return grey.astype(np.float32)

    def codes_png(self) -> bytes:
        """The codes as a lossless RGB PNG: red the high byte, green the low byte (browsers decode PNGs to 8 bits)."""
        rgb = np.zeros((*self.codes.shape, 3), dtype=np.uint8)
        rgb[..., 0] = self.codes >> 8
        rgb[..., 1] = self.codes & 0xFF
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()

    def as_dict(self) -> dict:
        """What the browser needs besides the codes picture."""
        return {"low": self.low, "high": self.high, "units": self.units, "inverted": self.inverted,
                "file_window": None if self.file_window is None else self.file_window.as_list(),
                "presets": {name: window.as_list() for name, window in self.presets.items()}}


def display_values(xray: XRay, shape: tuple[int, int]) -> DisplayValues:
    """The values a reader can window, resized (area-averaged) to `shape`."""
    metadata = xray.metadata
    if xray.modality_values is not None:
        values, units = resize_grey(xray.modality_values, shape), "modality values"
        inverted = metadata.photometric_interpretation == "MONOCHROME1"
        linear = metadata.window_source != "VOI LUT" and metadata.window_center is not None
        file_window = Window(metadata.window_center, metadata.window_width) if linear else None
    else:
        full_scale = float(2 ** (metadata.bits_stored or 8) - 1)
        values, units, inverted = resize_grey(xray.pixels, shape) * np.float32(full_scale), "pixel values", False
        file_window = Window(full_scale / 2, full_scale)  # the stored pixels as they are
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1.0
    codes = np.rint((values - low) * (CODES / (high - low))).clip(0, CODES).astype(np.uint16)
    return DisplayValues(codes, low, high, units, inverted, file_window, window_presets(values, inverted))


def window_presets(values: np.ndarray, inverted: bool) -> dict[str, Window]:
    """Lung, mediastinum, bone and soft tissue windows from the film's own brightness percentiles."""
    presets, sample = {}, values[::2, ::2]  # a quarter of the pixels gives the same percentiles, 4 times sooner
    for name, (darkest, brightest) in PRESET_PERCENTILES.items():
        if inverted:  # brighter on screen is a lower value
            darkest, brightest = 100.0 - darkest, 100.0 - brightest
        one, other = np.percentile(sample, [darkest, brightest])
        presets[name] = Window(float(one + other) / 2, max(float(abs(other - one)), 1e-6))
    return presets
