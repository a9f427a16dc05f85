"""Decode PNG and JPEG files (8- and 16-bit grey, colour, EXIF orientation) into an `XRay`."""

from __future__ import annotations

import io

import numpy as np
from PIL import ExifTags, Image, ImageOps

from .errors import XRayError
from .xray import MAX_PIXELS, ImageMetadata, XRay, check_size, decoder_errors, luma

# libjpeg decodes every scan of a progressive JPEG over the whole image, so a
# small file repeating a scan thousands of times takes hours. Encoders write
# about 10 scans.
_MAX_JPEG_SCANS = 100
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grey PNG


def read_raster(data: bytes, image_format: str, sha256: str) -> XRay:
    damaged = (
        f"The {image_format} file is damaged or incomplete and cannot be opened. "
        "Export or download it again."
    )
    with decoder_errors(damaged):
        try:
            image = Image.open(io.BytesIO(data), formats=[image_format])  # reads the header only
        except Image.DecompressionBombError:  # PIL's own limit, far above ours
            raise XRayError(
                f"The image is larger than the {MAX_PIXELS / 1e6:.0f} megapixels accepted. "
                "Export a smaller copy."
            ) from None
        width, height = image.size
    check_size(width, height)  # before anything is decoded
    if image_format == "JPEG" and data.count(b"\xff\xda") > _MAX_JPEG_SCANS:  # SOS markers
        raise XRayError(
            f"The JPEG file holds more than {_MAX_JPEG_SCANS} scans, far more than an image needs; "
            "it is refused as unsafe to open. Export or download it again."
        )
    with decoder_errors(damaged):
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
    return luma(rgb, 255), bits, True
