"""Byte mutations of real files and the checks every read_xray outcome must pass.

Shared by tests/test_fuzz_reader.py (hypothesis draws the mutations) and
benchmarks/fuzz_reader.py (a seeded random generator draws them), so both
exercise the reader the same way.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

from xai_core.imaging import XRay

# Small real DICOMs covering the reader's paths: signed CT, RLE, JPEG baseline (YBR),
# multi-frame JPEG 2000, deflated, big-endian, JPEG-LS, JPEG lossless, VOI LUT, a plan.
FUZZ_DICOM_NAMES = (
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "image_dfl.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPGExtended.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "vlut_04.dcm",
    "rtplan.dcm",
)
HEADER_BYTES = 1024  # where most of the structure of a file lies: half the edits land there
MUTATION_KINDS = ("flip", "set", "cut", "insert", "delete", "duplicate")

_JUNK_IN_MESSAGE = re.compile(
    r"Traceback|File \"|<\w+[ .>]|object at 0x|\b\w+(Error|Exception|Warning)\b|\bb['\"]|\\x[0-9a-f]{2}|\bNone\b"
)


@dataclass(frozen=True)
class Mutation:
    """One edit of a file's bytes.

    `position` is taken modulo the current length, so every edit stays valid
    whatever the edits before it did to the length.
    """

    kind: str  # one of MUTATION_KINDS
    position: int
    amount: int = 0  # the bit (flip), the byte (set), a length (delete, duplicate)
    payload: bytes = b""  # the inserted bytes (insert)


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    """Apply `mutations` in order; "cut" keeps the bytes before its position (at least one)."""
    edited = bytearray(data)
    for mutation in mutations:
        if not edited:
            break
        at = mutation.position % len(edited)
        if mutation.kind == "flip":
            edited[at] ^= 1 << (mutation.amount % 8)
        elif mutation.kind == "set":
            edited[at] = mutation.amount % 256
        elif mutation.kind == "cut":
            del edited[max(at, 1) :]
        elif mutation.kind == "insert":
            edited[at:at] = mutation.payload
        elif mutation.kind == "delete":
            del edited[at : at + mutation.amount]
        elif mutation.kind == "duplicate":
            edited[at:at] = edited[at : at + mutation.amount]
        else:
            raise ValueError(f"unknown mutation {mutation.kind!r}")
    return bytes(edited)


def with_transfer_syntax(data: bytes, uid: str) -> bytes:
    """A DICOM file's bytes with only the transfer syntax in its file meta changed; the data
    set stays as stored, so it no longer matches what the file meta says."""
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
    body = data[132 + 12 + meta.FileMetaInformationGroupLength :]
    meta.TransferSyntaxUID = uid
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return data[:132] + buffer.getvalue() + body


class Sources(dict[str, bytes]):
    """File name -> bytes, shown by name only (hypothesis prints its test's arguments)."""

    def __repr__(self) -> str:
        return f"Sources({', '.join(self)})"


def fuzz_sources(shared_data: Path | None, dicom_path) -> Sources:
    """The real files to mutate, by name: NIH PNG (8-bit, and a 16-bit copy), a pediatric JPEG,
    and the FUZZ_DICOM_NAMES that are installed.

    `dicom_path(name)` returns the path of a pydicom-data file, or None when it is absent.
    """
    sources = Sources()
    if shared_data is not None:
        nih = min((shared_data / "nih" / "images").glob("*.png"), default=None)
        pediatric = min((shared_data / "pediatric_pneumonia" / "images").glob("*.jpeg"), default=None)
        if nih is not None:
            sources[nih.name] = nih.read_bytes()
            with Image.open(nih) as image:
                sixteen_bit = Image.fromarray(np.asarray(image, dtype=np.uint16) * 257)
            buffer = io.BytesIO()
            sixteen_bit.save(buffer, format="PNG")
            sources[f"{nih.stem}_16bit.png"] = buffer.getvalue()
        if pediatric is not None:
            sources[pediatric.name] = pediatric.read_bytes()
    for name in FUZZ_DICOM_NAMES:
        path = dicom_path(name)
        if path is not None:
            sources[name] = Path(path).read_bytes()
    return sources


def assert_sane(xray: XRay) -> None:
    """What every successful read must give: finite float32 (H, W) in [0, 1] matching its metadata."""
    meta = xray.metadata
    assert xray.pixels.dtype == np.float32, xray.pixels.dtype
    assert xray.pixels.shape == (meta.rows, meta.columns), (xray.pixels.shape, meta.rows, meta.columns)
    assert np.isfinite(xray.pixels).all(), "non-finite pixels"
    assert xray.pixels.min() >= 0.0 and xray.pixels.max() <= 1.0, (xray.pixels.min(), xray.pixels.max())
    assert meta.format in ("DICOM", "PNG", "JPEG"), meta.format
    assert meta.number_of_frames >= 1, meta.number_of_frames
    assert len(xray.sha256) == 64
    for notice in xray.notices:
        assert_clear_message(notice)
    if xray.modality_values is not None:
        assert xray.modality_values.shape == xray.pixels.shape
        assert np.isfinite(xray.modality_values).all(), "non-finite modality values"
    if meta.window_width is not None:
        assert np.isfinite([meta.window_center, meta.window_width]).all() and meta.window_width > 0


def assert_clear_message(message: str) -> None:
    """A message fit for the page: one or two plain sentences, no traceback, repr or raw bytes."""
    assert message and message[0].isupper() and message.endswith("."), message
    assert len(message) < 400 and message.isprintable(), message
    assert not _JUNK_IN_MESSAGE.search(message), message
