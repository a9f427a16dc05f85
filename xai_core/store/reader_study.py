"""The figures a reader study needs (``python -m xai_core feedback stats``): how often readers agreed with
the model's flag per pathology, and their reading time (first view of a film to its saved verdict) per
reader and per overlay shown."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from statistics import median

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..labels import PATHOLOGIES
from .audit import as_utc
from .database import Store, database_errors
from .feedback import VERDICTS
from .schema import AuditEvent, FeedbackRecord


@dataclass(frozen=True)
class Agreement:
    """How readers judged the model's flag on one pathology, and the operating points it was flagged at."""

    pathology: str
    agree: int
    disagree: int
    unsure: int
    model_versions: tuple[str, ...]
    operating_points: tuple[str, ...]

    @property
    def total(self) -> int:
        return self.agree + self.disagree + self.unsure


@dataclass(frozen=True)
class ReadingTime:
    """Seconds from a reader's first view of a film to their saved verdict, for one group."""

    group: str
    count: int
    median_seconds: float


@dataclass(frozen=True)
class FeedbackStats:
    agreement: list[Agreement]
    by_reader: list[ReadingTime]
    by_overlay: list[ReadingTime]


def overlay_key(overlay: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={overlay[key]}" for key in sorted(overlay)) or "default"


def feedback_stats(store: Store) -> FeedbackStats:
    """Agreement per pathology and reading times per reader and per overlay shown."""
    with database_errors(), Session(store.engine) as session:
        records = list(session.execute(select(FeedbackRecord).order_by(FeedbackRecord.id)).scalars())
        views = session.execute(select(AuditEvent.actor, AuditEvent.at, AuditEvent.details)
                                .where(AuditEvent.action == "explanation_viewed")).all()
    first_view: dict[tuple[str, str], datetime] = {}
    for actor, at, details in views:
        key = (actor, json.loads(details)["pixel_sha256"])
        first_view[key] = min(first_view.get(key, at), at)
    return FeedbackStats(_agreement(records), *_reading_times(records, first_view))


def _agreement(records: list[FeedbackRecord]) -> list[Agreement]:
    result = []
    for pathology in PATHOLOGIES:
        mine = [r for r in records if r.pathology == pathology]
        if mine:
            counts = {verdict: sum(r.verdict == verdict for r in mine) for verdict in VERDICTS}
            result.append(Agreement(pathology, counts["agree"], counts["disagree"], counts["unsure"],
                                    tuple(sorted({r.model_version for r in mine})),
                                    tuple(sorted({r.operating_point or "youden (before 0002)" for r in mine}))))
    return result


def _reading_times(records: list[FeedbackRecord], first_view: dict[tuple[str, str], datetime]
                   ) -> tuple[list[ReadingTime], list[ReadingTime]]:
    by_reader: dict[str, list[float]] = {}
    by_overlay: dict[str, list[float]] = {}
    for record in records:
        viewed = first_view.get((record.reader, record.pixel_sha256))
        if viewed is None:
            continue
        seconds = (as_utc(record.saved_at) - as_utc(viewed)).total_seconds()
        if seconds >= 0:
            by_reader.setdefault(record.reader, []).append(seconds)
            by_overlay.setdefault(overlay_key(record.overlay), []).append(seconds)

    def summarise(groups: dict[str, list[float]]) -> list[ReadingTime]:
        return [ReadingTime(group, len(values), float(median(values))) for group, values in sorted(groups.items())]

    return summarise(by_reader), summarise(by_overlay)


def format_stats(stats: FeedbackStats) -> str:
    lines = ["pathology             agree  disagree  unsure  total  agree%  model versions  flagged at"]
    for row in stats.agreement:
        lines.append(f"{row.pathology:<20} {row.agree:>6} {row.disagree:>9} {row.unsure:>7} {row.total:>6} "
                     f"{100 * row.agree / row.total:>6.1f}  {', '.join(row.model_versions)}  "
                     f"{', '.join(row.operating_points)}")
    for title, groups in (("reader", stats.by_reader), ("overlay", stats.by_overlay)):
        lines += ["", f"reading time by {title} (first view to saved verdict)", "  n  median s  " + title]
        lines += [f"{row.count:>3} {row.median_seconds:>9.1f}  {row.group}" for row in groups]
    return "\n".join(lines)
