"""What a PACS search lists, as a reader picks from it: studies, series and instances, with no patient
name and no free text, and whether a listing holds all the PACS has."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID


@dataclass(frozen=True)
class StudySummary:
    """A study as listed for a reader to pick: no patient name, no free text."""

    study_uid: str
    date: str | None  # YYYYMMDD as stored
    modalities: tuple[str, ...]
    series_count: int | None
    instance_count: int | None

    def line(self) -> str:
        """e.g. "2004-08-26 · CR · 1 instance"."""
        return " · ".join([readable_date(self.date), ", ".join(self.modalities) or "modality unknown",
                           _count(self.instance_count)])


@dataclass(frozen=True)
class InstanceSummary:
    """One instance of a study, with what a reader needs to choose a film."""

    study_uid: str
    series_uid: str
    sop_uid: str
    kind: str  # the SOP class's name, e.g. "Computed Radiography Image Storage"
    date: str | None
    modality: str | None
    view_position: str | None
    body_part: str | None
    series_number: int | None
    instance_number: int | None

    def line(self) -> str:
        """e.g. "2004-08-26 · CR · PA · CHEST · series 1 · image 1"."""
        parts = [readable_date(self.date), self.modality, self.view_position, self.body_part,
                 f"series {self.series_number}" if self.series_number is not None else None,
                 f"image {self.instance_number}" if self.instance_number is not None else None]
        return " · ".join(part for part in parts if part)

    @property
    def is_image(self) -> bool:
        return "Image Storage" in self.kind


@dataclass(frozen=True)
class SeriesSummary:
    """One series of a study, to narrow a listing that is too long: no free text."""

    series_uid: str
    series_number: int | None
    modality: str | None
    body_part: str | None
    date: str | None
    instance_count: int | None

    def line(self) -> str:
        """e.g. "series 2 · 2004-08-26 · CR · CHEST · 50 instances"."""
        parts = [f"series {self.series_number}" if self.series_number is not None else "series number unknown",
                 readable_date(self.date), self.modality, self.body_part, _count(self.instance_count)]
        return " · ".join(part for part in parts if part)


@dataclass(frozen=True)
class InstanceListing:
    """A study's (or one series') instances as listed, and whether that is all of them."""

    instances: tuple[InstanceSummary, ...]
    complete: bool  # False: the PACS holds more than `limit`, and only `limit` of them are listed
    limit: int
    series_uid: str | None = None  # the series the listing was narrowed to; None: the whole study

    def notice(self) -> str | None:
        """What a reader must know about an incomplete listing, and how to narrow it; None when complete."""
        if self.complete:
            return None
        shown = (f"The list is incomplete: the PACS holds more than {self.limit} instances "
                 f"{'in this series' if self.series_uid else 'in this study'}, and only {self.limit} of them, "
                 "in the order the PACS sent them, are listed.")
        if self.series_uid is None:
            return f"{shown} Pick one of the study's series to list that series alone."
        return (f"{shown} A series this long is a volume (CT, MR) or a film sequence rather than radiographs; "
                "open the radiograph you need from another series, or find it in the PACS's own viewer.")


def study_summary(item: Dataset) -> StudySummary:
    return StudySummary(
        study_uid=str(item.StudyInstanceUID),
        date=_text(item.get("StudyDate")),
        modalities=tuple(str(value) for value in _values(item.get("ModalitiesInStudy"))),
        series_count=_integer(item.get("NumberOfStudyRelatedSeries")),
        instance_count=_integer(item.get("NumberOfStudyRelatedInstances")),
    )


def series_summary(item: Dataset) -> SeriesSummary:
    return SeriesSummary(
        series_uid=str(item.SeriesInstanceUID),
        series_number=_integer(item.get("SeriesNumber")),
        modality=_text(item.get("Modality")),
        body_part=_text(item.get("BodyPartExamined")),
        date=_text(item.get("SeriesDate")),
        instance_count=_integer(item.get("NumberOfSeriesRelatedInstances")),
    )


def instance_summary(study_uid: str, item: Dataset) -> InstanceSummary:
    return InstanceSummary(
        study_uid=study_uid,
        series_uid=str(item.SeriesInstanceUID),
        sop_uid=str(item.SOPInstanceUID),
        kind=sop_class_name(item.get("SOPClassUID")),
        date=_text(item.get("ContentDate") or item.get("SeriesDate") or item.get("StudyDate")),
        modality=_text(item.get("Modality")),
        view_position=_text(item.get("ViewPosition")),
        body_part=_text(item.get("BodyPartExamined")),
        series_number=_integer(item.get("SeriesNumber")),
        instance_number=_integer(item.get("InstanceNumber")),
    )


def sop_class_name(uid: object) -> str:
    sop_class = UID(str(uid or ""))
    return sop_class.name if sop_class.is_valid and sop_class.name != str(sop_class) else "unknown kind of object"


def readable_date(value: str | None) -> str:
    """A DICOM date YYYYMMDD as YYYY-MM-DD; "date unknown" for anything else."""
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return "date unknown"


def _count(instances: int | None) -> str:
    return "instances unknown" if instances is None else f"{instances} instance{'' if instances == 1 else 's'}"


def _values(value: object) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _integer(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
