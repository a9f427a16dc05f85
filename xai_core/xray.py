"""The decoded radiograph (`XRay`), its de-identified metadata, and the limits and guards every file reader shares.

`imaging.read_xray` is the entry point; `dicom_file` and `raster_file` decode the formats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .errors import XRayError

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # also the Streamlit upload limit
MAX_PIXELS = 50_000_000  # decompression-bomb guard, checked before decoding
MIN_SIDE = 64

READABLE_FORMATS = "DICOM, PNG and JPEG"

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as PIL's "L"

UNRECOGNISED = (
    f"The file is not an image the viewer can read: it reads {READABLE_FORMATS} files. "
    "Check that you chose the image file itself."
)


@dataclass(frozen=True)
class ImageMetadata:
    """Technical, de-identified facts about the image (no patient or study data)."""

    format: str  # "DICOM" | "PNG" | "JPEG"
    rows: int
    columns: int
    modality: str | None = None  # DICOM (0008,0060)
    view_position: str | None = None  # (0018,5101)
    body_part: str | None = None  # (0018,0015)
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column) spacing
    pixel_spacing_source: str | None = None  # "PixelSpacing" | "ImagerPixelSpacing"
    photometric_interpretation: str | None = None  # as stored in the file
    bits_stored: int | None = None  # DICOM BitsStored; for PNG/JPEG the bit depth read
    transfer_syntax: str | None = None  # its name
    number_of_frames: int = 1
    window_center: float | None = None  # the window that produced `XRay.pixels`
    window_width: float | None = None
    window_source: str | None = None  # "VOI LUT" | "window tags" | "full range"
    value_range: tuple[float, float] | None = None  # min/max of the modality values

    def as_dict(self) -> dict:
        """Return the fields as a JSON-safe dict (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


@dataclass(frozen=True, eq=False)
class XRay:
    """A decoded image, ready for display and for the model."""

    pixels: np.ndarray  # float32 (H, W) in [0, 1]: window applied, MONOCHROME1 inverted
    metadata: ImageMetadata
    sha256: str  # of the original bytes
    notices: tuple[str, ...] = ()
    modality_values: np.ndarray | None = None  # greyscale DICOM only, read-only: for the display window



def human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"



@contextmanager
def decoder_errors(message: str) -> Iterator[None]:
    """Turn whatever a third-party decoder raises on bad bytes into XRayError(message).

    PIL and pydicom raise a wide, undocumented range of types on malformed input
    (ValueError, OSError, SyntaxError, struct.error, EOFError, IndexError, KeyError,
    MemoryError, RecursionError...), and the Rust RLE decoder (pylibjpeg-rle)
    panics with pyo3's PanicException, a BaseException. The original exception is
    not chained for display: its text may quote file content.
    """
    try:
        yield
    except XRayError:
        raise
    except Exception:
        raise XRayError(message) from None
    except BaseException as error:
        if type(error).__module__ != "pyo3_runtime":
            raise  # KeyboardInterrupt, SystemExit...
        raise XRayError(message) from None


def check_size(width: int, height: int) -> None:
    """Refuse images too large to decode safely or too small to read, from the declared size."""
    if width * height > MAX_PIXELS:
        raise too_many_pixels(width, height)
    if min(width, height) < MIN_SIDE:
        raise XRayError(
            f"The image is only {width}x{height} pixels; "
            f"at least {MIN_SIDE} pixels on each side are needed."
        )


def too_many_pixels(width: int, height: int) -> XRayError:
    return XRayError(
        f"The image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); "
        f"the largest accepted is {MAX_PIXELS / 1e6:.0f} megapixels. Export a smaller copy."
    )


def luma(rgb: np.ndarray, max_value: float) -> np.ndarray:
    """Grey levels in [0, 1] from an (H, W, 3) RGB array whose full scale is `max_value`."""
    return (rgb.astype(np.float32) @ LUMA) / np.float32(max_value)
