"""Shared fixtures: the real data folder and the pydicom-data test files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


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
