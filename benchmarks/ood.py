"""Out-of-distribution score: AUROC of non-chest images against NIH test films, and the flag rates.

`python benchmarks/ood.py` with the shipped checkpoint (its card must hold
out_of_distribution statistics: `python -m xai_core fit-ood ...`).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import matplotlib
import numpy as np
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xai_core.explain import explain  # noqa: E402
from xai_core.imaging import read_xray  # noqa: E402
from xai_core.model import load_model  # noqa: E402
from xai_core.stats import auroc, bootstrap_auroc_ci  # noqa: E402
NIH = ROOT.parent / "shared" / "data" / "nih"
NON_CHEST = ["RG3_UNCI.dcm", "MR2_UNCI.dcm", "MR_small.dcm", "CT_small.dcm", "US1_UNCI.dcm", "liver.dcm",
             "emri_small.dcm", "OT-PAL-8-face.dcm", "693_UNCI.dcm", "gdcm-US-ALOKA-16.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm",
             "JPEG2000_UNC.dcm", "OBXXXX1A.dcm"]


def main() -> None:
    model = load_model()
    with open(NIH / "labels.csv", newline="") as handle:
        names = [row["image"] for row in csv.DictReader(handle) if row["split"] == "test"]
    chest = np.array([explain(model, read_xray(NIH / "images" / name)).ood_distance for name in names])
    others = {}
    for name in NON_CHEST:
        path = get_testdata_file(name, download=False)
        if path is not None:
            others[name] = explain(model, read_xray(path)).ood_distance
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    others["grace_hopper.jpg (photograph)"] = explain(model, read_xray(photo)).ood_distance
    values = np.array(list(others.values()))
    truth = np.r_[np.zeros(len(chest)), np.ones(len(values))]
    scores = np.r_[chest, values]
    low, high = bootstrap_auroc_ci(truth, scores, seed=0)
    threshold = model.feature_distribution.threshold
    print(f"threshold {threshold:.1f} ({model.card.out_of_distribution.threshold_rule})")
    print(f"AUROC non-chest vs NIH test: {auroc(truth, scores):.3f} (95% CI {low:.3f}-{high:.3f}); "
          f"{len(values)} non-chest images, {len(chest)} NIH test films")
    print(f"flagged: {np.mean(chest > threshold):.3f} of NIH test films, {np.mean(values > threshold):.3f} of non-chest")
    for name, value in sorted(others.items(), key=lambda item: item[1]):
        print(f"  {name:<40} {value:10.1f} {'flagged' if value > threshold else 'NOT flagged'}")


if __name__ == "__main__":
    main()
