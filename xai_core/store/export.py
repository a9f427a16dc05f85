"""Reader feedback back into the loop: images/, labels.csv and boxes.csv that `evaluate` and `train` read.

Only films whose image a reader consented to keep are exported (``python -m xai_core feedback export``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..labels import PATHOLOGIES
from .audit import append_audit
from .database import Store, database_errors, write_transaction
from .feedback import require_reader
from .schema import ConsentedImage, FeedbackRecord


@dataclass(frozen=True)
class ExportSummary:
    images: int
    boxes: int
    feedback: int
    audit_seq: int


def reader_label(record: FeedbackRecord) -> float | None:
    """What the reader's feedback says about the pathology: 1 present, 0 absent, None unknown.

    Boxes mean present and "no finding" absent; otherwise the verdict on the model's flag
    (probability >= the threshold shown) decides, and "unsure", or a label shown without a
    threshold (no flag to agree with), says nothing.
    """
    if record.boxes:
        return 1.0
    if record.no_finding:
        return 0.0
    shown = record.shown[record.pathology]
    if record.verdict == "unsure" or shown["threshold"] is None:
        return None
    flagged = shown["probability"] >= shown["threshold"]
    return float(flagged == (record.verdict == "agree"))


def _consensus(values: list[float | None]) -> str:
    """The readers' common label, or empty (unknown) when they disagree or none knows."""
    known = {value for value in values if value is not None}
    return f"{known.pop():.0f}" if len(known) == 1 else ""


def export_feedback(store: Store, out: Path, actor: str) -> ExportSummary:
    """Write images/, labels.csv and boxes.csv for the films whose image a reader consented to keep.

    The CSVs are what `evaluate --labels/--boxes` and `train --csv` read; boxes are in the
    exported PNG's pixels. Pathologies without feedback are left empty (unknown).
    """
    actor = require_reader(actor)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with database_errors(), Session(store.engine) as session:
        images = {image.pixel_sha256: image for image in session.execute(select(ConsentedImage)).scalars()}
        records = list(session.execute(select(FeedbackRecord).where(FeedbackRecord.pixel_sha256.in_(list(images)))
                                       .order_by(FeedbackRecord.id)).scalars())
    labels: dict[str, dict[str, list[float | None]]] = {}
    box_rows = []
    for record in records:
        image = images[record.pixel_sha256]
        name = f"{record.pixel_sha256[:16]}.png"
        labels.setdefault(name, {}).setdefault(record.pathology, []).append(reader_label(record))
        sx, sy = image.width / record.image_columns, image.height / record.image_rows
        box_rows += [[name, record.pathology, f"{b.x * sx:.2f}", f"{b.y * sy:.2f}", f"{b.w * sx:.2f}",
                      f"{b.h * sy:.2f}"] for b in record.boxes]
    for sha256, image in images.items():
        (out / "images" / f"{sha256[:16]}.png").write_bytes(image.png)
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", *PATHOLOGIES])
        for name in sorted(f"{sha256[:16]}.png" for sha256 in images):
            found = labels.get(name, {})
            writer.writerow([name, *(_consensus(found.get(label, [])) for label in PATHOLOGIES)])
    with open(out / "boxes.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "finding", "x", "y", "w", "h"])
        writer.writerows(box_rows)
    summary = {"images": len(images), "boxes": len(box_rows), "feedback": len(records)}
    with write_transaction(store) as session:
        seq = append_audit(session, store.clock(), actor, "export", summary).seq
    return ExportSummary(**summary, audit_seq=seq)
