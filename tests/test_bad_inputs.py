"""A corpus of bad and unusual inputs for read_xray, made from real files in memory.

Every case either reads to a sane image (the right shape, format and notices)
or is refused with an XRayError whose message is fit for the page and holds
the case's key words. The reader's choices, in one place:

- DICOM, PNG and JPEG are read, whatever the file name says; GIF, TIFF, WebP,
  BMP, PDF and archives are refused with a message naming the readable formats.
- Multi-frame files (DICOM, animated PNG, multi-picture JPEG) show frame 1 and
  say so in a notice; colour is converted to grey with a notice.
- Sizes are checked from the header before decoding (decompression bombs).
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import pixel_array
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from reader_fuzzing import assert_clear_message, assert_sane, with_transfer_syntax

from xai_core.errors import XRayError
from xai_core.imaging import XRay, read_xray

DAMAGED = "damaged or incomplete"
READABLE = "DICOM, PNG and JPEG"


class Corpus:
    """The real files the cases are made from; a case whose source is absent is skipped."""

    def __init__(self, request: pytest.FixtureRequest, folder: Path) -> None:
        self._request = request
        self.folder = folder

    def _first(self, subfolder: str, pattern: str) -> Path:
        shared_data: Path = self._request.getfixturevalue("shared_data")
        path = min((shared_data / subfolder).glob(pattern), default=None)
        if path is None:
            pytest.skip(f"no {pattern} in {subfolder}")
        return path

    def png(self) -> bytes:
        """An NIH chest PNG: 512x512, 8-bit grey."""
        return self._first("nih/images", "*.png").read_bytes()

    def grey(self) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(self.png())))

    def jpeg(self) -> bytes:
        """A pediatric chest JPEG (baseline, grey)."""
        return self._first("pediatric_pneumonia/images", "*.jpeg").read_bytes()

    def dicom_path(self, name: str) -> Path:
        return self._request.getfixturevalue("dicom_file")(name)

    def dicom(self, name: str) -> bytes:
        return self.dicom_path(name).read_bytes()

    def dataset(self, name: str) -> pydicom.Dataset:
        return pydicom.dcmread(self.dicom_path(name))

    def named(self, name: str, data: bytes) -> Path:
        """`data` saved as a file called `name` (for cases about file names)."""
        path = self.folder / name
        path.write_bytes(data)
        return path


# --- builders ------------------------------------------------------------------------


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def animation(corpus: Corpus, image_format: str) -> bytes:
    """Two frames: the NIH image and its negative."""
    grey = corpus.grey()
    frames = [Image.fromarray(grey), Image.fromarray(255 - grey)]
    return encode(frames[0], image_format, save_all=True, append_images=frames[1:])


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int, rows: int = 4) -> bytes:
    """A well-formed 8-bit grey PNG header declaring width x height, with `rows` rows of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress((b"\x00" + b"\xc8" * width) * rows)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def jpeg_declaring(corpus: Corpus, width: int, height: int) -> bytes:
    data = bytearray(corpus.jpeg())
    sof = data.find(b"\xff\xc0")  # baseline start of frame: length, precision, height, width
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def repeated_scans(corpus: Corpus, times: int) -> bytes:
    """A progressive JPEG whose last scan is repeated: each repeat is decoded over the whole image."""
    data = encode(Image.fromarray(corpus.grey()), "JPEG", progressive=True)
    last_scan = data[data.rfind(b"\xff\xda") : -2]
    return data[:-2] + last_scan * times + b"\xff\xd9"


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def encapsulated_pdf() -> bytes:
    """A DICOM Encapsulated PDF document (a scanned request form, say)."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["bad input corpus"])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def edited_dicom(corpus: Corpus, name: str, **elements) -> bytes:
    ds = corpus.dataset(name)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return dicom_bytes(ds)


def signed_without_rescale(corpus: Corpus) -> bytes:
    """CT_small's signed pixels (128 to 2191) shifted to be all negative, with no rescale to hide them."""
    ds = corpus.dataset("CT_small.dcm")
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.PixelData = (ds.pixel_array.astype(np.int16) - 3000).tobytes()
    return dicom_bytes(ds)


