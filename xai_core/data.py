"""Dataset readers: NIH ChestX-ray14 (subset or full), the pediatric pneumonia set, any CSV.

Every reader returns `Case` records: an image path and a vector of 14 labels in
PATHOLOGIES order, where NaN means unknown (not negative). The pediatric set
only knows Pneumonia, so its other 13 labels are NaN and a masked loss ignores them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .alignment import Box
from .errors import XRayError
from .labels import PATHOLOGIES, canonical_label

UNKNOWN = math.nan


@dataclass(frozen=True)
class Case:
    image: Path
    labels: np.ndarray  # float32 (14,): 1 positive, 0 negative, NaN unknown
    source: str  # "nih", "pediatric" or the CSV's name: for balancing and per-source reports
    patient: str = ""
    view: str = ""
    opacity: float = UNKNOWN  # RSNA's "Lung Opacity" (1/0), a training-only target; NaN elsewhere


def _read_rows(csv_path: Path) -> list[dict[str, str]]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError as error:
        raise XRayError(f"CSV file not found: {csv_path}") from error
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise XRayError(f"Could not read the CSV file {csv_path.name}: {error}") from error


def _label_value(text: str, column: str, row_number: int) -> float:
    text = (text or "").strip()
    if text == "" or text.lower() in {"nan", "na", "unknown"}:
        return UNKNOWN
    try:
        value = float(text)
    except ValueError as error:
        raise XRayError(f"Row {row_number}, column '{column}': '{text}' is not 0, 1 or empty.") from error
    if value == -1:  # CheXpert's "uncertain": treated as unknown rather than guessed
        return UNKNOWN
    if value not in (0.0, 1.0):
        raise XRayError(f"Row {row_number}, column '{column}': '{text}' is not 0, 1 or empty.")
    return value


def read_label_csv(
    csv_path: str | Path, images_dir: str | Path, *, source: str | None = None, splits: Iterable[str] | None = None
) -> list[Case]:
    """A CSV with an `image` column (a path relative to images_dir) and 0/1 columns named after pathologies.

    Empty cells are unknown; columns that are not pathologies are ignored; NIH's
    "Infiltrate", CheXpert's "Pleural Effusion" and similar aliases are accepted.
    Pathologies without a column are unknown for every image. With splits, only
    the rows whose `split` column holds one of them are kept. RSNA's labels.csv
    (class, lung_opacity) is read by RSNA's rule (_rsna_cases).
    """
    csv_path, images_dir = Path(csv_path), Path(images_dir)
    rows = _read_rows(csv_path)
    if not rows:
        raise XRayError(f"{csv_path.name} has no rows.")
    columns = list(rows[0].keys())
    if splits is not None:
        if "split" not in columns:
            raise XRayError(f"{csv_path.name} has no 'split' column to select {', '.join(splits)} from.")
        wanted = set(splits)
        rows = [row for row in rows if row["split"] in wanted]
    image_column = next((c for c in columns if c and c.strip().lower() in {"image", "path", "image index"}), None)
    if image_column is None:
        raise XRayError(f"{csv_path.name} needs an 'image' column with the image file names.")
    label_columns = {c: canonical_label(c) for c in columns if c and canonical_label(c)}
    if not label_columns and {"class", "lung_opacity"} <= set(columns):
        return _rsna_cases(rows, images_dir, source or csv_path.stem, csv_path.name)
    if not label_columns:
        raise XRayError(f"{csv_path.name} has no column named after any of the 14 pathologies.")
    cases = []
    for number, row in enumerate(rows, start=2):
        labels = np.full(len(PATHOLOGIES), UNKNOWN, dtype=np.float32)
        for column, label in label_columns.items():
            labels[PATHOLOGIES.index(label)] = _label_value(row[column], column, number)
        cases.append(
            Case(
                image=images_dir / row[image_column].strip(),
                labels=labels,
                source=source or csv_path.stem,
                patient=(row.get("patient_id") or row.get("patient") or "").strip(),
                view=(row.get("view") or row.get("View Position") or "").strip(),
            )
        )
    return cases


def read_nih(root: str | Path, splits: Iterable[str] = ("train",)) -> list[Case]:
    """The NIH subset in ../shared/data/nih layout: labels.csv with a `split` column and images/."""
    root = Path(root)
    return read_label_csv(root / "labels.csv", root / "images", source="nih", splits=splits)


def read_pediatric(root: str | Path, splits: Iterable[str] = ("train",)) -> list[Case]:
    """The pediatric pneumonia set: only Pneumonia is known (the `pneumonia` column)."""
    root = Path(root)
    return read_label_csv(root / "labels.csv", root / "images", source="pediatric", splits=splits)


def read_images(root: str | Path, splits: Iterable[str], *, adults_only: bool = False) -> list[Path]:
    """The images of a data folder (labels.csv with `image` and `split` columns, images/) in these splits;
    with adults_only, those whose `age` column says 18 or more (rows without an age are kept)."""
    root, splits = Path(root), set(splits)
    rows = [row for row in _read_rows(root / "labels.csv") if row.get("split") in splits]
    if adults_only:
        rows = [row for row in rows if not (row.get("age") or "").strip() or float(row["age"]) >= 18]
    return [root / "images" / row["image"] for row in rows]


def read_rsna(root: str | Path, splits: Iterable[str] = ("train",)) -> list[Case]:
    """The RSNA Pneumonia Detection Challenge folder: labels.csv (class, lung_opacity, split) and images/."""
    root = Path(root)
    return read_label_csv(root / "labels.csv", root / "images", source="rsna", splits=splits)


def _rsna_cases(rows: list[dict[str, str]], images_dir: Path, source: str, csv_name: str) -> list[Case]:
    """RSNA's labels: "Lung Opacity" is not one of the 14 NIH labels, so it is kept as its own target
    (Case.opacity). A "Normal" film has no finding at all: negative for all 14 labels. Any other film
    ("Lung Opacity", "No Lung Opacity / Not Normal") has some abnormality RSNA did not name: unknown for all 14."""
    cases = []
    for number, row in enumerate(rows, start=2):
        try:
            opacity = float(_label_value(row["lung_opacity"], "lung_opacity", number))
            normal = row["class"].strip() == "Normal"
            image = images_dir / row["image"].strip()
        except (KeyError, AttributeError) as error:
            raise XRayError(f"{csv_name}, row {number}: needs image, class and lung_opacity.") from error
        labels = np.full(len(PATHOLOGIES), 0.0 if normal else UNKNOWN, dtype=np.float32)
        cases.append(Case(image=image, labels=labels, source=source, view=(row.get("view") or "").strip(),
                          opacity=opacity))
    return cases


@dataclass(frozen=True)
class Finding:
    label: str
    box: Box


def read_boxes(csv_path: str | Path, *, other_findings: Iterable[str] = ()) -> dict[str, list[Finding]]:
    """Radiologist boxes: columns image, finding, x, y, w, h in that image's pixels.

    Finding names go through the labels' aliases. Where the CSV has a
    `nih_label` column (ChestX-Det's boxes), that column names the label, and
    rows with an empty one (findings outside the 14, such as Calcification)
    are skipped. Names in other_findings (e.g. RSNA's "Lung Opacity", a
    training-only target) are kept as they are.
    """
    csv_path = Path(csv_path)
    boxes: dict[str, list[Finding]] = {}
    others = set(other_findings)
    for number, row in enumerate(_read_rows(csv_path), start=2):
        if "nih_label" in row and not (row["nih_label"] or "").strip():
            continue
        try:
            name = (row["nih_label"] if "nih_label" in row else row["finding"]).strip()
            label = name if name in others else canonical_label(name)
            box = Box(*(float(row[key]) for key in ("x", "y", "w", "h")))
            image = Path(row["image"].strip()).name
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise XRayError(f"{csv_path.name}, row {number}: needs image, finding, x, y, w, h.") from error
        except XRayError as error:
            raise XRayError(f"{csv_path.name}, row {number}: {error}") from error
        if label is None:
            raise XRayError(f"{csv_path.name}, row {number}: '{name}' is not one of the 14 pathologies.")
        boxes.setdefault(image, []).append(Finding(label, box))
    return boxes
