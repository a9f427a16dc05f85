"""Images that are not frontal chest radiographs, obtainable honestly, for fitting and checking the warning.

Three kinds, none of them a chest film:
- real medical images shipped by pydicom and pydicom-data (CT, MR, ultrasound, a tibia radiograph, secondary
  captures...), the pydicom-data chest film `RG1_*` left out;
- pictures shipped inside the viewer's own dependencies (scikit-image's `skimage.data`, matplotlib's sample
  data): photographs, micrographs, a scanned page, drawings;
- pictures made here: rendered documents and photograph-like scenes.

Each image is assigned once, by a digest of its family's name, to the fitting side or to the held-out side
that only reports; copies of one picture (a DICOM in several transfer syntaxes) are kept once, and every
file of a pydicom family (`MR2_*`, `SC_*`, ...) lies on the same side.
No lateral chest view is among them: none ships in these packages, and a flipped or cropped frontal film
is not one. Nothing here downloads anything.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import util
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .errors import XRayError
from .imaging import XRay, read_xray

HELD_OUT_SHARE = 0.4  # of each kind, by a digest of the image's name
GENERATED_PER_KIND = 30  # documents and photograph-like scenes each
DUPLICATE_DIFFERENCE = 0.02  # mean absolute grey difference at 16 x 16 below which two images are one
CHEST_FILES = ("RG1_",)  # pydicom-data's frontal chest CR, in several encodings: not a non-chest image
WORDS = ("patient", "report", "the", "of", "and", "result", "normal", "date", "signed", "clinic", "page",
         "invoice", "total", "summary", "dose", "mg", "review", "plan", "follow", "up", "history", "notes",
         "referral", "laboratory", "value", "range", "table", "figure", "section", "approved", "version")


@dataclass(frozen=True, eq=False)
class NonChestImage:
    name: str  # where it comes from, e.g. "pydicom:MR_small.dcm", "skimage:astronaut.png", "generated:document-3"
    kind: str  # "medical DICOM", "packaged picture", "generated document", "generated photograph"
    xray: XRay
    held_out: bool


def non_chest_images() -> list[NonChestImage]:
    """Every non-chest image this machine has, once each, with its side (fit or held out)."""
    images, seen = [], []
    for name, kind, source in _sources():
        try:
            xray = read_xray(source)
        except XRayError:
            continue  # a test file made to be unreadable, or one without pixels
        fingerprint = _fingerprint(xray)
        if any(np.abs(fingerprint - other).mean() < DUPLICATE_DIFFERENCE for other in seen):
            continue
        seen.append(fingerprint)
        images.append(NonChestImage(name=name, kind=kind, xray=xray, held_out=_held_out(_family(name))))
    return images


def _family(name: str) -> str:
    """pydicom's files of one picture or series share the part of the name before the first '_'."""
    return name.split("_")[0] if name.startswith("pydicom:") else name


def _held_out(family: str) -> bool:
    return int(hashlib.sha256(family.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < HELD_OUT_SHARE


def _fingerprint(xray: XRay) -> np.ndarray:
    """The picture at 16 x 16: another encoding, a lossy copy or another frame of it differs by little."""
    return np.asarray(Image.fromarray(xray.pixels, mode="F").resize((16, 16), Image.BOX))


def _sources() -> Iterator[tuple[str, str, bytes | Path]]:
    yield from (("pydicom:" + path.name, "medical DICOM", path) for path in _dicom_files())
    yield from (("package:" + name, "packaged picture", path) for name, path in _package_pictures())
    for index in range(GENERATED_PER_KIND):
        yield f"generated:document-{index}", "generated document", _png(_document(np.random.default_rng(index)))
        yield f"generated:photograph-{index}", "generated photograph", _jpeg(_scene(np.random.default_rng(10_000 + index)))


def _dicom_files() -> list[Path]:
    folders = []
    for module in ("pydicom.data", "data_store"):  # data_store is where pydicom-data installs its files
        spec = util.find_spec(module)
        if spec is not None and spec.submodule_search_locations:
            folders += [Path(location) for location in spec.submodule_search_locations]
    files = {path.name: path for folder in folders for path in sorted(folder.rglob("*.dcm"))}
    return [path for name, path in sorted(files.items()) if not name.startswith(CHEST_FILES)]


def _package_pictures() -> list[tuple[str, Path]]:
    pictures = []
    for module, folder in (("skimage.data", ""), ("matplotlib", "mpl-data/sample_data")):
        spec = util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        root = Path(spec.origin).parent / folder
        pictures += [(f"{module.split('.')[0]}:{path.name}", path) for path in sorted(root.glob("*"))
                     if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".tif")]
    return pictures


def _document(rng: np.random.Generator) -> Image.Image:
    """A page of text, sometimes with a table, on white or greyish paper, sometimes scanned askew."""
    width = int(rng.integers(600, 1000))
    height = int(width * rng.uniform(1.2, 1.5)) if rng.random() < 0.7 else int(width * rng.uniform(0.6, 0.8))
    paper = int(rng.integers(215, 256))
    page = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(page)
    size = int(rng.integers(12, 28))
    font, title = ImageFont.load_default(size=size), ImageFont.load_default(size=int(size * 1.6))
    margin, y = int(width * rng.uniform(0.06, 0.12)), int(height * 0.06)
    draw.text((margin, y), " ".join(rng.choice(WORDS, 3)).title(), fill=int(rng.integers(0, 60)), font=title)
    y += int(size * 3)
    while y < height - margin:
        if rng.random() < 0.15:  # a table
            rows, columns = int(rng.integers(3, 8)), int(rng.integers(2, 5))
            cell_w, cell_h = (width - 2 * margin) // columns, int(size * 1.8)
            for row in range(rows + 1):
                draw.line([(margin, y + row * cell_h), (width - margin, y + row * cell_h)], fill=40, width=1)
            for column in range(columns + 1):
                draw.line([(margin + column * cell_w, y), (margin + column * cell_w, y + rows * cell_h)], fill=40)
            for row in range(rows):
                for column in range(columns):
                    draw.text((margin + column * cell_w + 4, y + row * cell_h + 3), str(rng.choice(WORDS)),
                              fill=20, font=font)
            y += rows * cell_h + size * 2
            continue
        line = " ".join(rng.choice(WORDS, int(rng.integers(4, 14))))
        draw.text((margin, y), line, fill=int(rng.integers(0, 80)), font=font)
        y += int(size * rng.uniform(1.3, 2.0))
    if rng.random() < 0.4:  # scanned: slightly rotated on a dark scanner lid
        page = page.rotate(float(rng.uniform(-4, 4)), expand=True, fillcolor=int(rng.integers(0, 90)))
    return page


def _scene(rng: np.random.Generator) -> Image.Image:
    """A photograph-like colour picture: a sky-to-ground gradient, shapes, soft texture and sensor noise."""
    height, width = int(rng.integers(360, 900)), int(rng.integers(480, 1200))
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    fraction = np.linspace(0, 1, height)[:, None, None]
    canvas = (top * (1 - fraction) + bottom * fraction) * np.ones((1, width, 1))
    picture = Image.fromarray(canvas.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(3, 25))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(20, width / 2), rng.uniform(20, height / 2)
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        box = [x - w / 2, y - h / 2, x + w / 2, y + h / 2]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    picture = picture.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 6))))
    noisy = np.asarray(picture, dtype=np.float32) + rng.normal(0, rng.uniform(1, 12), (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
