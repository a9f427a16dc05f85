"""Shared fixtures: the real data folder and the pydicom-data test files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

# The viewer writes an audit row for every explanation shown: keep the test runs' rows out of the user's data folder.
os.environ.setdefault("XAI_DATA_DIR", tempfile.mkdtemp(prefix="xai-test-data-"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real, de-identified data folder next to the repository (see its README.md)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (it exists on developer machines and in CI only)")
    return path


@pytest.fixture(scope="session")
def dicom_file() -> Callable[[str], Path]:
    """Return a function giving the path of a pydicom / pydicom-data test file by name.

    The test skips when the file is not installed; nothing is downloaded.
    """

    def get(name: str) -> Path:
        data = pytest.importorskip("pydicom.data", reason="pydicom is not installed")
        path = data.get_testdata_file(name, download=False)
        if path is None:
            pytest.skip(f"DICOM test file {name} is not installed (pip install pydicom-data)")
        return Path(path)

    return get


@pytest.fixture(scope="session")
def model():
    """The checkpoint the viewer loads by default (the shipped one, or $XAI_MODEL_CARD)."""
    from xai_core.model import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def labelled_outputs(shared_data, model):
    """A function giving the shipped model's outputs on one split of a data folder (`folder/labels.csv`,
    `folder/images`), predicted once per session: the card, operating-point and calibration tests share them."""
    from xai_core.data import read_label_csv
    from xai_core.labelled_outputs import outputs_on

    predicted = {}

    def get(folder: str, split: str):
        if (folder, split) not in predicted:
            root = shared_data / folder
            cases = read_label_csv(root / "labels.csv", root / "images", splits=[split])
            predicted[folder, split] = outputs_on(model, cases, f"{folder} {split}")
        return predicted[folder, split]

    return get


@pytest.fixture(scope="session")
def chest_dicom(dicom_file) -> Path:
    """The real adult PA chest CR that pydicom-data ships (the viewer's sample)."""
    return dicom_file("RG1_UNCI.dcm")


@pytest.fixture(scope="session")
def chest_png16(chest_dicom, tmp_path_factory) -> Path:
    """The sample film's modality values as a 16-bit grey PNG, bones bright as in a MONOCHROME2 picture."""
    import numpy as np
    from PIL import Image

    from xai_core.imaging import read_xray

    values = read_xray(chest_dicom).modality_values.astype(np.float64)
    scaled = np.rint((values.max() - values) / (values.max() - values.min()) * 65535).astype(np.uint16)
    path = tmp_path_factory.mktemp("png16") / "chest16.png"
    Image.fromarray(scaled).save(path)
    return path


@pytest.fixture(scope="session")
def nih_test_images(shared_data) -> list[Path]:
    """NIH test-split images that have radiologist boxes, in a fixed order."""
    import csv

    with open(shared_data / "nih" / "boxes.csv", newline="") as handle:
        names = sorted({row["image"] for row in csv.DictReader(handle)})
    return [shared_data / "nih" / "images" / name for name in names]


@pytest.fixture(scope="session")
def patient_identifiers() -> dict[str, str]:
    """Patient tags that must never reach the page, a log, a download or the database."""
    return {"PatientName": "Doe^Jane", "PatientID": "MRN-7731-XQ", "PatientBirthDate": "19470612",
            "AccessionNumber": "ACC-99812", "InstitutionName": "St Elsewhere General",
            "ReferringPhysicianName": "Kildare^J"}


@pytest.fixture(scope="session")
def identified_dicom(chest_dicom, patient_identifiers) -> bytes:
    """The sample chest CR with those patient identifiers written into it."""
    import io

    import pydicom

    dataset = pydicom.dcmread(chest_dicom)
    for keyword, value in patient_identifiers.items():
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()
