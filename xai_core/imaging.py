"""Read a radiograph (DICOM, PNG or JPEG) into a de-identified, display-ready `XRay`.

Everything happens in memory: uploads are never written to disk. Only technical
DICOM tags are read (see `ImageMetadata`); patient, study and institution tags
are never accessed, so they cannot reach the page, the JSON download or a log.
Every problem a user can cause is raised as `XRayError` with a short message
that can be shown as is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import re
import stat
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pydicom
from PIL import ExifTags, Image, ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.filereader import read_dataset, read_preamble
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from .errors import XRayError

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # also the Streamlit upload limit
MAX_PIXELS = 50_000_000  # decompression-bomb guard, checked before decoding
MIN_SIDE = 64

READABLE_FORMATS = "DICOM, PNG and JPEG"

# A deflated DICOM dataset may not inflate to more than this (a deflate bomb
# expands about 1000-fold; pydicom inflates the whole dataset in one go).
_MAX_INFLATED_BYTES = 8 * MAX_UPLOAD_BYTES
# libjpeg decodes every scan of a progressive JPEG over the whole image, so a
# small file repeating a scan thousands of times takes hours. Encoders write
# about 10 scans.
_MAX_JPEG_SCANS = 100

_GREY_INTERPRETATIONS = ("MONOCHROME1", "MONOCHROME2")
_COLOUR_INTERPRETATIONS = (
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_ICT",
    "YBR_RCT",
    "PALETTE COLOR",
)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grey PNG
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as PIL's "L"

_READ_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))
_OTHER_MAGIC = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
)
# (7FE0,0010) Pixel Data as stored little- and big-endian.
_PIXEL_DATA_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
# A DICOM file without the 128-byte preamble starts with a group 0x0002 or 0x0008 tag.
_BARE_DICOM_STARTS = (b"\x02\x00", b"\x08\x00")

_UNRECOGNISED = (
    f"The file is not an image the viewer can read: it reads {READABLE_FORMATS} files. "
    "Check that you chose the image file itself."
)
_DICOM_DAMAGED = (
    "The DICOM file is damaged or incomplete and cannot be read. "
    "Export it again from the PACS or the modality."
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


def read_xray(source: bytes | str | os.PathLike, *, max_bytes: int = MAX_UPLOAD_BYTES) -> XRay:
    """Decode `source` (the file's bytes, or a path to it) into an `XRay`.

    The format is recognised from the content, never from the file name.
    Raises `XRayError` for anything wrong with the file.
    """
    data = _load_bytes(source, max_bytes)
    sha256 = hashlib.sha256(data).hexdigest()
    image_format = _sniff_format(data)
    if image_format == "DICOM":
        return _read_dicom(data, sha256)
    return _read_raster(data, image_format, sha256)


# --- bytes and format ---------------------------------------------------------------


def _load_bytes(source: bytes | str | os.PathLike, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(source, max_bytes)
    else:
        raise TypeError(f"read_xray expects bytes or a path, not {type(source).__name__}")
    if not data:
        raise XRayError("The file is empty. Choose the image file again.")
    if len(data) > max_bytes:
        raise _too_many_bytes(len(data), max_bytes)
    return data


def _read_path(path: str | os.PathLike, max_bytes: int) -> bytes:
    """Read a file, checking its size before reading. Messages never name the path
    (file names can contain patient names)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise XRayError("The path is not a file (it may be a folder).")
        if info.st_size > max_bytes:
            raise _too_many_bytes(info.st_size, max_bytes)
        with open(path, "rb") as file:
            return file.read(max_bytes + 1)  # +1: a file that grew is still caught
    except (FileNotFoundError, NotADirectoryError):
        raise XRayError("File not found.") from None
    except OSError:
        raise XRayError("The file could not be read; check that it is accessible.") from None


def _too_many_bytes(size: int, max_bytes: int) -> XRayError:
    return XRayError(
        f"The file is {_human_size(size)}; the largest accepted is {_human_size(max_bytes)}. "
        "Export a smaller copy of the image."
    )


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"


def _sniff_format(data: bytes) -> str:
    """Return "PNG", "JPEG" or "DICOM" from the magic numbers.

    "DICOM" is also returned for a file without preamble that starts like a
    DICOM data set; `_read_dicom` confirms it.
    """
    for magic, name in _READ_MAGIC:
        if data.startswith(magic):
            return name
    if data[128:132] == b"DICM" or data[:2] in _BARE_DICOM_STARTS:
        return "DICOM"
    other = next((name for magic, name in _OTHER_MAGIC if data.startswith(magic)), None)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        other = "WebP"
    if other:
        raise XRayError(
            f"This is a {other} file. The viewer reads {READABLE_FORMATS} images: "
            "export the image in one of these formats."
        )
    raise XRayError(_UNRECOGNISED)


@contextmanager
def _decoder_errors(message: str) -> Iterator[None]:
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


def _check_size(width: int, height: int) -> None:
    """Refuse images too large to decode safely or too small to read, from the declared size."""
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(width, height)
    if min(width, height) < MIN_SIDE:
        raise XRayError(
            f"The image is only {width}x{height} pixels; "
            f"at least {MIN_SIDE} pixels on each side are needed."
        )


def _too_many_pixels(width: int, height: int) -> XRayError:
    return XRayError(
        f"The image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); "
        f"the largest accepted is {MAX_PIXELS / 1e6:.0f} megapixels. Export a smaller copy."
    )


def _luma(rgb: np.ndarray, max_value: float) -> np.ndarray:
    """Grey levels in [0, 1] from an (H, W, 3) RGB array whose full scale is `max_value`."""
    return (rgb.astype(np.float32) @ _LUMA) / np.float32(max_value)


# --- PNG and JPEG ---------------------------------------------------------------------


def _read_raster(data: bytes, image_format: str, sha256: str) -> XRay:
    damaged = (
        f"The {image_format} file is damaged or incomplete and cannot be opened. "
        "Export or download it again."
    )
    with _decoder_errors(damaged):
        try:
            image = Image.open(io.BytesIO(data), formats=[image_format])  # reads the header only
        except Image.DecompressionBombError:  # PIL's own limit, far above ours
            raise XRayError(
                f"The image is larger than the {MAX_PIXELS / 1e6:.0f} megapixels accepted. "
                "Export a smaller copy."
            ) from None
        width, height = image.size
    _check_size(width, height)  # before anything is decoded
    if image_format == "JPEG" and data.count(b"\xff\xda") > _MAX_JPEG_SCANS:  # SOS markers
        raise XRayError(
            f"The JPEG file holds more than {_MAX_JPEG_SCANS} scans, far more than an image needs; "
            "it is refused as unsafe to open. Export or download it again."
        )
    with _decoder_errors(damaged):
        frames = getattr(image, "n_frames", 1)  # animated PNG, multi-picture JPEG (MPO)
        notices = [f"Multi-frame {image_format}: showing frame 1 of {frames}."] if frames > 1 else []
        if image.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9):
            notices.append("The image was rotated as its EXIF orientation tag specifies.")
        image = ImageOps.exif_transpose(image)
        pixels, bits, is_colour = _raster_to_grey(image)
    if is_colour:
        notices.append("Colour image: converted to greyscale.")
    metadata = ImageMetadata(
        format=image_format,
        rows=pixels.shape[0],
        columns=pixels.shape[1],
        bits_stored=bits,
        number_of_frames=frames,
    )
    return XRay(pixels=pixels, metadata=metadata, sha256=sha256, notices=tuple(notices))


