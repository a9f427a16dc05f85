"""Tests of xai_core.imaging on real images: NIH PNGs, pediatric JPEGs and pydicom-data DICOMs.

Variants (16-bit, colour, truncated, crafted headers...) are made from the real
files in memory. Expected pixels come from PIL and from pydicom's own LUT and
windowing functions, computed here independently of the reader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from xai_core.errors import XRayError
from xai_core.imaging import MAX_PIXELS, MIN_SIDE, ImageMetadata, XRay, read_xray

# pytest-timeout is a test dependency; the guard keeps the file usable without it.
timeout = pytest.mark.timeout(20) if importlib.util.find_spec("pytest_timeout") else (lambda test: test)

NOT_READABLE = "not an image the viewer can read"
JPEG_LOSSLESS_SV1 = "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])"
DAMAGED = "damaged or incomplete"


# --- helpers ------------------------------------------------------------------------


def assert_valid(xray: XRay) -> None:
    """What every successful read must give: finite float32 (H, W) in [0, 1] matching the metadata."""
    assert isinstance(xray, XRay)
    assert xray.pixels.dtype == np.float32
    assert xray.pixels.shape == (xray.metadata.rows, xray.metadata.columns)
    assert np.isfinite(xray.pixels).all()
    assert xray.pixels.min() >= 0.0 and xray.pixels.max() <= 1.0


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG header declaring a huge 8-bit grey image (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4)  # a few rows of the filter byte and zeros
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def dicom_window(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """pydicom's windowing of modality values, mapped from its output range to [0, 1]."""
    signed = ds.PixelRepresentation == 1
    low, high = (-(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1) if signed else (0, 2**ds.BitsStored - 1)
    if "RescaleSlope" in ds:
        low, high = low * ds.RescaleSlope + ds.RescaleIntercept, high * ds.RescaleSlope + ds.RescaleIntercept
    return (apply_voi_lut(values, ds) - low) / (high - low)


def full_range(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return (values - values.min()) / (values.max() - values.min())


def first_film(folder: Path, pattern: str, kind: str) -> Path:
    """The first of the shared data folder's films matching `pattern` in `folder`; the test skips without one."""
    paths = sorted(folder.glob(pattern))
    if not paths:
        pytest.skip(f"no {kind} in the shared data folder")
    return paths[0]


@pytest.fixture(scope="session")
def nih_png(shared_data: Path) -> Path:
    return first_film(shared_data / "nih" / "images", "*.png", "NIH PNG")


@pytest.fixture(scope="session")
def nih_grey(nih_png: Path) -> np.ndarray:
    """The NIH image as uint8 (512, 512), decoded by PIL."""
    with Image.open(nih_png) as image:
        assert image.mode == "L" and image.size == (512, 512)
        return np.asarray(image)


@pytest.fixture(scope="session")
def pediatric_jpeg(shared_data: Path) -> Path:
    return first_film(shared_data / "pediatric_pneumonia" / "images", "*.jpeg", "pediatric JPEG")


# --- PNG and JPEG -------------------------------------------------------------------


def test_nih_png_is_read_as_8_bit_grey(nih_png, nih_grey):
    data = nih_png.read_bytes()
    xray = read_xray(data)
    assert_valid(xray)
    np.testing.assert_array_equal(xray.pixels, nih_grey.astype(np.float32) / 255)
    assert xray.metadata == ImageMetadata(format="PNG", rows=512, columns=512, bits_stored=8)
    assert xray.sha256 == hashlib.sha256(data).hexdigest()
    assert xray.notices == ()
    assert xray.modality_values is None


def test_path_str_path_and_bytes_give_the_same_image(nih_png):
    from_path, from_str, from_bytes = read_xray(nih_png), read_xray(str(nih_png)), read_xray(nih_png.read_bytes())
    np.testing.assert_array_equal(from_path.pixels, from_bytes.pixels)
    np.testing.assert_array_equal(from_str.pixels, from_bytes.pixels)
    assert from_path.sha256 == from_str.sha256 == from_bytes.sha256
    assert from_path.metadata == from_bytes.metadata


def test_pediatric_jpeg(pediatric_jpeg):
    xray = read_xray(pediatric_jpeg)
    assert_valid(xray)
    with Image.open(pediatric_jpeg) as image:
        expected = np.asarray(image.convert("L"), dtype=np.float32) / 255
    np.testing.assert_array_equal(xray.pixels, expected)
    assert xray.metadata.format == "JPEG"


def test_16_bit_png_is_scaled_by_its_bit_depth_not_its_maximum(nih_grey):
    full_scale = nih_grey.astype(np.uint16) * 257  # 255 -> 65535
    twelve_bit = nih_grey.astype(np.uint16) * 16  # a 12-bit image in a 16-bit PNG: at most 4080
    for values in (full_scale, twelve_bit):
        data = encode(Image.fromarray(values), "PNG")
        assert data[24] == 16  # IHDR bit depth: really a 16-bit PNG
        xray = read_xray(data)
        assert_valid(xray)
        np.testing.assert_allclose(xray.pixels, values / 65535, atol=1e-6)
        assert xray.metadata.bits_stored == 16
    assert read_xray(encode(Image.fromarray(twelve_bit), "PNG")).pixels.max() < 0.07


@pytest.mark.parametrize("value", [0, 1000, 65535])
def test_constant_16_bit_png(value):
    data = encode(Image.fromarray(np.full((100, 120), value, dtype=np.uint16)), "PNG")
    xray = read_xray(data)
    assert_valid(xray)
    np.testing.assert_allclose(xray.pixels, value / 65535, atol=1e-7)


def test_rgb_png_of_a_grey_image_is_not_reported_as_colour(nih_grey):
    xray = read_xray(encode(Image.fromarray(nih_grey).convert("RGB"), "PNG"))
    np.testing.assert_array_equal(xray.pixels, nih_grey / np.float32(255))
    assert xray.notices == ()


def test_coloured_rgb_png_is_converted_to_luma_with_a_notice(nih_grey):
    rgb = np.stack([nih_grey, nih_grey // 2, 255 - nih_grey], axis=-1).astype(np.uint8)
    xray = read_xray(encode(Image.fromarray(rgb), "PNG"))
    assert_valid(xray)
    expected = rgb.astype(np.float64) @ [0.299, 0.587, 0.114] / 255
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-5)
    # PIL's own RGB -> L conversion agrees within its integer rounding
    pil_grey = np.asarray(Image.fromarray(rgb).convert("L")) / 255
    np.testing.assert_allclose(xray.pixels, pil_grey, atol=1 / 255 + 1e-6)
    assert xray.notices == ("Colour image: converted to greyscale.",)


def test_rgba_png_drops_alpha(nih_grey):
    alpha = np.tile(np.linspace(0, 255, 512, dtype=np.uint8), (512, 1))
    rgba = np.stack([nih_grey, nih_grey, nih_grey, alpha], axis=-1)
    xray = read_xray(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert_valid(xray)
    np.testing.assert_array_equal(xray.pixels, nih_grey / np.float32(255))


def test_grey_and_colour_palette_pngs(nih_grey):
    image = Image.frombytes("P", (512, 512), nih_grey.tobytes())
    image.putpalette([level for index in range(256) for level in (index, index, index)])
    grey = read_xray(encode(image, "PNG"))
    assert Image.open(io.BytesIO(encode(image, "PNG"))).mode == "P"
    np.testing.assert_array_equal(grey.pixels, nih_grey / np.float32(255))
    assert grey.notices == ()

    image.putpalette([level for index in range(256) for level in (index, 255 - index, 0)])
    colour = read_xray(encode(image, "PNG"))
    index = nih_grey.astype(np.float64)
    np.testing.assert_allclose(colour.pixels, (0.299 * index + 0.587 * (255 - index)) / 255, atol=1e-5)
    assert colour.notices == ("Colour image: converted to greyscale.",)


def test_exif_orientation_is_applied(nih_grey):
    stored = Image.fromarray(nih_grey[:, :300])  # 300 wide, 512 high
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    xray = read_xray(data)
    assert_valid(xray)
    assert xray.pixels.shape == (300, 512)
    assert (xray.metadata.rows, xray.metadata.columns) == (300, 512)
    decoded = np.asarray(Image.open(io.BytesIO(data))) / np.float32(255)
    np.testing.assert_array_equal(xray.pixels, np.rot90(decoded, k=-1))
    assert "EXIF orientation" in " ".join(xray.notices)


def test_format_comes_from_the_content_not_the_extension(tmp_path, nih_png, pediatric_jpeg, dicom_file):
    cases = {
        "scan.dcm": (nih_png, "PNG"),
        "scan.png": (pediatric_jpeg, "JPEG"),
        "scan.jpg": (dicom_file("CT_small.dcm"), "DICOM"),
    }
    for name, (source, image_format) in cases.items():
        (tmp_path / name).write_bytes(source.read_bytes())
        xray = read_xray(tmp_path / name)
        assert xray.metadata.format == image_format
        np.testing.assert_array_equal(xray.pixels, read_xray(source).pixels)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_truncated_png_and_jpeg(nih_png, pediatric_jpeg, image_format):
    data = (nih_png if image_format == "PNG" else pediatric_jpeg).read_bytes()
    with pytest.raises(XRayError, match=f"{image_format} file is {DAMAGED}"):
        read_xray(data[: len(data) // 2])


@pytest.mark.parametrize("image_format", ["TIFF", "BMP", "GIF", "WebP"])
def test_other_image_formats_are_named_in_the_error(nih_grey, image_format):
    data = encode(Image.fromarray(nih_grey), image_format.upper())
    with pytest.raises(XRayError, match=f"This is a {image_format} file.*DICOM, PNG and JPEG"):
        read_xray(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the malformed input
def test_random_bytes_are_refused(nih_png):
    rng = np.random.default_rng(1)
    # Also bytes that start like a DICOM data set without preamble: force=True must not accept them.
    for prefix in (b"", b"\x08\x00", b"\x02\x00", b"\x08\x00\x05\x00CS"):
        for size in (1, 200, 5000):
            with pytest.raises(XRayError, match=NOT_READABLE):
                read_xray(prefix + rng.bytes(size))


def test_empty_input(tmp_path):
    with pytest.raises(XRayError, match="empty"):
        read_xray(b"")
    (tmp_path / "empty.png").touch()
    with pytest.raises(XRayError, match="empty"):
        read_xray(tmp_path / "empty.png")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("Chest X-ray, PA view. No acute findings.\n" * 20)
    with pytest.raises(XRayError, match=f"{NOT_READABLE}.*DICOM, PNG and JPEG"):
        read_xray(path)


@pytest.mark.parametrize(("width", "height"), [(10, 10), (10, 10000), (63, 200), (200, 63)])
def test_images_under_the_minimum_side_are_refused_with_their_size(width, height):
    data = encode(Image.new("L", (width, height), 128), "PNG")
    with pytest.raises(XRayError, match=f"only {width}x{height} pixels; at least {MIN_SIDE}"):
        read_xray(data)


def test_image_of_exactly_the_minimum_side_is_accepted():
    xray = read_xray(encode(Image.new("L", (MIN_SIDE, MIN_SIDE), 0), "PNG"))
    assert_valid(xray)
    assert not xray.pixels.any()


@timeout
@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (8000, 8000, "8000x8000 pixels .*the largest accepted is 50 megapixels"),  # the reader's check
        (20000, 20000, "larger than the 50 megapixels accepted"),  # PIL's DecompressionBombError at open
    ],
)
def test_png_decompression_bomb_is_refused_before_decoding(width, height, message):
    assert width * height > MAX_PIXELS
    data = png_declaring(width, height)
    assert len(data) < 2000
    with pytest.raises(XRayError, match=message):
        read_xray(data)


@timeout
def test_jpeg_decompression_bomb_is_refused_before_decoding(pediatric_jpeg):
    data = bytearray(pediatric_jpeg.read_bytes())
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "expected a baseline JPEG"
    struct.pack_into(">HH", data, sof + 5, 9000, 9000)  # declared height, width
    with pytest.raises(XRayError, match="9000x9000 pixels"):
        read_xray(bytes(data))


def test_input_over_max_bytes_is_refused_before_reading(nih_png, tmp_path):
    data = nih_png.read_bytes()
    with pytest.raises(XRayError, match="the largest accepted is 1000 bytes"):
        read_xray(data, max_bytes=1000)
    with pytest.raises(XRayError, match="the largest accepted is 1000 bytes"):
        read_xray(nih_png, max_bytes=1000)
    assert_valid(read_xray(nih_png, max_bytes=len(data)))


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(XRayError, match="File not found") as raised:
        read_xray(tmp_path / "DOE_JOHN_chest.png")
    assert "DOE" not in str(raised.value)  # file names can hold patient names
    with pytest.raises(XRayError, match="not a file"):
        read_xray(tmp_path)


def test_a_non_bytes_source_is_a_programming_error():
    with pytest.raises(TypeError):
        read_xray(12345)  # type: ignore[arg-type]


# --- DICOM --------------------------------------------------------------------------


def test_rg1_adult_chest_cr_monochrome1(dicom_file):
    path = dicom_file("RG1_UNCI.dcm")
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array
    xray = read_xray(path)
    assert_valid(xray)
    meta = xray.metadata
    assert (meta.rows, meta.columns) == (1955, 1841) == raw.shape
    assert (meta.format, meta.modality, meta.photometric_interpretation) == ("DICOM", "CR", "MONOCHROME1")
    assert (meta.bits_stored, meta.transfer_syntax, meta.number_of_frames) == (15, "Explicit VR Little Endian", 1)
    assert (meta.window_center, meta.window_width, meta.window_source) == (15000.0, 30000.0, "window tags")
    assert meta.value_range == (float(raw.min()), float(raw.max()))
    assert meta.pixel_spacing_mm is None  # the file stores PixelSpacing "0.000": unknown, not zero
    np.testing.assert_array_equal(xray.modality_values, raw)
    assert not xray.modality_values.flags.writeable
    # window first (pydicom's arithmetic), then MONOCHROME1 inversion
    np.testing.assert_allclose(xray.pixels, 1 - dicom_window(raw, ds), atol=1e-4)
    # anatomy: after inversion the lungs are dark and the spine and mediastinum bright
    pixels, height, width = xray.pixels, *xray.pixels.shape
    rows = slice(int(0.30 * height), int(0.55 * height))
    right_lung = pixels[rows, int(0.20 * width) : int(0.35 * width)].mean()
    left_lung = pixels[rows, int(0.65 * width) : int(0.80 * width)].mean()
    spine = pixels[int(0.30 * height) : int(0.60 * height), int(0.47 * width) : int(0.53 * width)].mean()
    assert spine > max(right_lung, left_lung) + 0.2


def test_rg1_jpeg_2000_versions_match_the_uncompressed_image(dicom_file):
    reference = read_xray(dicom_file("RG1_UNCI.dcm")).pixels
    reversible = read_xray(dicom_file("RG1_J2KR.dcm"))
    irreversible = read_xray(dicom_file("RG1_J2KI.dcm"))
    assert reversible.metadata.transfer_syntax == "JPEG 2000 Image Compression (Lossless Only)"
    assert irreversible.metadata.transfer_syntax == "JPEG 2000 Image Compression"
    # In pydicom-data 1.0.0 the file labelled lossless differs from RG1_UNCI by up to 403 of
    # 32767 stored levels (its codestream is not lossless), while the "lossy" one is identical.
    difference = np.abs(reversible.pixels - reference)
    assert difference.max() < 0.02 and difference.mean() < 0.003
    np.testing.assert_array_equal(irreversible.pixels, reference)


def test_modality_lut_then_full_range(dicom_file):
    path = dicom_file("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    expected_values = apply_modality_lut(ds.pixel_array, ds)
    assert "ModalityLUTSequence" in ds and "WindowCenter" not in ds
    xray = read_xray(path)
    assert_valid(xray)
    np.testing.assert_array_equal(xray.modality_values, expected_values)
    np.testing.assert_allclose(xray.pixels, full_range(expected_values), atol=1e-6)
    assert xray.metadata.window_source == "full range"
    assert xray.metadata.value_range == (float(expected_values.min()), float(expected_values.max()))


def test_voi_lut(dicom_file):
    path = dicom_file("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    lut = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    bits = ds.VOILUTSequence[0].LUTDescriptor[2]
    xray = read_xray(path)
    assert_valid(xray)
    np.testing.assert_allclose(xray.pixels, lut / (2**bits - 1), atol=1e-6)
    assert xray.metadata.window_source == "VOI LUT"
    assert xray.metadata.window_center is None and xray.metadata.window_width is None


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_is_applied_to_modality_values_not_stored_values(dicom_file, function):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    assert ds.RescaleIntercept == -1024 and ds.PixelRepresentation == 1
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, 400, function
    xray = read_xray(dicom_bytes(ds))
    assert_valid(xray)
    raw = ds.pixel_array
    right_order = dicom_window(apply_modality_lut(raw, ds), ds)
    del ds.RescaleSlope, ds.RescaleIntercept
    wrong_order = dicom_window(raw, ds)  # the same window applied to the stored values
    np.testing.assert_allclose(xray.pixels, right_order, atol=1e-5)
    assert np.abs(xray.pixels - wrong_order).max() > 0.5
    assert (xray.metadata.window_center, xray.metadata.window_width) == (40.0, 400.0)


def test_ct_rescale_slope_intercept_signed(dicom_file):
    path = dicom_file("CT_small.dcm")
    raw = pydicom.dcmread(path).pixel_array
    assert raw.dtype == np.int16
    xray = read_xray(path)
    assert_valid(xray)
    np.testing.assert_array_equal(xray.modality_values, raw.astype(np.float32) - 1024)
    assert xray.metadata.value_range == (float(raw.min()) - 1024, float(raw.max()) - 1024)
    assert xray.metadata.value_range[0] < 0
    assert xray.metadata.pixel_spacing_mm == (0.661468, 0.661468)
    assert xray.metadata.pixel_spacing_source == "PixelSpacing"
    assert (xray.metadata.modality, xray.metadata.window_source) == ("CT", "full range")
    np.testing.assert_allclose(xray.pixels, full_range(raw), atol=1e-6)


def test_imager_pixel_spacing_is_the_fallback(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.143, 0.139]
    xray = read_xray(dicom_bytes(ds))
    assert xray.metadata.pixel_spacing_mm == (0.143, 0.139)
    assert xray.metadata.pixel_spacing_source == "ImagerPixelSpacing"


def test_mr_small_window_and_its_encodings(dicom_file):
    """64x64 (exactly the minimum side); RLE, big-endian and JPEG-LS copies decode identically."""
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    reference = read_xray(dicom_file("MR_small.dcm"))
    assert_valid(reference)
    np.testing.assert_allclose(reference.pixels, dicom_window(ds.pixel_array, ds), atol=1e-5)
    assert (reference.metadata.window_center, reference.metadata.window_width) == (600.0, 1600.0)
    encodings = {
        "MR_small_RLE.dcm": "RLE Lossless",
        "MR_small_bigendian.dcm": "Explicit VR Big Endian",
        "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS Lossless Image Compression",
    }
    for name, transfer_syntax in encodings.items():
        xray = read_xray(dicom_file(name))
        assert xray.metadata.transfer_syntax == transfer_syntax
        np.testing.assert_array_equal(xray.pixels, reference.pixels)


@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm"])
def test_multi_frame_shows_the_first_frame(dicom_file, name):
    path = dicom_file(name)
    frames = pydicom.dcmread(path).pixel_array
    assert frames.shape == (10, 64, 64)
    xray = read_xray(path)
    assert_valid(xray)
    assert xray.metadata.number_of_frames == 10
    assert xray.notices == ("Multi-frame DICOM: showing frame 1 of 10.",)
    np.testing.assert_allclose(xray.pixels, full_range(frames[0]), atol=1e-6)
    assert not np.allclose(xray.pixels, full_range(frames[5]))


def test_first_of_several_windows_is_used_and_said(dicom_file):
    xray = read_xray(dicom_file("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    assert_valid(xray)
    assert (xray.metadata.window_center, xray.metadata.window_width) == (450.0, 790.0)
    assert xray.notices == (
        "The DICOM file defines 2 display windows; the first (center 450, width 790) is applied.",
    )


@pytest.mark.parametrize(
    ("name", "interpretation", "transfer_syntax"),
    [
        ("SC_rgb.dcm", "RGB", "Explicit VR Little Endian"),
        ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL", "JPEG Baseline (Process 1)"),
        ("SC_jpeg_no_color_transform.dcm", "RGB", "JPEG Baseline (Process 1)"),
        ("SC_rgb_jpeg_gdcm.dcm", "RGB", JPEG_LOSSLESS_SV1),
        ("SC_rgb_rle.dcm", "RGB", "RLE Lossless"),
        ("US1_J2KR.dcm", "YBR_RCT", "JPEG 2000 Image Compression (Lossless Only)"),
        ("SC_ybr_full_uncompressed.dcm", "YBR_FULL", "Explicit VR Little Endian"),
    ],
)
def test_colour_dicom_is_converted_to_grey(dicom_file, name, interpretation, transfer_syntax):
    path = dicom_file(name)
    rgb = pixel_array(path)  # pydicom converts YBR to RGB
    xray = read_xray(path)
    assert_valid(xray)
    assert xray.metadata.photometric_interpretation == interpretation
    assert xray.metadata.transfer_syntax == transfer_syntax
    np.testing.assert_allclose(xray.pixels, rgb.astype(np.float64) @ [0.299, 0.587, 0.114] / 255, atol=1e-5)
    assert xray.notices == (f"Colour DICOM image ({interpretation}): converted to greyscale.",)
    assert xray.modality_values is None and xray.metadata.window_source is None


def test_palette_colour_dicom(dicom_file):
    path = dicom_file("OBXXXX1A.dcm")
    ds = pydicom.dcmread(path)
    rgb = apply_color_lut(ds.pixel_array, ds)
    xray = read_xray(path)
    assert_valid(xray)
    expected = rgb.astype(np.float64) @ [0.299, 0.587, 0.114] / np.iinfo(rgb.dtype).max
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-5)
    assert xray.notices == ("Colour DICOM image (PALETTE COLOR): converted to greyscale.",)


@pytest.mark.parametrize(
    ("name", "transfer_syntax"),
    [
        ("JPEG-LL.dcm", JPEG_LOSSLESS_SV1),
        ("image_dfl.dcm", "Deflated Explicit VR Little Endian"),
        ("JPEG2000_UNC.dcm", "Explicit VR Little Endian"),  # despite its name
    ],
)
def test_grey_dicom_without_window_uses_the_full_range(dicom_file, name, transfer_syntax):
    path = dicom_file(name)
    ds = pydicom.dcmread(path)
    assert "WindowCenter" not in ds and "VOILUTSequence" not in ds
    xray = read_xray(path)
    assert_valid(xray)
    np.testing.assert_allclose(xray.pixels, full_range(apply_modality_lut(ds.pixel_array, ds)), atol=1e-6)
    assert xray.metadata.window_source == "full range"
    assert xray.metadata.transfer_syntax == transfer_syntax


def test_constant_dicom_does_not_divide_by_zero(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.PixelData = np.full((128, 128), 77, dtype=np.int16).tobytes()
    xray = read_xray(dicom_bytes(ds))
    assert_valid(xray)
    assert xray.metadata.value_range == (77.0 - 1024, 77.0 - 1024)
    assert np.unique(xray.pixels).size == 1


def test_12_bit_jpeg_extended_that_no_installed_plugin_decodes(dicom_file):
    # pylibjpeg-libjpeg rejects this file's scan header and Pillow has no 12-bit JPEG:
    # the reader must say so cleanly (GDCM could decode it).
    with pytest.raises(XRayError, match=r"JPEG Extended \(Process 2 and 4\)\) could not be decoded"):
        read_xray(dicom_file("JPEG-lossy.dcm"))


def test_bad_sequence_file_still_reads(dicom_file):
    xray = read_xray(dicom_file("bad_sequence.dcm"))
    assert_valid(xray)
    assert (xray.metadata.rows, xray.metadata.columns, xray.metadata.modality) == (512, 512, "CT")
    assert (xray.metadata.window_center, xray.metadata.window_width) == (40.0, 350.0)


def test_dicom_without_pixel_data(dicom_file):
    with pytest.raises(XRayError, match=r"contains no image \(its type is RT Plan Storage\)"):
        read_xray(dicom_file("rtplan.dcm"))
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    del ds.PixelData
    with pytest.raises(XRayError, match=r"contains no image data although its type \(CT Image Storage\) should"):
        read_xray(dicom_bytes(ds))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the malformed input
@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "RG1_J2KR.dcm", "image_dfl.dcm", "SC_rgb_rle.dcm"])
def test_truncated_dicom(dicom_file, name):
    data = dicom_file(name).read_bytes()
    for kept in (len(data) // 2, len(data) * 9 // 10):
        with pytest.raises(XRayError, match=DAMAGED):
            read_xray(data[:kept])


def test_rle_decoder_panic_becomes_xrayerror(dicom_file):
    ds = pydicom.dcmread(dicom_file("MR_small_RLE.dcm"))
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    frame[64] = 0x81  # first byte of the first RLE segment: a run reaching past the row
    ds.PixelData = encapsulate([bytes(frame)])
    with pytest.raises(BaseException) as raised:  # pylibjpeg-rle 2.2.0 panics (pyo3 PanicException)
        pixel_array(ds)
    assert not isinstance(raised.value, Exception)
    with pytest.raises(XRayError, match=r"\(RLE Lossless\) could not be decoded"):
        read_xray(dicom_bytes(ds))


def test_small_dicom_is_refused_with_its_size(dicom_file):
    with pytest.raises(XRayError, match="only 3x3 pixels"):
        read_xray(dicom_file("SC_rgb_small_odd.dcm"))
    with pytest.raises(XRayError, match="only 80x60 pixels"):
        read_xray(dicom_file("ExplVR_BigEnd.dcm"))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the malformed input
def test_unsupported_photometric_interpretation(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "HSV"
    with pytest.raises(XRayError, match="photometric interpretation HSV, which the viewer does not support"):
        read_xray(dicom_bytes(ds))
    ds.PhotometricInterpretation = "Doe^Jane"  # free text must not reach the message
    with pytest.raises(XRayError, match="photometric interpretation unknown") as raised:
        read_xray(dicom_bytes(ds))
    assert "Doe" not in str(raised.value)


def test_transfer_syntax_without_decoder(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2 video
    ds.PixelData = encapsulate([b"\x00" * 64])
    with pytest.raises(XRayError, match="stored as MPEG2 Main Profile / Main Level, which the viewer cannot decode"):
        read_xray(dicom_bytes(ds))


def test_dicom_without_preamble_or_file_meta(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.preamble, ds.file_meta = None, FileMetaDataset()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    data = buffer.getvalue()
    assert data[128:132] != b"DICM" and data[:2] == b"\x08\x00"
    xray = read_xray(data)
    np.testing.assert_array_equal(xray.pixels, read_xray(dicom_file("CT_small.dcm")).pixels)
    assert xray.metadata.transfer_syntax == "Implicit VR Little Endian"


@timeout
def test_dicom_decompression_bomb_is_refused_before_decoding(dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 10000  # the pixel data is still 128x128: decoding would fail differently
    with pytest.raises(XRayError, match="10000x10000 pixels .*megapixels"):
        read_xray(dicom_bytes(ds))


@timeout
def test_jpeg_2000_codestream_declaring_a_huge_image_is_refused(dicom_file):
    data = bytearray(dicom_file("RG1_J2KI.dcm").read_bytes())
    siz = data.find(b"\xff\x4f\xff\x51")
    assert struct.unpack_from(">II", data, siz + 8) == (1841, 1955)  # Xsiz, Ysiz
    struct.pack_into(">II", data, siz + 8, 60000, 60000)
    with pytest.raises(XRayError, match="60000x60000 pixels"):
        read_xray(bytes(data))


@timeout
def test_deflated_dicom_bomb_is_refused(dicom_file):
    data = dicom_file("image_dfl.dcm").read_bytes()
    meta = pydicom.filereader.read_file_meta_info(dicom_file("image_dfl.dcm"))
    body_start = 132 + 12 + meta.FileMetaInformationGroupLength
    deflater = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 24)
    bomb = b"".join(deflater.compress(zeros) for _ in range(26)) + deflater.flush()  # 416 MiB inflated
    assert len(bomb) < 3_000_000
    with pytest.raises(XRayError, match="expands to more than"):
        read_xray(data[:body_start] + bomb)


def test_no_patient_identifier_reaches_the_result(dicom_file):
    ds = pydicom.dcmread(dicom_file("RG1_UNCI.dcm"))
    secrets = {
        "PatientName": "Zyxwv^Qwertz",
        "PatientID": "PID-8675309",
        "PatientBirthDate": "19230405",
        "InstitutionName": "Saint Secretia Hospital",
        "AccessionNumber": "ACC-55501",
        "ReferringPhysicianName": "Referrer^Hidden",
    }
    for keyword, value in secrets.items():
        setattr(ds, keyword, value)
    data = dicom_bytes(ds)
    assert all(value.encode() in data for value in secrets.values())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xray = read_xray(data)
    visible = " ".join(
        [repr(xray), json.dumps(xray.metadata.as_dict()), *xray.notices, *(str(w.message) for w in caught)]
    )
    for value in secrets.values():
        assert value not in visible
        assert value.split("^")[0] not in visible
    assert {field.name for field in dataclasses.fields(xray)} == {
        "pixels", "metadata", "sha256", "notices", "modality_values"
    }


def test_metadata_as_dict_is_json_safe(dicom_file):
    meta = read_xray(dicom_file("CT_small.dcm")).metadata
    as_dict = meta.as_dict()
    assert set(as_dict) == {field.name for field in dataclasses.fields(ImageMetadata)}
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["pixel_spacing_mm"] == [0.661468, 0.661468]
    assert as_dict["transfer_syntax"] == "Explicit VR Little Endian"


# --- robustness -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fuzz_sources(nih_png, pediatric_jpeg, dicom_file) -> list[bytes]:
    names = ("CT_small.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm")
    return [nih_png.read_bytes(), pediatric_jpeg.read_bytes(), *(dicom_file(name).read_bytes() for name in names)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_real_files_give_an_image_or_xrayerror_only(fuzz_sources, data):
    source = bytearray(data.draw(st.sampled_from(fuzz_sources)))
    for position in data.draw(st.lists(st.integers(0, len(source) - 1), max_size=8)):
        source[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(source)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom and PIL warn about what they repair
        try:
            xray = read_xray(bytes(source[:cut]))
        except XRayError as error:
            assert str(error) and "Traceback" not in str(error)
            return
    assert_valid(xray)
