"""How often the out-of-distribution warning fires, per source: `python -m xai_core check-ood --data DIR`.

Chest films should get no warning (the goal for other hospitals' frontal films: at most 5% at either level;
NIH test: at most 2%); non-chest images should get the strong one (at least 90%). The chest sources are the
splits the warning was NOT fitted on (fitting.py fits on train, sets the mild threshold on val) and JSRT,
another hospital system that no part of the fit saw; the non-chest images are non_chest.py's held-out side.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tqdm import tqdm

from .card import OutOfDistribution
from .data import read_images
from .errors import XRayError
from .imaging import read_xray
from .non_chest import non_chest_images
from .ood import Level, assess

# (row name, folder, splits): chest films that report only.
CHEST_SOURCES = (
    ("NIH test", "nih", ("test",)),
    ("NIH val (set the mild threshold)", "nih", ("val",)),
    ("nih_boxed val (set the mild threshold)", "nih_boxed", ("val",)),
    ("RSNA val (set the mild threshold)", "rsna", ("val",)),
    ("JSRT, another hospital system (all)", "jsrt", ("train", "val")),
    ("pediatric val (set the mild threshold)", "pediatric_pneumonia", ("val",)),
)


def levels_by_source(section: OutOfDistribution, data: Path) -> list[dict]:
    """Per source: how many images, and how many at each level."""
    rows = []
    for name, folder, splits in CHEST_SOURCES:
        paths = read_images(data / folder, splits)
        rows.append(_row(name, "frontal chest", [_level(path, section) for path in tqdm(paths, desc=name)]))
    images = non_chest_images()
    for held_out in (True, False):
        side = "held out" if held_out else "fitting side"
        for kind in sorted({image.kind for image in images}):
            levels = [assess(image.xray.pixels, section).level for image in images
                      if image.held_out == held_out and image.kind == kind]
            rows.append(_row(f"non-chest {side}: {kind}", "not chest", levels))
    return rows


def _level(path: Path, section: OutOfDistribution) -> Level | None:
    try:
        return assess(read_xray(path).pixels, section).level
    except XRayError:
        return None


def _row(name: str, truth: str, levels: list[Level | None]) -> dict:
    counts = Counter(level for level in levels if level is not None)
    total = sum(counts.values())
    return {"source": name, "truth": truth, "images": total,
            **{level.value: counts[level] for level in Level},
            "warned_share": round((total - counts[Level.FRONTAL_CHEST]) / total, 4) if total else None,
            "strong_share": round(counts[Level.NOT_CHEST] / total, 4) if total else None}


def format_levels(rows: list[dict]) -> str:
    header = f"{'source':<52} {'images':>6} {'none':>6} {'mild':>6} {'strong':>6}  warned  strong"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['source']:<52} {row['images']:>6} {row[Level.FRONTAL_CHEST.value]:>6} "
                     f"{row[Level.DIFFERS.value]:>6} {row[Level.NOT_CHEST.value]:>6}  "
                     f"{100 * (row['warned_share'] or 0):5.1f}%  {100 * (row['strong_share'] or 0):5.1f}%")
    return "\n".join(lines)
