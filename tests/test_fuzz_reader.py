"""Fuzzing read_xray with mutated real files: only XRayError may escape, and reads are sane.

Three views of a file: its raw bytes (bit flips, byte replacements, truncation,
insertion, deletion, chunk duplication, half of them in the header); its PNG
chunks (dropped, repeated, reordered or refilled, with valid CRCs, which raw
edits almost never keep); its DICOM image header (the pixel, rescale and window
elements and the transfer syntax set to edge values). Each call must also stay
within a memory bound. The examples are derandomised so CI runs are repeatable;
benchmarks/fuzz_reader.py is the long run.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from reader_fuzzing import (
    HEADER_BYTES,
    MUTATION_KINDS,
    Mutation,
    Sources,
    assert_clear_message,
    assert_sane,
    fuzz_sources,
    mutate,
    with_transfer_syntax,
)

from xai_core.errors import XRayError
from xai_core.imaging import MAX_PIXELS, read_xray

# Python-visible memory one call may take at its peak: six float32 copies of the largest
# image the reader accepts. An allocation sized by an unchecked header field (frames x
# rows x columns, an inflated data set, a codestream's own size) goes far beyond it.
PEAK_BYTES = 6 * 4 * MAX_PIXELS

FUZZ_SETTINGS = {
    "deadline": 5000,  # ms per example; the slowest real source reads in about 20 ms
    "derandomize": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@pytest.fixture(scope="session")
def sources(request: pytest.FixtureRequest) -> Sources:
    try:
        shared_data = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        shared_data = None
    found = fuzz_sources(shared_data, lambda name: get_testdata_file(name, download=False))
    if not found:
        pytest.skip("neither the shared data folder nor pydicom-data is installed")
    return found


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Yield a list that holds, on exit, the peak traced memory in bytes (numpy arrays included)."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def read_or_refuse(data: bytes) -> None:
    """read_xray must return a sane image or raise XRayError with a clear message, in bounded memory."""
    with warnings.catch_warnings(), peak_memory() as peak:
        warnings.simplefilter("ignore")  # pydicom, PIL and numpy warn about what they repair
        try:
            xray = read_xray(data)
        except XRayError as error:
            xray = None
            assert_clear_message(str(error))
    if xray is not None:
        assert_sane(xray)
    assert peak[0] < PEAK_BYTES, f"one call took {peak[0] / 2**20:.0f} MiB"


# --- raw bytes ---------------------------------------------------------------------------

positions = st.one_of(st.integers(0, HEADER_BYTES - 1), st.integers(0, 2**24))
mutations = st.builds(
    Mutation,
    kind=st.sampled_from(MUTATION_KINDS),
    position=positions,
    amount=st.one_of(st.integers(0, 255), st.integers(256, 4096)),
    payload=st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from([b"\xff\xff\xff\xff", b"\xff\xd9"])),
)


@settings(max_examples=150, **FUZZ_SETTINGS)
@given(data=st.data())
def test_mutated_bytes(sources: Sources, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(sources)), label="source")
    edits = data.draw(st.lists(mutations, min_size=1, max_size=6), label="mutations")
    read_or_refuse(mutate(sources[name], edits))


# --- PNG chunks --------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each chunk of a well-formed PNG."""
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        chunks.append((data[position + 4 : position + 8], data[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def png_from(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        for kind, payload in chunks
    )


@settings(max_examples=50, **FUZZ_SETTINGS)
@given(data=st.data())
def test_png_chunk_edits(sources: Sources, data: st.DataObject) -> None:
    pngs = sorted(name for name in sources if name.endswith(".png"))
    if not pngs:
        pytest.skip("no PNG source")
    chunks = png_chunks(sources[data.draw(st.sampled_from(pngs), label="source")])
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(chunks) - 1))
        edit = data.draw(st.sampled_from(["drop", "repeat", "swap", "refill", "resize"]))
        if edit == "drop" and len(chunks) > 1:
            del chunks[at]
        elif edit == "repeat":
            chunks.insert(at, chunks[at])
        elif edit == "swap":
            other = data.draw(st.integers(0, len(chunks) - 1))
            chunks[at], chunks[other] = chunks[other], chunks[at]
        elif edit == "refill":
            kind, payload = chunks[at]
            chunks[at] = (kind, data.draw(st.binary(min_size=len(payload), max_size=len(payload))))
        elif edit == "resize":  # IHDR's width and height, the CRC kept valid
            kind, payload = chunks[0]
            size = data.draw(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)))
            chunks[0] = (kind, struct.pack(">II", *size) + payload[8:])
    read_or_refuse(png_from(chunks))