def _raster_to_grey(image: Image.Image) -> tuple[np.ndarray, int, bool]:
    """Return (grey pixels in [0, 1], bit depth, whether the content was in colour).

    Alpha is dropped (not composited). Images stored as colour or palette whose
    channels are all equal are grey and are not reported as colour.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image, dtype=np.float32) / np.float32(65535), 16, False
    bits = 1 if image.mode == "1" else 8
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32) / np.float32(255), bits, False
    rgb = np.asarray(image.convert("RGB"))
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return rgb[..., 0].astype(np.float32) / np.float32(255), bits, False
    return _luma(rgb, 255), bits, True


# --- DICOM ------------------------------------------------------------------------------


def _read_dicom(data: bytes, sha256: str) -> XRay:
    has_preamble = data[128:132] == b"DICM"
    # Without the preamble the bytes only looked like DICOM: failing to parse
    # means "not recognised" rather than "damaged DICOM".
    with _decoder_errors(_DICOM_DAMAGED if has_preamble else _UNRECOGNISED):
        _refuse_deflate_bomb(data)
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if not has_preamble and "PixelData" not in ds and "SOPClassUID" not in ds:
            raise XRayError(_UNRECOGNISED)
    with _decoder_errors(_DICOM_DAMAGED):
        if "PixelData" not in ds:
            _refuse_without_pixel_data(ds, data)
        transfer_syntax = _transfer_syntax(ds)
        interpretation = _code_string(ds.get("PhotometricInterpretation")) or ""
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = _number_of_frames(ds)
        _check_size(columns, rows)
        if interpretation not in _GREY_INTERPRETATIONS + _COLOUR_INTERPRETATIONS:
            raise XRayError(
                f"This DICOM image uses the photometric interpretation "
                f"{interpretation or 'unknown'}, which the viewer does not support. It reads "
                "MONOCHROME1, MONOCHROME2, RGB, YBR and PALETTE COLOR images."
            )
        _require_decoder(transfer_syntax)
        _refuse_oversized_codestream(ds, transfer_syntax, frames)
    with _decoder_errors(
        f"The DICOM image ({transfer_syntax.name}) could not be decoded: the file may be "
        "damaged or incomplete. Export it again, uncompressed if possible."
    ):
        stored = pixel_array(ds, index=0)  # the first frame only
        is_rgb = interpretation in _COLOUR_INTERPRETATIONS and interpretation != "PALETTE COLOR"
        if stored.shape != ((rows, columns, 3) if is_rgb else (rows, columns)):
            raise XRayError(_DICOM_DAMAGED)
        notices = [f"Multi-frame DICOM: showing frame 1 of {frames}."] if frames > 1 else []
        if interpretation in _GREY_INTERPRETATIONS:
            pixels, modality_values, window, window_notices = _grey_dicom(ds, stored, interpretation)
            notices += window_notices
        else:
            pixels, modality_values, window = _colour_dicom(ds, stored), None, {}
            notices.append(f"Colour DICOM image ({interpretation}): converted to greyscale.")
        spacing, spacing_source = _pixel_spacing(ds)
        metadata = ImageMetadata(
            format="DICOM",
            rows=rows,
            columns=columns,
            modality=_code_string(ds.get("Modality")),
            view_position=_code_string(ds.get("ViewPosition")),
            body_part=_code_string(ds.get("BodyPartExamined")),
            pixel_spacing_mm=spacing,
            pixel_spacing_source=spacing_source,
            photometric_interpretation=interpretation,
            bits_stored=int(ds.BitsStored),
            transfer_syntax=transfer_syntax.name,
            number_of_frames=frames,
            **window,
        )
    return XRay(
        pixels=pixels,
        metadata=metadata,
        sha256=sha256,
        notices=tuple(notices),
        modality_values=modality_values,
    )


def _refuse_deflate_bomb(data: bytes) -> None:
    """Measure, in bounded memory, how far a deflated data set inflates.

    pydicom inflates a Deflated Explicit VR Little Endian data set in a single
    call with no limit, so a tiny upload could otherwise exhaust memory.
    """
    stream = io.BytesIO(data)
    read_preamble(stream, force=True)
    file_meta = read_dataset(
        stream, is_implicit_VR=False, is_little_endian=True, stop_when=lambda tag, *_: tag.group != 2
    )
    if file_meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, inflated = data[stream.tell() :], 0
    while pending and not inflater.eof:
        inflated += len(inflater.decompress(pending, 1 << 20))
        pending = inflater.unconsumed_tail
        if inflated > _MAX_INFLATED_BYTES:
            raise XRayError(
                "This compressed (deflated) DICOM file expands to more than "
                f"{_human_size(_MAX_INFLATED_BYTES)}; it is refused as unsafe to open."
            )


def _refuse_without_pixel_data(ds: Dataset, data: bytes) -> None:
    """Explain a missing image: a non-image object (report, PDF, plan) or an image object cut short.

    pydicom silently drops a Pixel Data element that the end of the file cuts
    short, so a truncated file looks like one without pixel data; a file cut
    within or just after its file meta has an empty data set.
    """
    kind = _sop_class_name(ds)
    if not ds or "Image Storage" in kind or any(tag in data for tag in _PIXEL_DATA_TAG_BYTES):
        should = f" although its type ({kind}) should have it" if kind != "unknown" else ""
        raise XRayError(
            f"This DICOM file contains no image data{should}: "
            f"it is probably damaged or incomplete. Export it again from the PACS or the modality."
        )
    raise XRayError(
        f"This DICOM file contains no image (its type is {kind}). "
        "Choose the DICOM file of the radiograph itself."
    )


def _transfer_syntax(ds: Dataset) -> UID:
    """The data set's transfer syntax; for a file without file meta, the encoding pydicom detected."""
    if "TransferSyntaxUID" not in ds.file_meta:
        is_implicit, is_little_endian = ds.original_encoding
        if is_implicit:
            guessed = ImplicitVRLittleEndian
        else:
            guessed = ExplicitVRLittleEndian if is_little_endian else ExplicitVRBigEndian
        ds.file_meta = FileMetaDataset(ds.file_meta)
        ds.file_meta.TransferSyntaxUID = guessed
    return UID(str(ds.file_meta.TransferSyntaxUID))


