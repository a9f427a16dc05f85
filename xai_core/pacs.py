"""A PACS through DICOMweb: search (QIDO-RS), retrieve one instance (WADO-RS), store results (STOW-RS).

The PACS is named by $XAI_DICOMWEB_URL, with HTTP basic credentials in
$XAI_DICOMWEB_USER / $XAI_DICOMWEB_PASSWORD or a bearer token in $XAI_DICOMWEB_TOKEN.
Credentials live in the HTTP session only: never in a URL, a message or a log line.
Retrieved instances stay in memory. Search results carry what a reader needs to pick
a film (dates, modality, view position, body part) and never patient names.

Every failure (PACS unreachable, too slow, credentials refused, instance gone, not an
image, a store refused) raises XRayError saying what happened and what the PACS holds now.

Search values go to the PACS unencoded: dicomweb-client would percent-encode them, and Orthanc 1.10
(Debian 12's) matches an encoded value literally ("A B" sent as A+B finds the patient whose ID is "A+B",
%20 finds nothing). Letters, digits and - . _ ~ ! $ ' ( ) ; = : @ / are sent as typed; each run of any
other character (a space, + & # %, a letter outside ASCII, the wildcards * and ?) is sent as the
wildcard *, which every PACS reads the same way, and of the studies that match, only those whose value
is exactly the one typed are kept: the reader never sees another patient's study. A value of nothing
but such characters, or with \\ (it separates values: no single value holds it), is refused before
anything is sent, saying which character. A search matching more than MAX_STUDIES studies is refused,
asking for a narrower one: the PACS sends its matches in no particular order, so its first ones need not
be the newest. A listing asks for one more instance than it shows, so it knows when the PACS holds more.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlsplit, urlunsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from .dicom_source import to_bytes
from .errors import XRayError
from .pacs_records import (
    InstanceListing,
    SeriesSummary,
    StudySummary,
    instance_summary,
    series_summary,
    sop_class_name,
    study_summary,
)

URL_ENV = "XAI_DICOMWEB_URL"
USER_ENV = "XAI_DICOMWEB_USER"
PASSWORD_ENV = "XAI_DICOMWEB_PASSWORD"
TOKEN_ENV = "XAI_DICOMWEB_TOKEN"
DEFAULT_TIMEOUT_S = 20.0
MAX_STUDIES = 200
MAX_INSTANCES = 1000
_SENT_AS_WILDCARD = re.compile(r"[^A-Za-z0-9\-._~!$'();=:@/]+")  # what a search sends as * (module docstring)
_VALUE_LENGTHS = {"AccessionNumber": 16, "PatientID": 64}  # the DICOM limits of SH and LO
_FIELD_NAMES = {"AccessionNumber": "accession number", "PatientID": "patient ID"}
# Retrieve as stored ("*"): the reader decodes JPEG, JPEG 2000 and RLE itself, and a
# PACS may be unable to transcode a compressed film to the default Explicit VR Little Endian.
_AS_STORED = (("application/dicom", "*"),)
_STUDY_FIELDS = ("StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
_SERIES_FIELDS = ("SeriesNumber", "Modality", "BodyPartExamined", "SeriesDate", "NumberOfSeriesRelatedInstances")
_INSTANCE_FIELDS = (
    "SOPClassUID", "SeriesInstanceUID", "Modality", "SeriesDate", "ContentDate", "StudyDate",
    "ViewPosition", "BodyPartExamined", "SeriesNumber", "InstanceNumber",
)


class _NoQueryStrings(logging.Filter):
    """Drops log records quoting a URL's query string: a QIDO query holds the patient ID or
    accession number searched for (dicomweb-client and urllib3 log request URLs at DEBUG level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return re.search(r"\?\S*=", record.getMessage()) is None


for _logger_name in ("dicomweb_client.web", "urllib3.connectionpool"):
    logging.getLogger(_logger_name).addFilter(_NoQueryStrings())


@dataclass(frozen=True)
class PacsSettings:
    """Where the PACS is and how to sign in; the credentials are left out of repr()."""

    url: str
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise XRayError(
                f"The DICOMweb address must start with http:// or https:// and name a host "
                f"(set {URL_ENV}, e.g. http://pacs.example.org:8042/dicom-web)."
            )
        if parts.username or parts.password:
            raise XRayError(
                f"Do not put a user name or password in the DICOMweb address: set {USER_ENV} and "
                f"{PASSWORD_ENV} (or {TOKEN_ENV}) instead, so they never appear in logs."
            )

    @classmethod
    def from_environment(
        cls, url: str | None = None, environ: Mapping[str, str] = os.environ
    ) -> PacsSettings | None:
        """Settings from the environment; `url` overrides $XAI_DICOMWEB_URL. None when neither is set."""
        url = url or environ.get(URL_ENV)
        if not url:
            return None
        return cls(
            url=url.rstrip("/"),
            user=environ.get(USER_ENV) or None,
            password=environ.get(PASSWORD_ENV) or None,
            token=environ.get(TOKEN_ENV) or None,
        )

    @property
    def location(self) -> str:
        """The address without query or fragment, to name the PACS in messages."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True)
class StoredObject:
    """One object a STOW-RS stored: its kind (e.g. "Secondary Capture Image") and where it now is in the study."""

    kind: str  # SOP class name
    series_uid: str
    sop_uid: str


@dataclass(frozen=True)
class StoreReceipt:
    """What STOW-RS stored, and where."""

    location: str
    study_uid: str
    stored: tuple[StoredObject, ...]

    def describe(self) -> str:
        objects = "; ".join(f"{item.kind} in series {item.series_uid}" for item in self.stored)
        return f"Stored in the PACS at {self.location}, study {self.study_uid}: {objects}."


class Pacs:
    """A DICOMweb connection that turns every failure into an XRayError."""

    def __init__(self, settings: PacsSettings) -> None:
        self.settings = settings
        session = requests.Session()
        if settings.token:
            session.headers["Authorization"] = f"Bearer {settings.token}"
        elif settings.user:
            session.auth = (settings.user, settings.password or "")
        self._session = session
        self._client = DICOMwebClient(url=settings.url, session=session, timeout=settings.timeout_s)
        # The client otherwise retries every failure 5 times with growing pauses (15 s and more for a
        # PACS that is down); a reader is better told at once and can try again.
        self._client.set_http_retry_params(retry=False)

    def search_studies(
        self,
        *,
        accession_number: str | None = None,
        patient_id: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> list[StudySummary]:
        """Studies matching all the given criteria, newest first (module docstring: which values are sent how,
        and why more than MAX_STUDIES matches are refused)."""
        filters: dict[str, str] = {}
        exact: dict[str, str] = {}  # the values sent with wildcards: the answers must hold them exactly
        for keyword, value in (("AccessionNumber", accession_number), ("PatientID", patient_id)):
            if value:
                filters[keyword], wildcards = query_value(keyword, value)
                if wildcards:
                    exact[keyword] = value.strip()
        if date_from or date_to:
            filters["StudyDate"] = f"{_dicom_date(date_from)}-{_dicom_date(date_to)}"
        with self._answering("searching for studies"):
            found = [Dataset.from_json(item)
                     for item in self._search("studies", filters, (*_STUDY_FIELDS, *exact), MAX_STUDIES + 1)]
            if len(found) > MAX_STUDIES:
                raise XRayError(
                    f"More than {MAX_STUDIES} studies match the search in the PACS at {self.settings.location}, and "
                    "a PACS sends them in no particular order: narrow it (a patient ID, an accession number, fewer "
                    "dates)."
                )
            studies = [study_summary(item) for item in found
                       if all(str(item.get(keyword, "")).strip() == value for keyword, value in exact.items())]
        return sorted(studies, key=lambda study: study.date or "", reverse=True)

    def list_series(self, study_uid: str) -> list[SeriesSummary]:
        """The study's series (with their instance counts), in series number order."""
        with self._answering("listing the study's series"):
            found = self._search(f"studies/{_uid(study_uid)}/series", {}, _SERIES_FIELDS, MAX_INSTANCES)
            series = [series_summary(Dataset.from_json(item)) for item in found]
        return sorted(series, key=lambda item: (item.series_number or 0, item.series_uid))

    def list_instances(self, study_uid: str, series_uid: str | None = None, *,
                       limit: int = MAX_INSTANCES) -> InstanceListing:
        """The study's (or one series') instances, at most `limit`, in series then instance order; the listing
        says whether the PACS holds more."""
        path = f"studies/{_uid(study_uid)}" + (f"/series/{_uid(series_uid)}" if series_uid else "") + "/instances"
        with self._answering("listing the study's instances"):
            found = self._search(path, {}, _INSTANCE_FIELDS, limit + 1)
            instances = [instance_summary(study_uid, Dataset.from_json(item)) for item in found[:limit]]
        instances.sort(key=lambda item: (item.series_number or 0, item.series_uid, item.instance_number or 0))
        return InstanceListing(tuple(instances), complete=len(found) <= limit, limit=limit, series_uid=series_uid)

    def _search(self, path: str, filters: dict[str, str], fields: Sequence[str], limit: int) -> list[dict]:
        """One QIDO-RS request with the values as given (made by `query_value`): dicomweb-client would
        percent-encode them, which Orthanc 1.10 does not decode."""
        query = "&".join([*(f"{keyword}={value}" for keyword, value in filters.items()),
                          *(f"includefield={name}" for name in fields), f"limit={limit}"])
        response = self._session.get(f"{self.settings.url}/{path}", params=query, timeout=self.settings.timeout_s,
                                     headers={"Accept": "application/dicom+json, application/json"})
        response.raise_for_status()
        found = response.json() if response.content else []
        return found if isinstance(found, list) else [found]

    def retrieve(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        """One instance (any kind) as stored, in memory."""
        gone = (
            f"The instance is no longer in the PACS at {self.settings.location} (HTTP 404): it may have "
            "been deleted or moved. Search the study again."
        )
        with self._answering("retrieving the instance", not_found=gone):
            return self._client.retrieve_instance(study_uid, series_uid, sop_uid, media_types=_AS_STORED)

    def retrieve_image(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """One image instance as DICOM Part 10 bytes, in memory; an instance without pixels is refused."""
        dataset = self.retrieve(study_uid, series_uid, sop_uid)
        if "PixelData" not in dataset:
            kind = sop_class_name(dataset.get("SOPClassUID"))
            raise XRayError(
                f"The instance is {'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}, not an image: "
                "choose a radiograph of the study."
            )
        return to_bytes(dataset)

    def store(self, objects: Sequence[Dataset]) -> StoreReceipt:
        """STOW-RS the objects one at a time, into their study; a failure says what is stored by then."""
        stored: list[StoredObject] = []
        study_uid = str(objects[0].StudyInstanceUID)
        for dataset in objects:
            kind = sop_class_name(dataset.SOPClassUID).removesuffix(" Storage")
            try:
                with self._answering(f"storing the {kind}"):
                    response = self._client.store_instances([dataset], study_instance_uid=study_uid)
                _require_stored(response, dataset, kind)
            except XRayError as error:
                raise XRayError(f"{error} {_what_is_stored(stored, study_uid)}") from None
            stored.append(StoredObject(kind, str(dataset.SeriesInstanceUID), str(dataset.SOPInstanceUID)))
        return StoreReceipt(location=self.settings.location, study_uid=study_uid, stored=tuple(stored))

    @contextmanager
    def _answering(self, action: str, *, not_found: str | None = None) -> Iterator[None]:
        """Translate what requests and the DICOMweb client raise into one clear XRayError."""
        where = f"The PACS at {self.settings.location}"
        try:
            yield
        except requests.Timeout:
            raise XRayError(
                f"{where} did not answer within {self.settings.timeout_s:g} s while {action}; "
                "it may be busy. Try again later."
            ) from None
        except requests.ConnectionError:
            raise XRayError(
                f"{where} cannot be reached while {action}: check that it is running "
                f"and that {URL_ENV} gives its DICOMweb address."
            ) from None
        except requests.HTTPError as error:
            raise _http_error(error.response, where, action, not_found) from None
        except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
            raise XRayError(
                f"{where} answered {action} with something that is not valid DICOMweb: "
                f"check that {URL_ENV} points at its DICOMweb root (often ending in /dicom-web)."
            ) from None


def _http_error(response: requests.Response | None, where: str, action: str, not_found: str | None) -> XRayError:
    status = response.status_code if response is not None else 0
    if status == 401:
        return XRayError(
            f"{where} refused the credentials (HTTP 401) while {action}: check "
            f"{USER_ENV} and {PASSWORD_ENV}, or {TOKEN_ENV}."
        )
    if status == 403:
        return XRayError(
            f"{where} does not allow this account to do this (HTTP 403) while {action}; "
            "ask the PACS administrator for access."
        )
    if status == 404 and not_found:
        return XRayError(not_found)
    if status == 409:
        return XRayError(
            f"{where} refused it (HTTP 409 Conflict) while {action}: the object may not belong to the "
            "study it was sent to, or the PACS does not accept this kind of object."
        )
    return XRayError(f"{where} answered HTTP {status} while {action}.")


def _require_stored(response: Dataset, dataset: Dataset, kind: str) -> None:
    """A STOW-RS answer may list the instance as failed, or leave it out, while the HTTP status says success.

    An answer without either list (some servers send none) is taken at its HTTP status.
    """
    sop_uid = str(dataset.SOPInstanceUID)
    failed = {str(item.get("ReferencedSOPInstanceUID")) for item in response.get("FailedSOPSequence", [])}
    stored = {str(item.get("ReferencedSOPInstanceUID")) for item in response.get("ReferencedSOPSequence", [])}
    if sop_uid in failed or ("ReferencedSOPSequence" in response and sop_uid not in stored):
        raise XRayError(f"The PACS refused to store the {kind}.")


def query_value(keyword: str, value: str) -> tuple[str, bool]:
    """`value` stripped as a QIDO search sends it, each run of characters a PACS could misread as the wildcard *,
    and whether it holds any (module docstring); an XRayError, never quoting the value (it may be the patient's
    ID), for a value no search can find."""
    value, name = value.strip(), _FIELD_NAMES[keyword]
    if len(value) > _VALUE_LENGTHS[keyword]:
        raise XRayError(f"A DICOM {name} has at most {_VALUE_LENGTHS[keyword]} characters; this one has {len(value)}.")
    if "\\" in value:
        raise XRayError(f"A DICOM {name} cannot hold '\\': it separates several values. Give one value.")
    pattern = _SENT_AS_WILDCARD.sub("*", value)
    if not pattern.strip("*"):
        raise XRayError(f"The {name} holds no letter or digit a PACS search can send as typed: search by another "
                        "criterion (accession number, patient ID or study dates).")
    return pattern, "*" in pattern


def _what_is_stored(stored: list[StoredObject], study_uid: str) -> str:
    if not stored:
        return "Nothing was stored in the PACS."
    held = "; ".join(f"the {item.kind} (series {item.series_uid})" for item in stored)
    return (
        f"The PACS now holds only {held} in study {study_uid}, without the rest: "
        "send again, or delete that series in the PACS."
    )


def _uid(value: str) -> str:
    """A UID as a path segment: digits and dots only, so nothing can be smuggled into the URL."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", value or "") or len(value) > 64:
        raise XRayError("That is not a DICOM UID (digits and dots, at most 64 characters).")
    return value


def _dicom_date(day: date | None) -> str:
    return day.strftime("%Y%m%d") if day else ""
