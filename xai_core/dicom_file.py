"""Decode a DICOM file into an `XRay`: grey (VOI LUT or window, MONOCHROME1 inverted) or colour, with
only technical tags read (see `ImageMetadata`); deflate bombs and oversized codestreams refused first."""

from __future__ import annotations

import io
import math
import re
import struct
import zlib

import numpy as np
import pydicom
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
from .xray import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    UNRECOGNISED,
    ImageMetadata,
    XRay,
    check_size,
    decoder_errors,
    human_size,
    luma,
    too_many_pixels,
)

# A deflated DICOM dataset may not inflate to more than this (a deflate bomb
# expands about 1000-fold; pydicom inflates the whole dataset in one go).
_MAX_INFLATED_BYTES = 8 * MAX_UPLOAD_BYTES

_GREY_INTERPRETATIONS = ("MONOCHROME1", "MONOCHROME2")
_COLOUR_INTERPRETATIONS = (
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_ICT",
    "YBR_RCT",
    "PALETTE COLOR",
)
# (7FE0,0010) Pixel Data as stored little- and big-endian.
_PIXEL_DATA_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")

_DICOM_DAMAGED = (
    "The DICOM file is damaged or incomplete and cannot be read. "
    "Export it again from the PACS or the modality."
)


def read_dicom(data: bytes, sha256: str) -> XRay:
    has_preamble = data[128:132] == b"DICM"
    # Without the preamble the bytes only looked like DICOM: failing to parse
    # means "not recognised" rather than "damaged DICOM".
    with decoder_errors(_DICOM_DAMAGED if has_preamble else UNRECOGNISED):
        _refuse_deflate_bomb(data)
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if not has_preamble and "PixelData" not in ds and "SOPClassUID" not in ds:
            raise XRayError(UNRECOGNISED)
    with decoder_errors(_DICOM_DAMAGED):
        if "PixelData" not in ds:
            _refuse_without_pixel_data(ds, data)
        transfer_syntax = _transfer_syntax(ds)
        interpretation = _code_string(ds.get("PhotometricInterpretation")) or ""
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = _number_of_frames(ds)
        check_size(columns, rows)
        if interpretation not in _GREY_INTERPRETATIONS + _COLOUR_INTERPRETATIONS:
            raise XRayError(
                f"This DICOM image uses the photometric interpretation "
                f"{interpretation or 'unknown'}, which the viewer does not support. It reads "
                "MONOCHROME1, MONOCHROME2, RGB, YBR and PALETTE COLOR images."
            )
        _require_decoder(transfer_syntax)
        _refuse_oversized_codestream(ds, transfer_syntax, frames)
    with decoder_errors(
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
                f"{human_size(_MAX_INFLATED_BYTES)}; it is refused as unsafe to open."
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
        raise too_many_pixels(*size)


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
        return luma(rgb, np.iinfo(rgb.dtype).max)
    full_scale = 2 ** int(ds.BitsStored) - 1
    if stored.min() < 0 or stored.max() > full_scale:
        raise XRayError(
            "The colour DICOM image has pixel values outside the range its header declares "
            "(Bits Stored, Pixel Representation). Export it again from the PACS or the modality."
        )
    return luma(stored, full_scale)


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