def _require_decoder(transfer_syntax: UID) -> None:
    try:
        available = transfer_syntax.is_transfer_syntax and get_decoder(transfer_syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        name = transfer_syntax.name if transfer_syntax.is_valid else "an unknown encoding"
        raise XRayError(
            f"The DICOM image is stored as {name}, which the viewer cannot decode. "
            "Export it uncompressed or as JPEG 2000."
        )


def _refuse_oversized_codestream(ds: Dataset, transfer_syntax: UID, frames: int) -> None:
    """Check the size declared inside a compressed first frame, before decoding it.

    JPEG and JPEG 2000 decoders allocate what their codestream declares, which
    need not match the Rows and Columns already checked.
    """
    if not transfer_syntax.is_encapsulated:
        return
    frame = next(generate_frames(ds.PixelData, number_of_frames=frames), b"")
    size = _codestream_size(frame)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise _too_many_pixels(*size)


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) declared by a JPEG-family or JPEG 2000 codestream, if found."""
    start = frame.find(b"\xff\x4f\xff\x51", 0, 1024)  # J2K SOC + SIZ, maybe after JP2 boxes
    if start >= 0 and len(frame) >= start + 16:
        width, height, x_offset, y_offset = struct.unpack_from(">4I", frame, start + 8)
        return width - x_offset, height - y_offset
    if not frame.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 9 <= len(frame) and frame[position] == 0xFF:
        marker = frame[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in range(0xC0, 0xD0) and marker not in (0xC4, 0xC8, 0xCC) or marker == 0xF7:
            height, width = struct.unpack_from(">HH", frame, position + 5)  # SOFn or JPEG-LS SOF55
            return width, height
        (length,) = struct.unpack_from(">H", frame, position + 2)
        position += 2 + length
    return None


def _grey_dicom(
    ds: Dataset, stored: np.ndarray, interpretation: str
) -> tuple[np.ndarray, np.ndarray, dict, list[str]]:
    """Modality LUT, then VOI (LUT, window tags or full range), then MONOCHROME1 inversion.

    Returns (pixels, read-only modality values, window fields of ImageMetadata, notices).
    """
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    if not np.isfinite(values).all():  # a rescale slope or intercept of NaN, inf or beyond float32
        raise XRayError(
            "The DICOM file's rescale slope or intercept is not a usable number, so its pixel "
            "values cannot be interpreted. Export it again from the PACS or the modality."
        )
    values.flags.writeable = False
    value_range = (float(values.min()), float(values.max()))
    pixels, window, notices = _dicom_voi(ds, values, value_range)
    if interpretation == "MONOCHROME1":
        pixels = 1.0 - pixels
    return pixels.astype(np.float32, copy=False), values, {**window, "value_range": value_range}, notices


def _dicom_voi(
    ds: Dataset, values: np.ndarray, value_range: tuple[float, float]
) -> tuple[np.ndarray, dict, list[str]]:
    """Apply the file's VOI LUT, else its first window, else the full range of values."""
    notices: list[str] = []
    if ds.get("VOILUTSequence"):
        try:
            lut_output = apply_voi(np.rint(values).astype(np.int64), ds, index=0)
            depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
            pixels = np.clip(lut_output / np.float32(2**depth - 1), 0, 1, dtype=np.float32)
            return pixels, {"window_source": "VOI LUT"}, notices
        except Exception:  # a malformed LUT: the pixels themselves are still readable
            notices.append("The file's VOI LUT could not be applied; another window is used.")
    if "WindowCenter" in ds and "WindowWidth" in ds:
        centers, widths = _as_list(ds.WindowCenter), _as_list(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
        center, width = float(centers[0]), float(widths[0])
        smallest = 1.0 if function not in ("LINEAR_EXACT", "SIGMOID") else 0.0
        if math.isfinite(center) and math.isfinite(width) and width > 0 and width >= smallest:
            if len(centers) > 1:
                notices.append(
                    f"The DICOM file defines {len(centers)} display windows; the first "
                    f"(center {center:g}, width {width:g}) is applied."
                )
            pixels = _apply_window(values, center, width, function)
            window = {"window_center": center, "window_width": width, "window_source": "window tags"}
            return pixels, window, notices
        notices.append("The file's display window is invalid; the full range of values is shown.")
    low, high = value_range
    center, width = ((low + high) / 2, high - low) if high > low else (low + 0.5, 1.0)
    pixels = _apply_window(values, center, width, "LINEAR_EXACT")
    window = {"window_center": center, "window_width": width, "window_source": "full range"}
    return pixels, window, notices


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM VOI window (PS3.3 C.11.2.1.2) mapped to [0, 1] as float32.

    `function` is the VOI LUT Function: "SIGMOID", "LINEAR_EXACT", or anything
    else for the default "LINEAR" (which needs width >= 1).
    """
    if function == "SIGMOID":
        return (1 / (1 + np.exp(-4 * (values - np.float32(center)) / np.float32(width)))).astype(np.float32)
    if function != "LINEAR_EXACT":
        center, width = center - 0.5, width - 1
    if width == 0:  # LINEAR with width 1: a threshold
        return (values > center).astype(np.float32)
    return np.clip((values - np.float32(center)) / np.float32(width) + np.float32(0.5), 0, 1, dtype=np.float32)


def _colour_dicom(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """Grey levels of a colour image (pydicom has already converted YBR to RGB).

    Samples outside 0 .. 2**BitsStored - 1 (signed colour, or a header that
    understates the codestream's precision) have no defined meaning: refused.
    """
    if str(ds.PhotometricInterpretation).strip() == "PALETTE COLOR":
        rgb = apply_color_lut(stored, ds)
        return _luma(rgb, np.iinfo(rgb.dtype).max)
    full_scale = 2 ** int(ds.BitsStored) - 1
    if stored.min() < 0 or stored.max() > full_scale:
        raise XRayError(
            "The colour DICOM image has pixel values outside the range its header declares "
            "(Bits Stored, Pixel Representation). Export it again from the PACS or the modality."
        )
    return _luma(stored, full_scale)


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _code_string(value: object) -> str | None:
    """A DICOM code string (CS), or None if absent or not a valid one.

    Only strings shaped like codes are passed on, so a malformed file cannot
    smuggle free text (a name, say) into the metadata or a message.
    """
    if value is None:
        return None
    text = str(value).strip()
    return text if re.fullmatch(r"[A-Z0-9_ ]{1,16}", text) else None


def _sop_class_name(ds: Dataset) -> str:
    """The registered name of the SOP class ("Encapsulated PDF Storage"), if known.

    The file meta's copy of it remains when a truncation has cut off the data set's.
    """
    uid = UID(str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID", "")))
    return uid.name if uid.is_valid and uid.name != str(uid) else "unknown"


def _pixel_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """(row, column) spacing in mm from PixelSpacing, else ImagerPixelSpacing.

    Zero, negative or malformed values (RG1_UNCI.dcm stores "0.000") mean unknown.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            spacing = [float(v) for v in _as_list(ds.get(keyword))]
        except (TypeError, ValueError):
            continue
        if len(spacing) == 2 and all(math.isfinite(v) and v > 0 for v in spacing):
            return (spacing[0], spacing[1]), keyword
    return None, None
