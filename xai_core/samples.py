"""Images the viewer offers without an upload.

The chest radiograph comes from the pydicom-data package (a requirement), so it
reaches every user without any download and without copying patient data into
this repository: `RG1_UNCI.dcm` is a real, de-identified adult PA chest CR
(MONOCHROME1, 15-bit, 1841 x 1955). Files dropped into sample_images/ are
offered too.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_images"
PACKAGED_SAMPLES = {"Adult PA chest CR, DICOM (pydicom-data RG1_UNCI)": "RG1_UNCI.dcm"}
_LOCAL_SUFFIXES = {".dcm", ".png", ".jpg", ".jpeg"}


def sample_images() -> dict[str, Path]:
    """Display name -> path of every sample that is installed, the packaged chest film first."""
    from pydicom.data import get_testdata_file

    found: dict[str, Path] = {}
    for name, file_name in PACKAGED_SAMPLES.items():
        path = get_testdata_file(file_name, download=False)
        if path is not None:
            found[name] = Path(path)
    if SAMPLE_DIR.is_dir():
        for path in sorted(SAMPLE_DIR.iterdir()):
            if path.suffix.lower() in _LOCAL_SUFFIXES:
                found[path.name] = path
    return found