# --- DICOM image header ----------------------------------------------------------------------

KEPT = st.none()  # the element is left as the file has it
UNSIGNED_SHORTS = KEPT | st.sampled_from([0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 31, 32, 33, 64, 255, 4096, 32767, 65535])
DECIMALS = st.sampled_from(["0", "-0", "1", "-1", "0.5", "1e-30", "1e30", "1e36", "3e38", "1e999", "NaN", "inf", "-inf"])
FRAME_COUNTS = KEPT | st.sampled_from(["0", "1", "2", "11", "-1", "99999999"])
PHOTOMETRIC_INTERPRETATIONS = KEPT | st.sampled_from(
    ["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "PALETTE COLOR", "HSV", ""]
)
VOI_LUT_FUNCTIONS = st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID", "BOGUS"])
# Elements that must agree with each other and with the pixel data, edited a group at a time
# so that, say, the rescale can be wrong while the pixels still decode. Rescale and window
# elements are always written as a pair: pydicom ignores a slope without an intercept.
HEADER_GROUPS = {
    "size": {"Rows": UNSIGNED_SHORTS, "Columns": UNSIGNED_SHORTS, "NumberOfFrames": FRAME_COUNTS},
    "bits": {
        "BitsAllocated": UNSIGNED_SHORTS,
        "BitsStored": UNSIGNED_SHORTS,
        "HighBit": UNSIGNED_SHORTS,
        "PixelRepresentation": UNSIGNED_SHORTS,
    },
    "colour": {
        "SamplesPerPixel": UNSIGNED_SHORTS,
        "PhotometricInterpretation": PHOTOMETRIC_INTERPRETATIONS,
        "PlanarConfiguration": UNSIGNED_SHORTS,
    },
    "rescale": {"RescaleSlope": DECIMALS, "RescaleIntercept": DECIMALS},
    "window": {"WindowCenter": DECIMALS, "WindowWidth": DECIMALS, "VOILUTFunction": VOI_LUT_FUNCTIONS},
}
TRANSFER_SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
    "1.2.840.10008.1.2.4.100",  # MPEG-2: no decoder
    "1.2.3.4",
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the invalid values written
@settings(max_examples=100, **FUZZ_SETTINGS)
@given(data=st.data())
def test_dicom_header_edits(sources: Sources, data: st.DataObject) -> None:
    images = sorted(name for name in sources if name.endswith(".dcm") and name != "rtplan.dcm")
    if not images:
        pytest.skip("no DICOM source")
    original = sources[data.draw(st.sampled_from(images), label="source")]
    ds = pydicom.dcmread(io.BytesIO(original))
    for group in data.draw(st.sets(st.sampled_from(sorted(HEADER_GROUPS)), min_size=1, max_size=2), label="groups"):
        for keyword, values in HEADER_GROUPS[group].items():
            value = data.draw(values, label=keyword)
            if value is not None:
                ds[keyword] = DataElement(tag_for_keyword(keyword), dictionary_VR(keyword), value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    edited = buffer.getvalue()
    if data.draw(st.booleans(), label="claim another transfer syntax"):
        edited = with_transfer_syntax(edited, data.draw(st.sampled_from(TRANSFER_SYNTAXES), label="transfer syntax"))
    read_or_refuse(edited)


def test_the_sources_cover_png_jpeg_and_dicom(shared_data: Path, sources: Sources) -> None:
    suffixes = {Path(name).suffix for name in sources}
    assert {".png", ".jpeg", ".dcm"} <= suffixes, suffixes