def zip_of(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("chest.png", data)
    return buffer.getvalue()


# --- the corpus ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input. `says` lists key words of the refusal; without it the input must read,
    to `shape` (rows, columns) and `image_format`, with each of `notices` among its notices."""

    kind: str
    build: Callable[[Corpus], bytes | Path]
    says: tuple[str, ...] = ()
    shape: tuple[int, int] | None = None
    image_format: str | None = None
    notices: tuple[str, ...] = ()
    check: Callable[[XRay, Corpus], None] | None = None  # further checks of a read


def readable_dicom(kind: str, name: str, shape: tuple[int, int], **expected: Any) -> Case:
    """A pydicom test file that must read as DICOM to `shape` (rows, columns), with the `expected` notices and check."""
    return Case(kind, lambda c: c.dicom(name), shape=shape, image_format="DICOM", **expected)


def first_frame_read(kind: str, container: str, image_format: str, **expected: Any) -> Case:
    """The NIH film and its negative in one `container` file (animation), which must read as the film, saying so."""
    return Case(kind, lambda c: animation(c, container), shape=(512, 512), image_format=image_format,
                notices=(f"Multi-frame {image_format}: showing frame 1 of 2.",), **expected)


def same_pixels_as(name: str) -> Callable[[XRay, Corpus], None]:
    def check(xray: XRay, corpus: Corpus) -> None:
        np.testing.assert_array_equal(xray.pixels, read_xray(corpus.dicom(name)).pixels)

    return check


def constant(value: float) -> Callable[[XRay, Corpus], None]:
    def check(xray: XRay, corpus: Corpus) -> None:
        np.testing.assert_allclose(xray.pixels, value, atol=1e-7)

    return check


def nih_pixels(xray: XRay, corpus: Corpus) -> None:
    np.testing.assert_array_equal(xray.pixels, corpus.grey() / np.float32(255))


def first_dicom_frame(xray: XRay, corpus: Corpus) -> None:
    frames = pixel_array(corpus.dicom_path("emri_small.dcm")).astype(np.float64)
    expected = (frames[0] - frames[0].min()) / np.ptp(frames[0])  # no window tags: the full range
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-6)


def hounsfield_units(xray: XRay, corpus: Corpus) -> None:
    assert xray.metadata.value_range[0] < -500  # air, after the rescale intercept of -1024


def negative_values_kept(xray: XRay, corpus: Corpus) -> None:
    low, high = xray.metadata.value_range
    assert low < -2000 and high < 0
    assert xray.metadata.window_source == "full range"
    assert (xray.pixels.min(), xray.pixels.max()) == (0, 1)


CASES = [
    # empty, truncated, unrecognised
    Case("empty bytes", lambda c: b"", says=("empty", "Choose the image file again")),
    Case("empty file", lambda c: c.named("chest.png", b""), says=("empty",)),
    Case("truncated PNG", lambda c: c.png()[: len(c.png()) // 2], says=(f"PNG file is {DAMAGED}", "again")),
    Case("PNG cut in its header", lambda c: c.png()[:30], says=(f"PNG file is {DAMAGED}",)),
    Case("truncated JPEG", lambda c: c.jpeg()[: len(c.jpeg()) // 2], says=(f"JPEG file is {DAMAGED}",)),
    Case("truncated DICOM", lambda c: c.dicom("RG1_UNCI.dcm")[:-100_000], says=(DAMAGED, "Export it again")),
    Case(
        "DICOM cut after its file meta",
        lambda c: c.dicom("RG1_UNCI.dcm")[:400],
        says=("no image data", "Computed Radiography Image Storage", DAMAGED),
    ),
    Case("DICOM cut after its preamble", lambda c: c.dicom("CT_small.dcm")[:132], says=("no image data", DAMAGED)),
    Case(
        "random bytes",
        lambda c: np.random.default_rng(7).bytes(4096),
        says=("not an image the viewer can read", READABLE),
    ),
    # file names that lie
    Case(
        "PNG named .dcm",
        lambda c: c.named("chest.dcm", c.png()),
        shape=(512, 512),
        image_format="PNG",
        check=nih_pixels,
    ),
    Case(
        "DICOM named .png",
        lambda c: c.named("chest.png", c.dicom("CT_small.dcm")),
        shape=(128, 128),
        image_format="DICOM",
        check=same_pixels_as("CT_small.dcm"),
    ),
    Case("ZIP named .png", lambda c: c.named("chest.png", zip_of(c.png())), says=("ZIP archive", READABLE)),
    Case(
        "text named .png",
        lambda c: c.named("report.png", b"PA chest radiograph. No acute findings.\n" * 10),
        says=("not an image the viewer can read", READABLE),
    ),
    Case("PDF named .dcm", lambda c: c.named("report.dcm", b"%PDF-1.4\n%%EOF\n"), says=("PDF file", READABLE)),
    # sizes
    Case("1x1 image", lambda c: encode(Image.new("L", (1, 1)), "PNG"), says=("only 1x1 pixels", "at least 64")),
    Case("10x10000 image", lambda c: encode(Image.new("L", (10, 10000)), "PNG"), says=("only 10x10000 pixels",)),
    Case(
        "PNG bomb declaring 100000x100000",
        lambda c: png_declaring(100_000, 100_000),
        says=("larger than the 50 megapixels accepted", "smaller copy"),
    ),
    Case(
        "JPEG declaring 60000x60000",
        lambda c: jpeg_declaring(c, 60_000, 60_000),
        says=("larger than the 50 megapixels accepted",),
    ),
    Case(
        "progressive JPEG repeating a scan 1000 times",
        lambda c: repeated_scans(c, 1000),
        says=("more than 100 scans", "unsafe"),
    ),
    Case(
        "16-bit PNG, constant",
        lambda c: encode(Image.fromarray(np.full((300, 200), 1234, dtype=np.uint16)), "PNG"),
        shape=(300, 200),
        image_format="PNG",
        check=constant(1234 / 65535),
    ),
    # other formats and animations
    Case("animated GIF", lambda c: animation(c, "GIF"), says=("This is a GIF file", READABLE)),
    Case("multi-page TIFF", lambda c: animation(c, "TIFF"), says=("This is a TIFF file", READABLE)),
    Case("animated WebP", lambda c: animation(c, "WEBP"), says=("This is a WebP file", READABLE)),
    first_frame_read("animated PNG", "PNG", "PNG", check=nih_pixels),
    first_frame_read("multi-picture JPEG", "MPO", "JPEG"),
    # DICOM objects that are not images
    Case("DICOM RT plan", lambda c: c.dicom("rtplan.dcm"), says=("contains no image", "RT Plan Storage", "radiograph")),
    Case("DICOM SR", lambda c: c.dicom("test-SR.dcm"), says=("contains no image", "Comprehensive SR Storage")),
    Case("DICOM encapsulated PDF", lambda c: encapsulated_pdf(), says=("contains no image", "Encapsulated PDF Storage")),
    Case(
        "DICOM image without its pixel data",
        lambda c: c.dicom("CT_small.dcm").replace(b"\xe0\x7f\x10\x00", b"\xe0\x7f\x11\x00"),
        says=("no image data although its type (CT Image Storage) should have it", DAMAGED),
    ),
    # DICOM encodings
    Case(
        "DICOM claiming JPEG, holding raw pixels",
        lambda c: with_transfer_syntax(c.dicom("CT_small.dcm"), JPEGBaseline8Bit),
        says=(DAMAGED, "Export it again"),
    ),
    Case(
        "DICOM claiming raw pixels, holding RLE",
        lambda c: with_transfer_syntax(c.dicom("MR_small_RLE.dcm"), ExplicitVRLittleEndian),
        says=("could not be decoded", DAMAGED),
    ),
    Case(
        "DICOM claiming an unknown transfer syntax",
        lambda c: with_transfer_syntax(c.dicom("CT_small.dcm"), "1.2.3.4"),
        says=("cannot decode", "Export it uncompressed"),
    ),
    readable_dicom("big-endian multi-frame DICOM", "emri_small_big_endian.dcm", (64, 64),
                   notices=("Multi-frame DICOM: showing frame 1 of 10.",), check=same_pixels_as("emri_small.dcm")),
    readable_dicom("big-endian DICOM", "MR_small_bigendian.dcm", (64, 64), check=same_pixels_as("MR_small.dcm")),
    readable_dicom("deflated DICOM", "image_dfl.dcm", (512, 512)),
    readable_dicom("RLE DICOM", "MR_small_RLE.dcm", (64, 64), check=same_pixels_as("MR_small.dcm")),
    readable_dicom("JPEG lossless DICOM", "JPEG-LL.dcm", (1024, 256)),
    readable_dicom("signed DICOM with rescale", "CT_small.dcm", (128, 128), check=hounsfield_units),
    Case(
        "signed DICOM, negative values, no rescale",
        signed_without_rescale,
        shape=(128, 128),
        image_format="DICOM",
        check=negative_values_kept,
    ),
    readable_dicom("multi-frame DICOM", "emri_small.dcm", (64, 64),
                   notices=("Multi-frame DICOM: showing frame 1 of 10.",), check=first_dicom_frame),
    readable_dicom("RGB DICOM", "SC_rgb.dcm", (100, 100),
                   notices=("Colour DICOM image (RGB): converted to greyscale.",)),
    readable_dicom("YBR_FULL DICOM", "SC_ybr_full_uncompressed.dcm", (100, 100),
                   notices=("Colour DICOM image (YBR_FULL): converted to greyscale.",)),
    readable_dicom("YBR_FULL_422 DICOM", "SC_ybr_full_422_uncompressed.dcm", (100, 100),
                   notices=("Colour DICOM image (YBR_FULL_422): converted to greyscale.",)),
    readable_dicom("DICOM with a broken sequence", "bad_sequence.dcm", (512, 512)),
    # DICOM headers that contradict the pixels
    Case(
        "DICOM rescale slope NaN",
        lambda c: edited_dicom(c, "CT_small.dcm", RescaleSlope="NaN"),
        says=("rescale slope or intercept is not a usable number", "Export it again"),
    ),
    Case(
        "DICOM rescale overflowing float32",
        lambda c: edited_dicom(c, "CT_small.dcm", RescaleSlope="1e36"),
        says=("rescale slope or intercept",),
    ),
    Case(
        "RGB DICOM declaring signed samples",
        lambda c: edited_dicom(c, "SC_rgb.dcm", PixelRepresentation=1),
        says=("pixel values outside the range its header declares", "Export it again"),
    ),
    Case(
        "JPEG RGB DICOM understating Bits Stored",
        lambda c: edited_dicom(c, "SC_rgb_jpeg_dcmtk.dcm", BitsStored=1, HighBit=0),
        says=("pixel values outside the range its header declares",),
    ),
]


@pytest.fixture
def corpus(request: pytest.FixtureRequest, tmp_path: Path) -> Corpus:
    return Corpus(request, tmp_path)


@pytest.mark.timeout(30)
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom and PIL on the malformed input
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the overflowing rescale
@pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])
def test_bad_input(corpus: Corpus, case: Case) -> None:
    source = case.build(corpus)
    if case.says:
        with pytest.raises(XRayError) as raised:
            read_xray(source)
        message = str(raised.value)
        assert_clear_message(message)
        for words in case.says:
            assert words in message, f"{words!r} not in {message!r}"
        return
    xray = read_xray(source)
    assert_sane(xray)
    assert (xray.metadata.rows, xray.metadata.columns) == case.shape
    assert xray.metadata.format == case.image_format
    for notice in case.notices:
        assert notice in xray.notices, xray.notices
    if case.check is not None:
        case.check(xray, corpus)


def test_the_corpus_covers_at_least_25_kinds() -> None:
    kinds = [case.kind for case in CASES]
    assert len(set(kinds)) == len(kinds) >= 25


# --- known limits of the decoders ----------------------------------------------------------

# Pillow reports no error when libjpeg or zlib runs out of data before the last row but finds
# the end of the stream: libjpeg fills the missing rows with mid-grey, Pillow's PNG decoder
# leaves them black. The reader cannot tell such an image from a complete one.


@pytest.mark.xfail(strict=True, reason="libjpeg fills a scan cut short before EOI with grey; Pillow reports no error")
def test_jpeg_cut_short_but_ended_is_refused(corpus: Corpus) -> None:
    data = corpus.jpeg()
    with pytest.raises(XRayError, match=DAMAGED):
        read_xray(data[: len(data) // 2] + b"\xff\xd9")


@pytest.mark.xfail(strict=True, reason="Pillow leaves the rows after an early end of the zlib stream black")
def test_png_whose_data_ends_early_is_refused() -> None:
    with pytest.raises(XRayError, match=DAMAGED):
        read_xray(png_declaring(512, 512, rows=4))


def test_scan_count_is_checked_on_the_sos_markers_only(corpus: Corpus) -> None:
    """A normal progressive JPEG (about 6 scans for grey) is read; the limit is far above it."""
    data = encode(Image.fromarray(corpus.grey()), "JPEG", progressive=True)
    assert 2 < len(re.findall(b"\xff\xda", data)) < 20
    assert_sane(read_xray(data))
    assert_sane(read_xray(repeated_scans(corpus, 90)))
