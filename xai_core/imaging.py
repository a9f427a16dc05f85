"""Read a radiograph (DICOM, PNG or JPEG) into a de-identified, display-ready `XRay`.

Everything happens in memory: uploads are never written to disk. Only technical
DICOM tags are read (see `ImageMetadata`); patient, study and institution tags
are never accessed, so they cannot reach the page, the JSON download or a log.
Every problem a user can cause is raised as `XRayError` with a short message
that can be shown as is.
"""

from __future__ import annotations

import hashlib
import os
import stat

from .dicom_file import read_dicom
from .errors import XRayError
from .raster_file import read_raster
from .xray import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    MIN_SIDE,
    READABLE_FORMATS,
    UNRECOGNISED,
    ImageMetadata,
    XRay,
    human_size,
)

__all__ = ["MAX_PIXELS", "MAX_UPLOAD_BYTES", "MIN_SIDE", "ImageMetadata", "XRay", "read_xray"]

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
# A DICOM file without the 128-byte preamble starts with a group 0x0002 or 0x0008 tag.
_BARE_DICOM_STARTS = (b"\x02\x00", b"\x08\x00")


def read_xray(source: bytes | str | os.PathLike, *, max_bytes: int = MAX_UPLOAD_BYTES) -> XRay:
    """Decode `source` (the file's bytes, or a path to it) into an `XRay`.

    The format is recognised from the content, never from the file name.
    Raises `XRayError` for anything wrong with the file.
    """
    data = _load_bytes(source, max_bytes)
    sha256 = hashlib.sha256(data).hexdigest()
    image_format = _sniff_format(data)
    if image_format == "DICOM":
        return read_dicom(data, sha256)
    return read_raster(data, image_format, sha256)


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
        f"The file is {human_size(size)}; the largest accepted is {human_size(max_bytes)}. "
        "Export a smaller copy of the image."
    )



def _sniff_format(data: bytes) -> str:
    """Return "PNG", "JPEG" or "DICOM" from the magic numbers.

    "DICOM" is also returned for a file without preamble that starts like a
    DICOM data set; `read_dicom` confirms it.
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
    raise XRayError(UNRECOGNISED)
